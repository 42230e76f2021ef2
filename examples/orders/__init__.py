"""From point-to-point to events: an orders service publishes OrderPlaced, and inventory, shipping
and email each subscribe in their own consumer group. Run it with `python -m examples.orders`."""
