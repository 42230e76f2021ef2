"""KafkaEventLog: the EventLog port over a Kafka topic, with optimistic concurrency on entity versions.

Reading an entity: its partition is caught up into the local EventIndex (only the records added
since the last catch-up are fetched), then its events are read from the index. The cost is the
entity's own history plus the partition's new records, never a scan of the partition.

Appending with an expected version (the concurrency check):
    1. take the partition's writer lock;
    2. catch the index up to the partition's end (the high watermark, asked of the broker now);
    3. compare the entity's version in the index with the expected one: ConcurrencyConflict if not equal;
    4. publish the events (one acknowledged batch, see publisher.py) and index them; release the lock.
Kafka has no conditional append, so the check is only as strong as the lock: it is a threading lock
plus an fcntl lock on a file next to the index, so every thread and process that shares the index
file is one writer per partition. That covers any number of worker processes on one host. Writers
that do NOT share an index (other hosts) are not serialized: route each partition's commands to
one host (e.g. by consumer-group assignment of a commands topic), or two commands racing there can
both pass the check. Transactions would not change this: they make a command atomic, not conditional.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition

from eventyard.toolkit.errors import ConcurrencyConflict, ToolkitError
from eventyard.toolkit.events import Event, EventRegistry, RecordedEvent
from eventyard.toolkit.index import EventIndex, IndexedEvent
from eventyard.toolkit.kafka import (
    Config,
    Record,
    Watermarks,
    client_config,
    message_position,
    to_record,
)
from eventyard.toolkit.kafka import name as resource_name
from eventyard.toolkit.publisher import Delivery, EventPublisher

_guard = threading.Lock()
_thread_locks: dict[tuple[str, str, int], threading.Lock] = {}
_lock_files: dict[str, int] = {}  # opened once per process: closing any fd would drop its fcntl locks


@contextmanager
def writer_lock(index: EventIndex, topic: str, partition: int) -> Iterator[None]:
    """One writer per partition among the threads of this process and the processes sharing `index`."""
    name = os.path.realpath(index.path) if index.shared else f"memory:{id(index)}"
    with _guard:
        lock = _thread_locks.setdefault((name, topic, partition), threading.Lock())
    with lock:  # fcntl locks belong to the process, so threads must be serialized first
        if not index.shared or sys.platform == "win32":
            yield
            return
        import fcntl

        with _guard:
            path = f"{name}.{topic}.lock"
            if path not in _lock_files:
                _lock_files[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            fd = _lock_files[path]
        fcntl.lockf(fd, fcntl.LOCK_EX, 1, partition)  # one byte per partition
        try:
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, partition)


class KafkaEventLog:
    """Entities' events in one topic, keyed by entity id; see the module docstring for the guarantees."""

    def __init__(
        self,
        config: Config,
        topic: str,
        registry: EventRegistry,
        index: EventIndex | str | Path = ":memory:",
        *,
        publisher: EventPublisher | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.topic = resource_name(config, topic)  # with the prefix of a platform add-on's config
        self.registry = registry
        self.timeout = timeout
        self.index = index if isinstance(index, EventIndex) else EventIndex(index)
        self.publisher = publisher or EventPublisher(config, registry, timeout=timeout)
        # assign() only, never subscribe(): the group id is required by the client, never joined
        self._consumer = Consumer(
            client_config(
                config,
                group_id=resource_name(config, "eventyard-event-index"),
                enable_auto_commit=False,
                enable_partition_eof=True,
                isolation_level="read_committed",
                fetch_wait_max_ms=20,  # assigned only while catching up: never wait long at the end
            )
        )
        self._consumer_lock = threading.Lock()
        self._watermarks = Watermarks(config, timeout)

    def append(self, entity_id: str, events: Sequence[Event], expected_version: int) -> list[RecordedEvent]:
        if not events:
            return []
        partition = self.publisher.partition(self.topic, entity_id)
        with writer_lock(self.index, self.topic, partition):
            self._catch_up(partition)
            actual = self.index.version(self.topic, entity_id)
            if actual != expected_version:
                raise ConcurrencyConflict(entity_id, expected_version, actual)
            deliveries = self.publisher.publish(self.topic, entity_id, events)
            offsets = [d.offset for d in deliveries]
            if offsets == list(range(offsets[0], offsets[0] + len(offsets))):  # else: next catch-up
                records = [self._record(entity_id, d, e) for d, e in zip(deliveries, events, strict=True)]
                self.index.add(self.topic, partition, records, offsets[0], offsets[-1] + 1)
        return [
            RecordedEvent(e, entity_id, self.topic, partition, d.offset, _time(d.timestamp_ms))
            for d, e in zip(deliveries, events, strict=True)
        ]

    def read(
        self, entity_id: str, *, at_offset: int | None = None, at_time: datetime | None = None
    ) -> list[RecordedEvent]:
        self._catch_up(self.publisher.partition(self.topic, entity_id))
        at_ms = None if at_time is None else int(at_time.timestamp() * 1000)
        return [
            self._decode(entity_id, e) for e in self.index.events(self.topic, entity_id, at_offset, at_ms)
        ]

    def _record(self, entity_id: str, delivery: Delivery, event: Event) -> Record:
        value, headers = self.registry.encode(event)
        raw = [(k, v.encode() if isinstance(v, str) else v) for k, v in headers]
        return Record(
            self.topic,
            delivery.partition,
            delivery.offset,
            entity_id.encode(),
            value,
            raw,
            delivery.timestamp_ms,
        )

    def _decode(self, entity_id: str, row: IndexedEvent) -> RecordedEvent:
        event = self.registry.decode_payload(row.type, row.schema_version, row.content_type, row.payload)
        return RecordedEvent(event, entity_id, self.topic, row.partition, row.offset, _time(row.timestamp_ms))

    def _catch_up(self, partition: int) -> None:
        """Index the partition up to the end it has now."""
        with self._consumer_lock:
            start = self.index.position(self.topic, partition)
            low, high = self._watermarks(self.topic, partition)
            if start < low:
                raise ToolkitError(
                    f"{self.topic}[{partition}] starts at offset {low}: events below it were deleted, so "
                    "entities cannot be rebuilt (event topics need retention.ms=-1)"
                )
            if start >= high:
                return
            self._consumer.assign([TopicPartition(self.topic, partition, start)])
            position = start
            deadline = time.monotonic() + self.timeout
            while position < high:
                if time.monotonic() > deadline:
                    raise ToolkitError(f"timed out reading {self.topic}[{partition}] up to offset {high}")
                records: list[Record] = []
                end = position
                for message in self._consumer.consume(1000, 0.1):
                    error = message.error()
                    _, offset = message_position(message)
                    if error is None:
                        records.append(to_record(message))
                        end = max(end, offset + 1)
                    elif error.code() == KafkaError._PARTITION_EOF:
                        end = max(end, offset)  # past transaction markers, which carry no message
                    else:
                        raise ToolkitError(f"reading {self.topic}[{partition}]: {error.str()}")
                if end > position:
                    self.index.add(self.topic, partition, records, position, end)
                    position = end
            self._consumer.unassign()

    def close(self) -> None:
        with self._consumer_lock:
            self._consumer.close()
        self._watermarks.close()
        self.publisher.close()
        self.index.close()

    def __enter__(self) -> KafkaEventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _time(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
