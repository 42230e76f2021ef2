"""Projections: services that subscribe to a topic and keep SQL tables as a fold of its events.

Exactly-once into the database, without Kafka transactions: the projector keeps the next offset of
each (group, topic, partition) in a table of the same database, and writes it IN THE SAME
TRANSACTION as the row changes of the events below it. On assignment it seeks to those offsets,
not to Kafka's committed ones. A crash anywhere rolls back rows and offsets together, so no event
is applied twice or skipped. The offset update is a compare-and-set on the previous value: a
projector that lost its partitions without noticing (a zombie) cannot commit over its successor.
Kafka's committed offsets are updated too, afterwards, only so that lag monitoring works.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from eventyard.toolkit.errors import ToolkitError, UnknownEventType
from eventyard.toolkit.events import EventRegistry, RecordedEvent
from eventyard.toolkit.kafka import Config, Watermarks, client_config, prefix_of, require_topics
from eventyard.toolkit.kafka import name as resource_name
from eventyard.toolkit.sql import Database, Transaction, connect

log = logging.getLogger(__name__)

OFFSETS_TABLE = "eventyard_projector_offsets"


class Projection(ABC):
    """What a projector maintains. `apply` runs inside the projector's transaction: never commit."""

    name: ClassVar[str]  # the default consumer group
    tables: ClassVar[tuple[str, ...]] = ()  # dropped by a rebuild

    @abstractmethod
    def create(self, tx: Transaction) -> None:
        """Create the tables if they do not exist."""

    @abstractmethod
    def apply(self, tx: Transaction, recorded: RecordedEvent) -> None:
        """Fold one event into the tables. Use tx.send() for the statements whose row count you do
        not need: on PostgreSQL a batch's sent statements share one round trip."""

    def drop(self, tx: Transaction) -> None:
        for table in self.tables:
            tx.execute(f"DROP TABLE IF EXISTS {table}")


class _Fenced(Exception):
    """Another projector of the group moved an offset we were about to move."""


