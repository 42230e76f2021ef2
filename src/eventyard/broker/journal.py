"""The consumer-group journal: committed offsets and group metadata, durable across restarts.

One JSON record per line, each with a CRC-32C, appended as the coordinator produces them. A
torn or corrupt last line (a crash mid-write) is dropped on replay. On open, the journal is
rewritten to only what is still current (the latest offset per group and partition, the last
metadata of each group), through a temporary file and an atomic rename, so it never grows
without bound and a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import crc32c

from eventyard.atomic_file import write_atomically
from eventyard.coordinator.group_state import (
    GroupDeleted,
    GroupMetadata,
    OffsetCommitted,
    OffsetDeleted,
    Record,
)

log = logging.getLogger(__name__)

_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls for cls in (OffsetCommitted, OffsetDeleted, GroupMetadata, GroupDeleted)
}


def encode(record: Record) -> bytes:
    body = json.dumps({"type": type(record).__name__, **dataclasses.asdict(record)}, separators=(",", ":"))
    data = body.encode()
    return b"%08x " % crc32c.crc32c(data) + data + b"\n"


def decode(line: bytes) -> Record | None:
    """The record on a line, or None if the line is torn or corrupt."""
    if len(line) < 10 or not line.endswith(b"\n"):
        return None
    crc, data = line[:8], line[9:-1]
    try:
        if int(crc, 16) != crc32c.crc32c(data):
            return None
        fields = json.loads(data)
        cls = _TYPES[fields.pop("type")]
        if cls is GroupMetadata:
            fields["member_ids"] = tuple(fields["member_ids"])
        return cls(**fields)  # type: ignore[no-any-return]
    except (ValueError, KeyError, TypeError):
        return None


class CurrentState:
    """The latest offset per group and partition and the last metadata of each group."""

    def __init__(self) -> None:
        self.offsets: dict[tuple[str, str, int], OffsetCommitted] = {}
        self.groups: dict[str, GroupMetadata] = {}

    def apply(self, r: Record) -> None:
        if isinstance(r, OffsetCommitted):
            self.offsets[(r.group_id, r.topic, r.partition)] = r
        elif isinstance(r, OffsetDeleted):
            self.offsets.pop((r.group_id, r.topic, r.partition), None)
        elif isinstance(r, GroupMetadata):
            self.groups[r.group_id] = r
        elif isinstance(r, GroupDeleted):
            self.groups.pop(r.group_id, None)
            self.offsets = {k: v for k, v in self.offsets.items() if k[0] != r.group_id}

    def records(self) -> list[Record]:
        return [*self.groups.values(), *self.offsets.values()]


# Rewrite the file once it holds this many more lines than the current state needs.
COMPACT_SLACK = 50_000


class Journal:
    """Append-only file of coordinator records; None as path keeps nothing (memory broker)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.state = CurrentState()
        self._fd: int | None = None
        self._lines = 0
        self.unflushed = False

    def open(self) -> list[Record]:
        """Read back what was recorded, compact the file, and open it for appending."""
        if self.path is None:
            return []
        if self.path.exists():
            with open(self.path, "rb") as f:
                for number, line in enumerate(f, 1):
                    record = decode(line)
                    if record is None:
                        log.warning("%s: dropping a torn or corrupt record at line %d", self.path, number)
                        continue
                    self.state.apply(record)
        self._rewrite()
        return self.state.records()

    def _rewrite(self) -> None:
        assert self.path is not None
        records = self.state.records()
        write_atomically(self.path, b"".join(encode(r) for r in records))
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._lines = len(records)

    def append(self, records: list[Record]) -> None:
        """Hand the records to the OS (they survive the process being killed); fsync in flush()."""
        if self._fd is None or not records:
            return
        os.write(self._fd, b"".join(encode(r) for r in records))
        for r in records:
            self.state.apply(r)
        self._lines += len(records)
        self.unflushed = True
        if self._lines > len(self.state.offsets) + len(self.state.groups) + COMPACT_SLACK:
            self._rewrite()

    def flush(self) -> None:
        if self._fd is not None and self.unflushed:
            os.fsync(self._fd)
            self.unflushed = False

    def close(self) -> None:
        if self._fd is not None:
            self.flush()
            os.close(self._fd)
            self._fd = None
