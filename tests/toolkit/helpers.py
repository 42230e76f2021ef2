"""Shared by the toolkit tests and their child processes: an audited cart projection, a fold of the log."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import defaultdict
from typing import ClassVar

from confluent_kafka import Producer

from eventyard.toolkit import RecordedEvent, Transaction, read_topic
from eventyard.toolkit.kafka import Config, client_config, partition_for
from examples.cart.domain import Cart, events
from examples.cart.projection import CartItems


class AuditedCartItems(CartItems):
    """cart_items plus one row per applied record: a second application of an event would violate
    the primary key, a skipped one would be missing. CRASH_AFTER=n SIGKILLs the process in the
    middle of the transaction that applies its n-th event."""

    name = "audited-cart-items"
    tables: ClassVar[tuple[str, ...]] = ("cart_items", "applied")

    def __init__(self, crash_after: int | None = None, delay: float = 0.0) -> None:
        self.crash_after = crash_after
        self.delay = delay  # per event: slow enough for a test to kill it at work
        self.count = 0

    def create(self, tx: Transaction) -> None:
        super().create(tx)
        tx.execute(
            "CREATE TABLE IF NOT EXISTS applied (topic TEXT, partition INTEGER, log_offset INTEGER, "
            "PRIMARY KEY (topic, partition, log_offset))"
        )

    def apply(self, tx: Transaction, recorded: RecordedEvent) -> None:
        super().apply(tx, recorded)
        tx.execute(
            "INSERT INTO applied VALUES (?, ?, ?)", (recorded.topic, recorded.partition, recorded.offset)
        )
        self.count += 1
        time.sleep(self.delay)
        if self.crash_after is not None and self.count >= self.crash_after:
            os.kill(os.getpid(), signal.SIGKILL)


def fold_of_log(config: Config, topic: str) -> list[tuple[str, str, int]]:
    """cart_items as the whole log says it should be: each cart replayed through Cart.apply."""
    history: dict[str, list[object]] = defaultdict(list)
    for record in read_topic(config, topic):
        assert record.key is not None
        history[record.key.decode()].append(events.decode(record.headers, record.value))
    table = []
    for cart_id, cart_events in history.items():
        cart = Cart(cart_id).replay(cart_events)  # type: ignore[arg-type]
        table += [(cart_id, sku, quantity) for sku, quantity in cart.items.items()]
    return sorted(table)


def produce_random_carts(config: Config, topic: str, commands: int, carts: int = 20, seed: int = 7) -> int:
    """Valid cart histories (the commands run on in-memory Carts), produced in bulk; returns the count."""
    rng = random.Random(seed)
    state = {f"cart-{i}": Cart(f"cart-{i}") for i in range(carts)}
    producer = Producer(client_config(config, enable_idempotence=True))
    partitions = len(producer.list_topics(topic, timeout=10).topics[topic].partitions)
    produced = 0
    for _ in range(commands):
        cart = state[rng.choice(sorted(state))]
        sku = rng.choice(["socks", "shirt", "hat", "shoes", "scarf"])
        if sku not in cart.items:
            cart.add_item(sku, rng.randint(1, 5))
        elif rng.random() < 0.6:
            cart.change_quantity(sku, cart.items[sku] % 9 + 1)
        else:
            cart.remove_item(sku)
        for event in cart.pending:
            value, headers = events.encode(event)
            producer.produce(
                topic, value, cart.id.encode(), partition_for(cart.id, partitions), headers=headers
            )
            produced += 1
        cart.mark_saved()
        producer.poll(0)
    assert producer.flush(30) == 0
    return produced
