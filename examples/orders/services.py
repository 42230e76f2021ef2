"""The subscribers. Each runs in its own consumer group, so each gets every OrderPlaced, at its own pace.

Delivery is at-least-once: after a crash a service may see an order again, so each one remembers
the orders it handled and ignores a repeat (in a real service: a processed-ids table, or upserts)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import ClassVar

from eventyard.toolkit import RecordedEvent, Worker
from eventyard.toolkit.kafka import Config
from examples.orders.domain import TOPIC, OrderPlaced, describe, events


class Service:
    group: ClassVar[str]  # its consumer group: one per service

    def __init__(self) -> None:
        self.done: dict[str, str] = {}  # order id -> what this service did
        self._lock = threading.Lock()

    def handle(self, recorded: RecordedEvent) -> None:
        order = recorded.event
        assert isinstance(order, OrderPlaced)
        with self._lock:
            if order.order_id in self.done:
                return  # a redelivery: already handled
        result = self.process(order)  # raising means "retry me"
        with self._lock:
            self.done[order.order_id] = result

    def process(self, order: OrderPlaced) -> str:
        raise NotImplementedError

    def report(self) -> list[str]:
        with self._lock:
            return [f"{self.group:>9}: {order_id} {what}" for order_id, what in sorted(self.done.items())]


class Inventory(Service):
    group = "inventory"

    def __init__(self, stock: dict[str, int]) -> None:
        super().__init__()
        self.stock = dict(stock)

    def process(self, order: OrderPlaced) -> str:
        short = {sku: n for sku, n in order.items.items() if self.stock.get(sku, 0) < n}
        if short:
            return f"backordered {describe(short)}"
        for sku, n in order.items.items():
            self.stock[sku] -= n
        return f"reserved {describe(order.items)}"


class Shipping(Service):
    group = "shipping"

    def process(self, order: OrderPlaced) -> str:
        return f"booked a parcel to {order.address} (label SH-{order.order_id[2:]})"


class Email(Service):
    group = "email"

    def __init__(self, flaky: Iterable[str] = ()) -> None:
        super().__init__()
        self.flaky = set(flaky)  # orders whose first send times out: the worker retries them
        self.attempts: dict[str, int] = {}

    def process(self, order: OrderPlaced) -> str:
        attempt = self.attempts[order.order_id] = self.attempts.get(order.order_id, 0) + 1
        if order.order_id in self.flaky and attempt == 1:
            raise TimeoutError("the mail server did not answer")
        retried = f" (attempt {attempt})" if attempt > 1 else ""
        return f"sent the confirmation to {order.email}{retried}"


class Analytics(Service):
    """The service added later: it reads the topic from the beginning, and orders did not change."""

    group = "analytics"

    def __init__(self) -> None:
        super().__init__()
        self.units: dict[str, int] = {}

    def process(self, order: OrderPlaced) -> str:
        for sku, n in order.items.items():
            self.units[sku] = self.units.get(sku, 0) + n
        return f"counted {sum(order.items.values())} units"


def subscribe(config: Config, service: Service, topic: str = TOPIC) -> Worker:
    """A worker running the service's handler in the service's own consumer group."""
    return Worker(
        config,
        topic,
        service.group,
        service.handle,
        events,
        retries=3,
        backoff=(0.05, 1.0),
        dead_letter_topic=f"{topic}.{service.group}.dead-letter",
        concurrency=3,
    )
