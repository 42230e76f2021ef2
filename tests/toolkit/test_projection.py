"""Projector: tables that equal a fold of the log, offsets in the same transaction, rebuilds."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from eventyard.toolkit import (
    DatabaseDriverMissing,
    EventPublisher,
    Projector,
    SQLiteDatabase,
    ToolkitError,
    UnknownEventType,
    connect,
    ensure_topic,
)
from eventyard.toolkit.projection import OFFSETS_TABLE
from eventyard.toolkit.sql import _to_format_style
from examples.cart.domain import AddedItemToCart, events
from examples.cart.projection import CartItems, rows
from tests.toolkit.helpers import AuditedCartItems, fold_of_log, produce_random_carts


def table(projector: Projector) -> list[tuple[str, str, int]]:
    with projector.db.transaction() as tx:
        return rows(tx)


def applied(projector: Projector) -> int:
    with projector.db.transaction() as tx:
        return int(tx.query("SELECT count(*) FROM applied")[0][0])


def offsets(projector: Projector) -> dict[int, int]:
    with projector.db.transaction() as tx:
        found = tx.query(
            f"SELECT partition, next_offset FROM {OFFSETS_TABLE} WHERE topic = ?", (projector.topic,)
        )
    return {int(p): int(o) for p, o in found}


@pytest.fixture
def topic(eventyard_bootstrap: str, eventyard_topic: str) -> str:
    ensure_topic(eventyard_bootstrap, eventyard_topic, partitions=3)
    return eventyard_topic


@pytest.mark.parametrize("strategy", ["range,roundrobin", "cooperative-sticky"])
def test_the_talks_cart_items_table(eventyard_bootstrap: str, topic: str, strategy: str) -> None:
    with EventPublisher(eventyard_bootstrap, events, transactions=False) as publisher:
        from examples.cart.domain import Cart

        cart = Cart("alice")
        cart.add_item("socks", 2)
        cart.add_item("shirt", 1)
        cart.change_quantity("socks", 3)
        cart.remove_item("shirt")
        cart.add_item("hat", 1)
        publisher.publish(topic, "alice", cart.pending)
    config = {"bootstrap.servers": eventyard_bootstrap, "partition.assignment.strategy": strategy}
    with Projector(config, topic, CartItems(), events, ":memory:") as projector:
        projector.catch_up()
        assert table(projector) == [("alice", "hat", 1), ("alice", "socks", 3)]


def test_projection_equals_the_fold_of_the_log_and_resumes_where_it_stopped(
    eventyard_bootstrap: str, topic: str, database_url: str
) -> None:
    first = produce_random_carts(eventyard_bootstrap, topic, 300, seed=1)
    database = database_url
    with Projector(
        eventyard_bootstrap, topic, AuditedCartItems(), events, database, batch_size=40
    ) as projector:
        while applied(projector) < 100:  # part of the log, batch by batch
            projector.poll(1.0)
    second = produce_random_carts(eventyard_bootstrap, topic, 200, seed=2)
    with Projector(
        eventyard_bootstrap, topic, AuditedCartItems(), events, database, batch_size=40
    ) as projector:
        projector.catch_up()
        assert applied(projector) == first + second  # none twice (primary key), none skipped
        assert sum(offsets(projector).values()) == first + second
        assert table(projector) == fold_of_log(eventyard_bootstrap, topic)


def test_rebuild_replays_the_log_into_fresh_tables(
    eventyard_bootstrap: str, topic: str, database_url: str
) -> None:
    count = produce_random_carts(eventyard_bootstrap, topic, 150, seed=3)
    with Projector(eventyard_bootstrap, topic, AuditedCartItems(), events, database_url) as projector:
        projector.catch_up()
        with projector.db.transaction() as tx:
            tx.execute("DELETE FROM cart_items WHERE sku = 'socks'")  # a bug corrupted the table
        projector.rebuild()
        assert table(projector) == []
        projector.catch_up()
        assert applied(projector) == count
        assert table(projector) == fold_of_log(eventyard_bootstrap, topic)


def test_a_background_projector_catches_up(
    eventyard_bootstrap: str, topic: str, database_url: str, wait_for: Callable[..., object]
) -> None:
    projector = Projector(eventyard_bootstrap, topic, CartItems(), events, database_url).start()
    try:
        with EventPublisher(eventyard_bootstrap, events, transactions=False) as publisher:
            publisher.publish(topic, "zoe", [AddedItemToCart(cart_id="zoe", sku="scarf", quantity=1)])
        wait_for(lambda: table(projector) == [("zoe", "scarf", 1)], timeout=15)
        projector.catch_up()
    finally:
        projector.close()
    assert projector.error is None


def test_an_unknown_event_stops_the_projector_unless_skipped(
    eventyard_bootstrap: str, topic: str, database_url: str
) -> None:
    producer = Producer({"bootstrap.servers": eventyard_bootstrap})
    value, headers = events.encode(AddedItemToCart(cart_id="c", sku="socks", quantity=1))
    producer.produce(topic, value, b"c", 0, headers=headers)
    producer.produce(topic, b"{}", b"c", 0, headers=[("event-type", b"cart.checked_out")])
    producer.flush(10)
    strict = Projector(eventyard_bootstrap, topic, CartItems(), events, database_url)
    with pytest.raises(UnknownEventType):
        strict.catch_up(timeout=10)
    assert table(strict) == [] and offsets(strict) == {}  # the whole batch rolled back: fail-stop
    strict.close()
    lenient = Projector(eventyard_bootstrap, topic, CartItems(), events, database_url, skip_unknown=True)
    lenient.catch_up(timeout=10)
    assert table(lenient) == [("c", "socks", 1)] and offsets(lenient)[0] == 2
    lenient.close()


def test_a_zombie_cannot_commit_over_its_successor(
    eventyard_bootstrap: str, topic: str, database_url: str
) -> None:
    with EventPublisher(eventyard_bootstrap, events, transactions=False) as publisher:
        publisher.publish(topic, "c", [AddedItemToCart(cart_id="c", sku="socks", quantity=1)])
        partition = publisher.partition(topic, "c")
        with Projector(eventyard_bootstrap, topic, AuditedCartItems(), events, database_url) as zombie:
            zombie.catch_up()
            # Its partitions moved on without it: a successor applied up to offset 2 meanwhile.
            with zombie.db.transaction() as tx:
                tx.execute(f"UPDATE {OFFSETS_TABLE} SET next_offset = 2 WHERE partition = ?", (partition,))
            publisher.publish(topic, "c", [AddedItemToCart(cart_id="c", sku="hat", quantity=1)])
            publisher.publish(topic, "c", [AddedItemToCart(cart_id="c", sku="shirt", quantity=1)])
            zombie.catch_up()
            # Its batch from offset 1 was refused; it went on from the database's offset 2.
            assert table(zombie) == [("c", "shirt", 1), ("c", "socks", 1)]
            assert offsets(zombie)[partition] == 3


def test_database_urls() -> None:
    assert isinstance(connect(":memory:"), SQLiteDatabase)
    assert connect("sqlite:///:memory:").url == "sqlite:///:memory:"
    with pytest.raises(ValueError, match="unsupported database URL"):
        connect("mysql://localhost/db")
    if importlib.util.find_spec("psycopg") is None:
        with pytest.raises(DatabaseDriverMissing, match="pip install 'psycopg"):
            connect("postgresql://localhost/carts")


def test_placeholders_for_psycopg() -> None:
    assert _to_format_style("SELECT * FROM t WHERE a = ? AND b LIKE 'x?%' AND \"c?\" = ?") == (
        "SELECT * FROM t WHERE a = %s AND b LIKE 'x?%%' AND \"c?\" = %s"
    )


def test_sent_statements_run_in_order_and_roll_back_with_their_transaction(database_url: str) -> None:
    db = connect(database_url)
    try:
        with db.transaction() as tx:
            tx.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT NOT NULL)")
            for n in range(30):
                tx.send("INSERT INTO t VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET n = excluded.n", ("a%", n))
            tx.send("INSERT INTO t VALUES ('b?', 1) -- a comment ends at the line's end; so: '")
            tx.send("INSERT INTO t VALUES (?, ?);", ("it's -- ; ?", 2**40))
            expected = [("a%", 29), ("b?", 1), ("it's -- ; ?", 2**40)]
            assert tx.query("SELECT k, n FROM t ORDER BY k") == expected
            tx.send("DELETE FROM t WHERE k LIKE 'b%'")
            assert tx.execute("UPDATE t SET n = n + 1") == 2  # after the sent DELETE

        # A sent statement that fails: raised by the block at the latest, and nothing of it stays.
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"), db.transaction() as tx:
            tx.execute("DELETE FROM t WHERE k = ?", ("a%",))
            tx.send("INSERT INTO t VALUES ('c', 1)")
            tx.send("INSERT INTO t VALUES (?, 1)", ("it's -- ; ?",))  # a duplicate key
            tx.send("INSERT INTO t VALUES ('d', 1)")
        with pytest.raises(RuntimeError), db.transaction() as tx:
            tx.send("DELETE FROM t")
            raise RuntimeError("rolled back")
        with db.transaction() as tx:
            assert tx.query("SELECT k, n FROM t ORDER BY k") == [("a%", 30), ("it's -- ; ?", 2**40 + 1)]
    finally:
        db.close()


def test_a_projector_needs_its_topic(eventyard_bootstrap: str) -> None:
    with pytest.raises(ToolkitError, match="not available"):
        EventPublisher(eventyard_bootstrap, events, transactions=False).partition("", "k")
