"""Projections on a real PostgreSQL server: its SQL dialect, members of a group sharing one database,
and a database that goes away and comes back."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from eventyard.testing.postgres import PostgresServer
from eventyard.toolkit import (
    DatabaseUnavailable,
    EventPublisher,
    Projector,
    ToolkitError,
    connect,
    ensure_topic,
)
from eventyard.toolkit.sql import PostgresDatabase
from examples.cart.domain import AddedItemToCart, events
from tests.toolkit.helpers import AuditedCartItems, fold_of_log, produce_random_carts
from tests.toolkit.test_projection import applied, offsets, table


@pytest.fixture
def topic(eventyard_bootstrap: str, eventyard_topic: str) -> str:
    ensure_topic(eventyard_bootstrap, eventyard_topic, partitions=3)
    return eventyard_topic


def test_portable_statements_run_on_postgres(postgres_database: str) -> None:
    db = connect(postgres_database)
    assert isinstance(db, PostgresDatabase)
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT NOT NULL)")
        assert tx.execute("INSERT INTO t VALUES (?, ?), (?, ?)", ("a%", 1, "b?", 2**40)) == 2
        assert tx.execute("INSERT INTO t VALUES (?, ?) ON CONFLICT DO NOTHING", ("a%", 5)) == 0
        tx.execute(
            "INSERT INTO t VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET n = t.n + excluded.n", ("a%", 5)
        )
        # `?` and `%` inside literals are text, not placeholders
        assert tx.query("SELECT k, n FROM t WHERE k LIKE 'a%' OR k = 'b?' ORDER BY k") == [
            ("a%", 6),
            ("b?", 2**40),
        ]
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.execute("DELETE FROM t")
        raise RuntimeError("rolled back")
    with db.transaction() as tx:
        assert tx.query("SELECT count(*) FROM t") == [(2,)]
    db.close()


def test_sent_statements_do_not_wait_for_the_server(postgres_database: str) -> None:
    db = connect(postgres_database)
    with db.transaction() as tx:
        started = time.monotonic()
        for _ in range(4):
            tx.send("SELECT pg_sleep(0.5)")  # executed one after the other, at the query below
        sent = time.monotonic() - started
        assert tx.query("SELECT 1") == [(1,)]
        done = time.monotonic() - started
    db.close()
    assert sent < 1.0 <= 2.0 <= done  # the sends waited for no statement; the query for all four


def test_members_of_a_group_share_a_postgres_database(
    eventyard_bootstrap: str, topic: str, postgres_database: str, wait_for: Callable[..., object]
) -> None:
    total = produce_random_carts(eventyard_bootstrap, topic, 600, seed=5)
    config = {"bootstrap.servers": eventyard_bootstrap, "session.timeout.ms": 6000}
    first = Projector(config, topic, AuditedCartItems(), events, postgres_database, batch_size=20).start()
    second = Projector(config, topic, AuditedCartItems(), events, postgres_database, batch_size=20)
    try:
        wait_for(lambda: applied(first) > 50, timeout=30)
        second.start()  # a rebalance mid-stream: partitions change hands with their offsets
        wait_for(lambda: applied(second) == total, timeout=60)
        first.close()  # leaves the group: the second takes every partition over
        with EventPublisher(eventyard_bootstrap, events, transactions=False) as publisher:
            for i in range(6):
                cart = f"late-{i}"
                publisher.publish(topic, cart, [AddedItemToCart(cart_id=cart, sku="hat", quantity=1)])
        wait_for(lambda: applied(second) == total + 6, timeout=60)
        second.stop()
        second.catch_up()
        assert first.error is None and second.error is None
        assert applied(second) == sum(offsets(second).values()) == total + 6  # each event once
        assert table(second) == fold_of_log(eventyard_bootstrap, topic)
    finally:
        first.close()
        second.close()


def test_a_projector_whose_database_is_down(
    eventyard_bootstrap: str, topic: str, own_postgres: PostgresServer
) -> None:
    url = own_postgres.url
    count = produce_random_carts(eventyard_bootstrap, topic, 100, seed=8)
    projector = Projector(eventyard_bootstrap, topic, AuditedCartItems(), events, url, batch_size=25)
    try:
        projector.catch_up()
        count += produce_random_carts(eventyard_bootstrap, topic, 100, seed=9)
        own_postgres.stop()

        with pytest.raises(DatabaseUnavailable, match=r"PostgreSQL at postgresql://.* is unavailable"):
            projector.catch_up(timeout=30)
        with pytest.raises(DatabaseUnavailable):
            projector.poll(1.0)  # still down: every poll says so, none applies anything
        with pytest.raises(DatabaseUnavailable):
            Projector(eventyard_bootstrap, topic, AuditedCartItems(), events, url)

        projector.start()  # a background projector stops with the error
        deadline = time.monotonic() + 30
        while projector.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert isinstance(projector.error, DatabaseUnavailable)
        with pytest.raises(ToolkitError, match="the projector stopped: PostgreSQL at"):
            projector.catch_up()
        projector.stop()
        projector.error = None

        own_postgres.start()  # back: the same projector reconnects and goes on where the database is
        projector.catch_up(timeout=60)
        assert applied(projector) == sum(offsets(projector).values()) == count
        assert table(projector) == fold_of_log(eventyard_bootstrap, topic)
    finally:
        projector.close()
