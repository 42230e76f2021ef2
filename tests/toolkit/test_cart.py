"""The shopping cart: its rules, its history in Kafka, past states, and optimistic concurrency."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventyard.toolkit import (
    CommandRejected,
    ConcurrencyConflict,
    InMemoryEventLog,
    KafkaEventLog,
    Repository,
    ensure_topic,
)
from examples.cart.domain import AddedItemToCart, Cart, ChangedItemQuantity, RemovedItemFromCart, events

ROOT = Path(__file__).resolve().parents[2]


def test_commands_emit_the_talks_events() -> None:
    cart = Cart("alice")
    cart.add_item("socks", 2)
    cart.add_item("shirt", 1)
    cart.change_quantity("socks", 3)
    cart.remove_item("shirt")
    assert cart.pending == (
        AddedItemToCart(cart_id="alice", sku="socks", quantity=2),
        AddedItemToCart(cart_id="alice", sku="shirt", quantity=1),
        ChangedItemQuantity(cart_id="alice", sku="socks", quantity=3),
        RemovedItemFromCart(cart_id="alice", sku="shirt"),
    )
    assert cart.items == {"socks": 3}
    assert Cart("alice").replay(cart.pending).items == {"socks": 3}


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (lambda c: c.add_item("hat", 0), "quantity must be positive, not 0"),
        (lambda c: c.add_item("hat", -2), "quantity must be positive, not -2"),
        (lambda c: c.add_item("socks", 1), "socks is already in the cart"),
        (lambda c: c.change_quantity("hat", 2), "hat is not in the cart"),
        (lambda c: c.change_quantity("socks", 0), "quantity must be positive"),
        (lambda c: c.remove_item("hat"), "hat is not in the cart"),
    ],
)
def test_commands_that_break_the_rules_are_rejected(command: object, reason: str) -> None:
    cart = Cart("alice").replay([AddedItemToCart(cart_id="alice", sku="socks", quantity=2)])
    with pytest.raises(CommandRejected) as error:
        command(cart)  # type: ignore[operator]
    assert reason in error.value.reason
    assert cart.pending == () and cart.items == {"socks": 2}


def test_same_quantity_again_changes_nothing() -> None:
    cart = Cart("alice").replay([AddedItemToCart(cart_id="alice", sku="socks", quantity=2)])
    cart.change_quantity("socks", 2)
    assert cart.pending == ()


def test_in_memory_log_checks_versions_too() -> None:
    carts = Repository(Cart, InMemoryEventLog())
    carts.execute("a", lambda c: c.add_item("socks", 1))
    stale = carts.load("a")
    carts.execute("a", lambda c: c.add_item("hat", 1))
    stale.add_item("shirt", 1)
    with pytest.raises(ConcurrencyConflict):
        carts.save(stale)


@pytest.fixture
def kafka_log(eventyard_bootstrap: str, eventyard_topic: str, tmp_path: Path) -> Iterator[KafkaEventLog]:
    ensure_topic(eventyard_bootstrap, eventyard_topic, partitions=3)
    with KafkaEventLog(eventyard_bootstrap, eventyard_topic, events, tmp_path / "index.db") as log:
        yield log


def test_a_cart_is_rebuilt_from_its_events_in_kafka(
    kafka_log: KafkaEventLog, eventyard_bootstrap: str
) -> None:
    carts = Repository(Cart, kafka_log)
    saved = []
    commands: list[Callable[[Cart], None]] = [
        lambda c: c.add_item("socks", 2),
        lambda c: c.add_item("shirt", 1),
        lambda c: c.change_quantity("socks", 3),
        lambda c: c.remove_item("shirt"),
    ]
    for command in commands:
        cart = carts.load("alice")
        command(cart)
        saved += carts.save(cart)
    carts.execute("bob", lambda c: c.add_item("hat", 1))

    alice = carts.load("alice")
    assert (alice.items, alice.version) == ({"socks": 3}, 4)
    assert [r.offset for r in saved] == sorted(r.offset for r in saved)  # one partition, in order

    # Another process (a fresh index) reads the same history from the topic alone.
    with KafkaEventLog(eventyard_bootstrap, kafka_log.topic, events) as other:
        again = Repository(Cart, other).load("alice")
        assert (again.items, again.version) == ({"socks": 3}, 4)

    # The past: replaying only the events up to an offset, or up to a time.
    as_of_second = carts.load("alice", at_offset=saved[1].offset)
    assert (as_of_second.items, as_of_second.version) == ({"socks": 2, "shirt": 1}, 2)
    as_of_third = carts.load("alice", at_time=saved[2].timestamp)
    assert as_of_third.version in (3, 4) and as_of_third.items["socks"] == 3  # 4: same millisecond
    assert carts.load("alice", at_time=saved[0].timestamp.replace(year=2000)).version == 0

    # A past state cannot be saved: it is behind by construction.
    as_of_second.add_item("hat", 1)
    with pytest.raises(ConcurrencyConflict) as conflict:
        carts.save(as_of_second)
    assert (conflict.value.expected, conflict.value.actual) == (2, 4)


def test_execute_retries_a_conflicting_command(kafka_log: KafkaEventLog) -> None:
    carts = Repository(Cart, kafka_log)
    carts.execute("alice", lambda c: c.add_item("socks", 1))
    calls = []

    def add_hat(cart: Cart) -> None:
        calls.append(cart.version)
        if len(calls) == 1:  # someone else changes the cart between our load and our save
            carts.execute("alice", lambda c: c.add_item("shirt", 1))
        cart.add_item("hat", 1)

    assert carts.execute("alice", add_hat, retries=1).items == {"socks": 1, "shirt": 1, "hat": 1}
    assert calls == [1, 2]


def test_concurrent_conflicting_commands_one_wins_one_conflicts(kafka_log: KafkaEventLog) -> None:
    carts = Repository(Cart, kafka_log)
    carts.execute("alice", lambda c: c.add_item("socks", 2))
    for _ in range(5):
        loaded = [carts.load("alice"), carts.load("alice")]
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def change(
            cart: Cart, quantity: int, barrier: threading.Barrier = barrier, outcomes: list[str] = outcomes
        ) -> None:
            cart.change_quantity("socks", quantity)
            barrier.wait()  # both loaded the same version; now both save at once
            try:
                carts.save(cart)
                outcomes.append("saved")
            except ConcurrencyConflict:
                outcomes.append("conflict")

        threads = [
            threading.Thread(target=change, args=(cart, cart.items["socks"] + 1 + i))
            for i, cart in enumerate(loaded)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["conflict", "saved"]
    assert carts.load("alice").version == 6


def test_processes_sharing_an_index_are_one_writer(kafka_log: KafkaEventLog, tmp_path: Path) -> None:
    carts = Repository(Cart, kafka_log)
    carts.execute("alice", lambda c: c.add_item("socks", 2))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    bootstrap = kafka_log.publisher.settings["bootstrap.servers"]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.toolkit.workers",
                "conflict",
                bootstrap,
                kafka_log.topic,
                kafka_log.index.path,
                str(barrier),
                name,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outputs = sorted(child.communicate(timeout=60)[0].strip() for child in children)
    assert outputs == ["conflict 1 2", "saved"]
    assert carts.load("alice").version == 2
