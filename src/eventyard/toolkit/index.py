"""A local SQLite index of an event topic: each entity's events with their version, by offset.

It is a projection like any other (rebuildable from the topic at any time: delete the file), kept
for one purpose: loading an aggregate reads its own events, not the whole partition."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from eventyard.toolkit.events import HEADER_CONTENT_TYPE, HEADER_TYPE, HEADER_VERSION
from eventyard.toolkit.kafka import Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS eventyard_events (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    log_offset INTEGER NOT NULL,
    entity_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    payload BLOB,
    timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, log_offset)
);
CREATE UNIQUE INDEX IF NOT EXISTS eventyard_events_by_entity ON eventyard_events (topic, entity_id, version);
CREATE TABLE IF NOT EXISTS eventyard_index_positions (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""


@dataclass(frozen=True, slots=True)
class IndexedEvent:
    partition: int
    offset: int
    version: int
    type: str
    schema_version: int
    content_type: str
    payload: bytes | None
    timestamp_ms: int


class EventIndex:
    """Thread-safe; several processes may share one file (SQLite serializes their writes)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
                self._db.execute(
                    "PRAGMA synchronous=NORMAL"
                )  # an index survives a process crash; rebuildable
            self._db.executescript(_SCHEMA)

    @property
    def shared(self) -> bool:
        """Whether other processes can open this index (so writers must lock across processes)."""
        return self.path != ":memory:" and not self.path.startswith("file::memory:")

    def position(self, topic: str, partition: int) -> int:
        """The next offset to index: everything below it is indexed."""
        with self._lock:
            return self._position(topic, partition)

    def _position(self, topic: str, partition: int) -> int:
        row = self._db.execute(
            "SELECT next_offset FROM eventyard_index_positions WHERE topic = ? AND partition = ?",
            (topic, partition),
        ).fetchone()
        return int(row[0]) if row else 0

    def version(self, topic: str, entity_id: str) -> int:
        with self._lock:
            return self._version(topic, entity_id)

    def _version(self, topic: str, entity_id: str) -> int:
        row = self._db.execute(
            "SELECT max(version) FROM eventyard_events WHERE topic = ? AND entity_id = ?", (topic, entity_id)
        ).fetchone()
        return int(row[0] or 0)

    def add(
        self, topic: str, partition: int, records: Iterable[Record], start: int, next_offset: int
    ) -> bool:
        """Index the records read from offset `start` up to `next_offset` (exclusive).

        Records below the current position (indexed meanwhile by another thread or process) are
        skipped; if the position is behind `start` nothing is added (that would leave a hole).
        Records without a key or an event type header are not events of ours: skipped."""
        with self._lock, self._write():
            position = self._position(topic, partition)
            if position < start:
                return False
            versions: dict[str, int] = {}
            for record in records:
                if record.offset < position or record.key is None:
                    continue
                headers = {k: v.decode(errors="replace") for k, v in record.headers if v is not None}
                if HEADER_TYPE not in headers:
                    continue
                entity_id = record.key.decode(errors="replace")
                if entity_id not in versions:
                    versions[entity_id] = self._version(topic, entity_id)
                versions[entity_id] += 1
                self._db.execute(
                    "INSERT INTO eventyard_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        topic,
                        partition,
                        record.offset,
                        entity_id,
                        versions[entity_id],
                        headers[HEADER_TYPE],
                        _version(headers.get(HEADER_VERSION, "1")),
                        headers.get(HEADER_CONTENT_TYPE, "application/json"),
                        record.value,
                        record.timestamp_ms,
                    ),
                )
            self._db.execute(
                "INSERT INTO eventyard_index_positions VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                "DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                (topic, partition, next_offset),
            )
            return True

    def events(
        self, topic: str, entity_id: str, at_offset: int | None = None, at_time_ms: int | None = None
    ) -> list[IndexedEvent]:
        sql = (
            "SELECT partition, log_offset, version, type, schema_version, content_type, payload, "
            "timestamp_ms FROM eventyard_events WHERE topic = ? AND entity_id = ?"
        )
        params: list[object] = [topic, entity_id]
        if at_offset is not None:
            sql += " AND log_offset <= ?"
            params.append(at_offset)
        if at_time_ms is not None:
            sql += " AND timestamp_ms <= ?"
            params.append(at_time_ms)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY version", params).fetchall()
        return [IndexedEvent(*row) for row in rows]

    @contextmanager
    def _write(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")  # takes the write lock now: the position read stays true
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _version(text: str) -> int:
    # A malformed header must not wedge the index: 0 makes reading that entity fail with a reason.
    return int(text) if text.isdigit() else 0
