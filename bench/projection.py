"""Projections into SQLite and PostgreSQL: how many events per second one projector applies, and how
long an event takes from publish to its row in the projection's table.

    python bench/projection.py [--events 50000] [--runs 3] [--rate 200] [--seconds 20]

The bench starts its own broker (eventyard serve in a child process, data on disk) and its own
PostgreSQL server (eventyard.testing.postgres: initdb in a temporary directory, PostgreSQL's default
durability settings: fsync on, synchronous_commit on). SQLite runs as the toolkit opens it: WAL,
synchronous=FULL.

Throughput: `--events` cart events (valid histories of 1,000 carts) are published to a topic of 3
partitions before the projector starts; one projector (the cart_items projection, which sends
an upsert or a delete per event with `tx.send`; batches of `--batch` events, one transaction each)
consumes from the beginning into a fresh database. Timed
from the end of its first batch (after joining the group) to the last event; median of `--runs`.

`--databases postgres-execute` (or sqlite-execute) adds runs of the same projection with every
statement through `tx.execute`, which waits for the database's answer, as the projections did before
`tx.send` existed: the runs alternate with the others, for a comparison under the same load.

Latency: a projector runs, caught up; a publisher sends one AddedItemToCart every 1/`--rate` s for
`--seconds` s, each to its own cart. Latency is from just before publish() to the return of the
commit that wrote the event's row (measured in this process: one clock).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples.cart, from the repository

from confluent_kafka import Producer

from eventyard.testing import BrokerProcess
from eventyard.testing.postgres import PostgresServer
from eventyard.toolkit import (
    EventPublisher,
    Projector,
    RecordedEvent,
    Transaction,
    connect,
    ensure_topic,
    partition_for,
)
from examples.cart.domain import AddedItemToCart, Cart, events
from examples.cart.projection import CartItems

PARTITIONS = 3
SKUS = ("socks", "shirt", "hat", "shoes", "scarf")


def publish_carts(bootstrap: str, topic: str, count: int, carts: int = 1000, seed: int = 1) -> int:
    """At least `count` events of valid cart histories, produced in bulk; returns how many."""
    rng = random.Random(seed)
    state = [Cart(f"cart-{i}") for i in range(carts)]
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    produced = 0
    while produced < count:
        cart = rng.choice(state)
        sku = rng.choice(SKUS)
        if sku not in cart.items:
            cart.add_item(sku, rng.randint(1, 5))
        elif rng.random() < 0.6:
            cart.change_quantity(sku, cart.items[sku] % 9 + 1)
        else:
            cart.remove_item(sku)
        for event in cart.pending:
            value, headers = events.encode(event)
            key = cart.id.encode()
            producer.produce(topic, value, key, partition_for(cart.id, PARTITIONS), headers=headers)
            produced += 1
        cart.mark_saved()
        producer.poll(0)
    assert producer.flush(60) == 0
    return produced


class Databases:
    """A fresh, empty database of each kind for every measurement."""

    def __init__(self, workdir: Path, postgres: PostgresServer) -> None:
        self.workdir = workdir
        self.postgres = postgres

    def fresh(self, kind: str) -> str:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        if kind.startswith("sqlite"):
            return f"sqlite:///{self.workdir / (name + '.db')}"
        return self.postgres.create_database(name)


class _EachWaits:
    """A transaction whose send() is execute(): every statement waits for the database's answer."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._tx.execute(sql, params)

    def send(self, sql: str, params: Sequence[object] = ()) -> None:
        self._tx.execute(sql, params)

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._tx.query(sql, params)


class ExecutedCartItems(CartItems):
    """cart_items with every statement executed: one round trip each on PostgreSQL."""

    def apply(self, tx: Transaction, recorded: RecordedEvent) -> None:
        super().apply(_EachWaits(tx), recorded)


def throughput(bootstrap: str, topic: str, total: int, url: str, batch: int, execute: bool = False) -> float:
    """Events per second one projector applies, from the end of its first batch to the last event."""
    projection = ExecutedCartItems() if execute else CartItems()
    group = f"bench-{uuid.uuid4().hex[:8]}"
    with Projector(bootstrap, topic, projection, events, url, group=group, batch_size=batch) as projector:
        first = 0
        while first == 0:
            first = projector.poll(1.0)
        start = time.perf_counter()
        applied = first
        while applied < total:
            applied += projector.poll(1.0)
        elapsed = time.perf_counter() - start
        with projector.db.transaction() as tx:
            assert tx.query("SELECT count(*) FROM cart_items")[0][0] > 0
    return (total - first) / elapsed


class TimedCartItems(CartItems):
    """cart_items, noting which events the open transaction applied (their carts are "lat-<n>")."""

    name = "bench-latency"
    tables: ClassVar[tuple[str, ...]] = ("cart_items",)

    def __init__(self) -> None:
        self.pending: list[int] = []

    def apply(self, tx: Transaction, recorded: RecordedEvent) -> None:
        super().apply(tx, recorded)
        self.pending.append(int(recorded.entity_id.removeprefix("lat-")))


