"""The application layer: load an aggregate from its events, run a command, append what it emitted.

The repository depends on one narrow port, EventLog; KafkaEventLog (over a Kafka topic) and
InMemoryEventLog (for unit tests of the domain) implement it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar

from eventyard.toolkit.aggregate import Aggregate
from eventyard.toolkit.errors import ConcurrencyConflict
from eventyard.toolkit.events import Event, RecordedEvent

A = TypeVar("A", bound=Aggregate)


class EventLog(Protocol):
    def append(self, entity_id: str, events: Sequence[Event], expected_version: int) -> list[RecordedEvent]:
        """Store the events after the entity's `expected_version`-th one, or raise ConcurrencyConflict."""
        ...

    def read(
        self, entity_id: str, *, at_offset: int | None = None, at_time: datetime | None = None
    ) -> list[RecordedEvent]:
        """The entity's events in order; only those at or before the offset / timestamp if given."""
        ...


class Repository(Generic[A]):
    """Aggregates of one type over an event log."""

    def __init__(self, factory: Callable[[str], A], log: EventLog) -> None:
        self.factory = factory
        self.log = log

    def load(self, entity_id: str, *, at_offset: int | None = None, at_time: datetime | None = None) -> A:
        """The aggregate rebuilt from its events (as of an offset or a time: a past state, read-only
        in effect, since saving it would conflict with the newer events)."""
        history = self.log.read(entity_id, at_offset=at_offset, at_time=at_time)
        return self.factory(entity_id).replay(r.event for r in history)

    def save(self, aggregate: A) -> list[RecordedEvent]:
        """Append the pending events if nobody else appended since the load (ConcurrencyConflict if so)."""
        if not aggregate.pending:
            return []
        recorded = self.log.append(aggregate.id, aggregate.pending, aggregate.version)
        aggregate.mark_saved()
        return recorded

    def execute(self, entity_id: str, command: Callable[[A], object], *, retries: int = 0) -> A:
        """Load, run the command, save; on a conflict reload and run it again, at most `retries` times."""
        while True:
            aggregate = self.load(entity_id)
            command(aggregate)  # raises CommandRejected when the rules say no
            try:
                self.save(aggregate)
                return aggregate
            except ConcurrencyConflict:
                if retries <= 0:
                    raise
                retries -= 1


class InMemoryEventLog:
    """An EventLog in a list, with the same concurrency check: for tests of the domain."""

    def __init__(self, topic: str = "memory") -> None:
        self.topic = topic
        self.records: list[RecordedEvent] = []
        self._lock = threading.Lock()

    def append(self, entity_id: str, events: Sequence[Event], expected_version: int) -> list[RecordedEvent]:
        with self._lock:
            actual = sum(1 for r in self.records if r.entity_id == entity_id)
            if actual != expected_version:
                raise ConcurrencyConflict(entity_id, expected_version, actual)
            now = datetime.now(UTC)
            new = [
                RecordedEvent(e, entity_id, self.topic, 0, len(self.records) + i, now)
                for i, e in enumerate(events)
            ]
            self.records += new
            return new

    def read(
        self, entity_id: str, *, at_offset: int | None = None, at_time: datetime | None = None
    ) -> list[RecordedEvent]:
        with self._lock:
            return [
                r
                for r in self.records
                if r.entity_id == entity_id
                and (at_offset is None or r.offset <= at_offset)
                and (at_time is None or r.timestamp <= at_time)
            ]
