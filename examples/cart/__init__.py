"""The shopping cart: an event-sourced aggregate, its cart_items projection, and a demo.

Run it from the repository root:  python -m examples.cart
"""