def latency(bootstrap: str, url: str, rate: float, seconds: float) -> list[float]:
    """Milliseconds from publish to committed row, for each of rate*seconds events."""
    topic = f"latency-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, partitions=PARTITIONS)
    count = int(rate * seconds)
    sent = [0.0] * count
    seen = [0.0] * count
    projection = TimedCartItems()
    stopping = threading.Event()
    projector = Projector(bootstrap, topic, projection, events, url, group=f"lat-{uuid.uuid4().hex[:8]}")

    def project() -> None:  # the projector's own loop, noting the time each commit returned
        while not stopping.is_set():
            projection.pending.clear()
            if projector.poll(0.1):
                now = time.perf_counter()
                for n in projection.pending:
                    seen[n] = now

    with EventPublisher(bootstrap, events, transactions=False) as publisher:
        publisher.publish(topic, "lat-0", [AddedItemToCart(cart_id="lat-0", sku="warm-up", quantity=1)])
        projector.catch_up()  # joined, assigned, fetching
        thread = threading.Thread(target=project, daemon=True)
        thread.start()
        start = time.perf_counter()
        for n in range(count):
            time.sleep(max(0.0, start + n / rate - time.perf_counter()))  # a fixed schedule
            cart = f"lat-{n}"
            sent[n] = time.perf_counter()
            publisher.publish(topic, cart, [AddedItemToCart(cart_id=cart, sku="socks", quantity=1)])
        deadline = time.monotonic() + 60
        while (0.0 in seen) and time.monotonic() < deadline:
            time.sleep(0.05)
    stopping.set()
    thread.join(30)
    projector.close()
    missing = seen.count(0.0)
    if missing:
        raise RuntimeError(f"{missing} events never reached the table")
    return [(s - p) * 1000 for p, s in zip(sent, seen, strict=True)]


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def settings(postgres: PostgresServer, workdir: Path) -> list[str]:
    db = connect(postgres.url)
    with db.transaction() as tx:
        version = tx.query("SHOW server_version")[0][0]
        pg = {
            name: tx.query(f"SHOW {name}")[0][0]
            for name in ("fsync", "synchronous_commit", "wal_sync_method")
        }
    db.close()
    lite = connect(f"sqlite:///{workdir / 'settings.db'}")
    with lite.transaction() as tx:
        journal = tx.query("PRAGMA journal_mode")[0][0]
        synchronous = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[tx.query("PRAGMA synchronous")[0][0]]
    lite.close()
    import psycopg

    pg_settings = ", ".join(f"{k}={v}" for k, v in pg.items())
    return [
        f"PostgreSQL {version} ({pg_settings}), psycopg {psycopg.__version__}",
        f"SQLite {sqlite3.sqlite_version} (journal_mode={journal}, synchronous={synchronous})",
        f"Python {sys.version.split()[0]}",
    ]


@contextmanager
def servers(workdir: Path) -> Iterator[tuple[BrokerProcess, PostgresServer]]:
    with BrokerProcess(workdir / "broker") as broker, PostgresServer("bench") as postgres:
        yield broker, postgres


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500, help="the projector's batch_size")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second, latency test")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args()
    kinds = args.databases.split(",")
    say: Callable[[str], Any] = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731

    with tempfile.TemporaryDirectory(prefix="eventyard-bench-") as tmp, servers(Path(tmp)) as (broker, pg):
        workdir = Path(tmp)
        databases = Databases(workdir, pg)
        topic = "carts"
        ensure_topic(broker.bootstrap, topic, partitions=PARTITIONS)
        total = publish_carts(broker.bootstrap, topic, args.events)
        say(f"published {total:,} cart events to {PARTITIONS} partitions")

        rates: dict[str, list[float]] = {kind: [] for kind in kinds}
        for run in range(args.runs):
            for kind in kinds:  # alternating, so that a slow moment of the machine hits both
                url = databases.fresh(kind)
                execute = kind.endswith("-execute")
                rates[kind].append(throughput(broker.bootstrap, topic, total, url, args.batch, execute))
                say(f"run {run + 1} {kind}: {rates[kind][-1]:,.0f} events/s")

        latencies: dict[str, list[float]] = {}
        for kind in (kind for kind in kinds if not kind.endswith("-execute")):
            latencies[kind] = sorted(
                latency(broker.bootstrap, databases.fresh(kind), args.rate, args.seconds)
            )
            say(f"latency {kind}: median {statistics.median(latencies[kind]):.1f} ms")

        print(
            f"\nThroughput: {total:,} events, {PARTITIONS} partitions, batches of {args.batch}, "
            f"median of {args.runs} runs"
        )
        print(f"{'database':<16} {'events/s':>10}   runs")
        for kind in kinds:
            runs = ", ".join(f"{r:,.0f}" for r in rates[kind])
            print(f"{kind:<16} {statistics.median(rates[kind]):>10,.0f}   {runs}")
        print(f"\nLatency, publish to committed row: {args.rate:g} events/s for {args.seconds:g} s")
        print(f"{'database':<10} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}")
        for kind, ordered in latencies.items():
            print(
                f"{kind:<10} {statistics.median(ordered):>10.1f} {percentile(ordered, 0.99):>8.1f} "
                f"{ordered[-1]:>8.1f}"
            )
        print()
        for line in settings(pg, workdir):
            print(line)


if __name__ == "__main__":
    main()