class Projector:
    """Runs a projection in a consumer group. Drive it with poll()/catch_up(), or run it on a thread
    with start()/stop(). With SQLite, give each process its own group (or run one process per group):
    members of one group must share the database that holds the offsets."""

    def __init__(
        self,
        config: Config,
        topic: str,
        projection: Projection,
        registry: EventRegistry,
        database: Database | str | Path,
        *,
        group: str | None = None,
        batch_size: int = 500,
        skip_unknown: bool = False,
    ) -> None:
        self.config = config
        # the names on the cluster: with the prefix of a platform add-on's config
        self.topic = resource_name(config, topic)
        self.group = resource_name(config, group or projection.name)
        if prefix_of(config):  # a tenant cannot create it, and waiting for it would look like a hang
            require_topics(config, [self.topic])
        self.projection = projection
        self.registry = registry
        self.db = connect(database) if isinstance(database, str | Path) else database
        self.batch_size = batch_size
        self.skip_unknown = skip_unknown  # else an unknown event type stops the projector (fail-stop)
        self._consumer: Any = None
        self._cooperative = False  # incremental (cooperative-sticky) or eager rebalancing
        self._watermarks = Watermarks(config)
        self._positions: dict[int, int | None] = {}  # assigned partition -> next offset in the database
        # assigned partition -> the consumer's position once its batch is applied: unlike the offsets
        # above it passes transaction markers, which carry no event but count in the high watermark
        self._reached: dict[int, int] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.error: BaseException | None = None  # what stopped the background thread
        with self.db.transaction() as tx:
            tx.execute(
                f"CREATE TABLE IF NOT EXISTS {OFFSETS_TABLE} (group_id TEXT NOT NULL, topic TEXT NOT NULL, "
                "partition INTEGER NOT NULL, next_offset BIGINT NOT NULL, "
                "PRIMARY KEY (group_id, topic, partition))"
            )
            projection.create(tx)

    # -- driving it ---------------------------------------------------------------------------

    def poll(self, timeout: float = 1.0) -> int:
        """Apply one batch of events in one transaction; returns how many were applied.

        Raises what stopped the batch (nothing of it is applied): DatabaseUnavailable when the
        database cannot be reached, UnknownEventType, or what the projection raised. Polling again
        later is safe: the consumer starts over from the offsets in the database."""
        try:
            return self._poll(timeout)
        except BaseException:
            # The consumer has read past the rolled-back batch; a new one rejoins the group and
            # seeks to the database's offsets (possibly moved: a commit cut short may have landed)
            self._close_client()
            raise

    def _poll(self, timeout: float) -> int:
        # Wait for one record only, then take what the client has already fetched: consume(n, t)
        # would sit out the whole timeout whenever fewer than n records come, adding up to `timeout`
        # of latency to every event at a moderate rate.
        consumer = self._client()
        messages = consumer.consume(1, timeout)
        if messages and self.batch_size > 1:
            messages += consumer.consume(self.batch_size - 1, 0)
        batch: list[Any] = []
        for message in messages:
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                if error.fatal():
                    raise ToolkitError(f"consuming {self.topic}: {error.str()}")
                # librdkafka reports a lost broker and the like here, and recovers by itself.
                log.warning("projection of %s: %s", self.topic, error.str())
                continue
            position = self._positions.get(message.partition(), -1)
            if (
                error is None
                and message.partition() in self._positions
                and message.offset() >= (position or 0)
            ):
                batch.append(message)
        if not batch:
            self._note_reached()
            return 0
        moved: dict[int, int] = {}
        applied = 0
        try:
            with self.db.transaction() as tx:
                for message in batch:
                    recorded = self._decode(message)
                    if recorded is not None:
                        self.projection.apply(tx, recorded)
                        applied += 1
                    moved[message.partition()] = message.offset() + 1
                for partition, next_offset in moved.items():
                    self._move(tx, partition, next_offset)
        except _Fenced:
            self._reseek()
            return 0
        self._positions.update(moved)
        offsets = [TopicPartition(self.topic, p, o) for p, o in moved.items()]
        self._consumer.commit(offsets=offsets, asynchronous=True)  # informative only: the database decides
        self._note_reached()
        return applied

    def catch_up(self, timeout: float = 30.0) -> None:
        """Return once every assigned partition is applied up to the end it had when first seen."""
        deadline = time.monotonic() + timeout
        ends: dict[int, int] = {}
        while True:
            if self.error is not None:
                raise ToolkitError(f"the projector stopped: {self.error}") from self.error
            assigned = dict(self._positions)
            for partition in assigned.keys() - ends.keys():
                low, high = self._watermarks(self.topic, partition)
                ends[partition] = high if high > low else -1  # -1: nothing to apply
            if assigned and all(max(assigned[p] or 0, self._reached.get(p, 0)) >= ends[p] for p in assigned):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.group} did not catch up with {self.topic} in {timeout} s")
            if self._thread is None:
                self.poll(0.1)
            else:
                time.sleep(0.01)

    def run(self) -> None:
        """Apply events until stop() is called (from another thread or a signal handler)."""
        while not self._stopping.is_set():
            self.poll(0.2)

    def start(self) -> Projector:
        """Run on a background thread; an error stops it and is kept in `error`."""

        def run() -> None:
            try:
                self.run()
            except BaseException as error:
                self.error = error

        self._client()  # created here, so only the thread polls it from now on
        self._stopping.clear()
        self._thread = threading.Thread(target=run, name=f"projector-{self.group}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask run() to return after its current batch, and wait for the background thread if any."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def rebuild(self) -> None:
        """Empty the projection (drop and recreate its tables, forget its offsets) and replay the
        topic from its first offset on the next poll. Readers see the tables fill up again."""
        if self._thread is not None:
            raise ToolkitError("stop the projector before rebuilding it")
        self._close_client()
        with self.db.transaction() as tx:
            self.projection.drop(tx)
            tx.execute(
                f"DELETE FROM {OFFSETS_TABLE} WHERE group_id = ? AND topic = ?", (self.group, self.topic)
            )
            self.projection.create(tx)

    def close(self) -> None:
        self.stop()
        self._close_client()
        self._watermarks.close()
        self.db.close()

    def __enter__(self) -> Projector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._consumer is None:
            settings = client_config(
                self.config,
                # a short long-poll: librdkafka can sit that long before its first fetch
                {
                    "fetch.wait.max.ms": 100,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                },
                group_id=self.group,
                enable_auto_commit=False,
            )
            self._cooperative = "cooperative" in str(settings.get("partition.assignment.strategy", ""))
            self._consumer = Consumer(settings)
            self._consumer.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
            )
        return self._consumer

    def _close_client(self) -> None:
        if self._consumer is not None:
            self._consumer.close()  # leaves the group now, not after a session timeout
            self._consumer = None
        self._positions.clear()
        self._reached.clear()

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        stored = self._stored_offsets()
        for tp in partitions:
            self._positions[tp.partition] = stored.get(tp.partition)
            tp.offset = stored.get(tp.partition, 0)  # not OFFSET_BEGINNING: saves a ListOffsets round
        # from the database's offsets, not Kafka's
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._positions.pop(tp.partition, None)
            self._reached.pop(tp.partition, None)
        if self._cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    def _stored_offsets(self) -> Mapping[int, int]:
        with self.db.transaction() as tx:
            rows = tx.query(
                f"SELECT partition, next_offset FROM {OFFSETS_TABLE} WHERE group_id = ? AND topic = ?",
                (self.group, self.topic),
            )
        return {int(p): int(o) for p, o in rows}

    def _move(self, tx: Transaction, partition: int, next_offset: int) -> None:
        expected = self._positions.get(partition)
        key = (self.group, self.topic, partition)
        if expected is None:
            # a row that exists (or that a concurrent member is inserting) means a successor moved on
            if not tx.execute(
                f"INSERT INTO {OFFSETS_TABLE} VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", (*key, next_offset)
            ):
                raise _Fenced
        elif not tx.execute(
            f"UPDATE {OFFSETS_TABLE} SET next_offset = ? "
            "WHERE group_id = ? AND topic = ? AND partition = ? AND next_offset = ?",
            (next_offset, *key, expected),
        ):
            raise _Fenced

    def _note_reached(self) -> None:
        """After a batch is applied (or found empty): every message below the position is applied."""
        assigned = [TopicPartition(self.topic, p) for p in self._positions]
        for tp in self._consumer.position(assigned) if assigned else ():
            self._reached[tp.partition] = tp.offset

    def _reseek(self) -> None:
        """After a fenced commit: continue from what the database says."""
        self._reached.clear()
        stored = self._stored_offsets()
        for partition in list(self._positions):
            self._positions[partition] = stored.get(partition)
            offset = stored.get(partition, OFFSET_BEGINNING)
            # not fetching yet: the next assignment starts from the database's offset anyway
            with contextlib.suppress(KafkaException):
                self._consumer.seek(TopicPartition(self.topic, partition, offset))

    def _decode(self, message: Any) -> RecordedEvent | None:
        try:
            event = self.registry.decode(message.headers(), message.value())
        except UnknownEventType:
            if self.skip_unknown:
                return None
            raise
        key = message.key()
        when = datetime.fromtimestamp(message.timestamp()[1] / 1000, UTC)
        entity = key.decode(errors="replace") if key is not None else ""
        return RecordedEvent(event, entity, self.topic, message.partition(), message.offset(), when)
