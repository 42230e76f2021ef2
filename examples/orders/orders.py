"""The orders service: it places an order and publishes OrderPlaced. It does not know who listens.

Before, place_order() called inventory.reserve(), shipping.book() and email.send() one after the
other: three point-to-point calls, each able to fail the order, and a fourth service meant changing
and redeploying this one. Now it publishes one event, and any number of services subscribe."""

from __future__ import annotations

import itertools

from eventyard.toolkit import CommandRejected, EventPublisher, ensure_topic
from eventyard.toolkit.kafka import Config
from examples.orders.domain import TOPIC, OrderPlaced, events


class OrdersService:
    def __init__(self, config: Config, topic: str = TOPIC) -> None:
        self.topic = topic
        ensure_topic(config, topic, partitions=3)
        self.publisher = EventPublisher(config, events)
        self._numbers = itertools.count(1001)

    def place_order(self, customer: str, email: str, address: str, items: dict[str, int]) -> OrderPlaced:
        if not items or any(quantity <= 0 for quantity in items.values()):
            raise CommandRejected("an order needs at least one item, each with a positive quantity")
        order = OrderPlaced(
            order_id=f"o-{next(self._numbers)}", customer=customer, email=email, address=address, items=items
        )
        self.publisher.publish(
            self.topic, order.order_id, [order]
        )  # keyed by order: its events stay in order
        return order

    def close(self) -> None:
        self.publisher.close()
