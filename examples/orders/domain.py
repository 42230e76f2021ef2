"""The event the orders service publishes. Subscribers depend on it, not on the orders service."""

from __future__ import annotations

from eventyard.toolkit import Event, EventRegistry

TOPIC = "orders"


class OrderPlaced(Event, name="orders.order_placed"):
    order_id: str
    customer: str
    email: str
    address: str
    items: dict[str, int]  # sku -> quantity


events = EventRegistry(OrderPlaced)


def describe(items: dict[str, int]) -> str:
    return ", ".join(f"{quantity} x {sku}" for sku, quantity in items.items())
