"""The narrow interface between the broker and a partition's log.

The broker hands a log whole, validated record batches and gets back offsets and file bytes.
It never sees file layouts: the file engine (segments, indexes, recovery) and the memory engine
both implement `PartitionLog`, and both pass the same conformance tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from eventyard.protocol.records import BatchHeader


class StorageError(Exception):
    """The disk failed us (full, I/O error): answered as KAFKA_STORAGE_ERROR."""


class OffsetOutOfRange(Exception):
    """A read below the log start offset or past the log end offset."""


@dataclass(frozen=True, slots=True)
class LogConfig:
    """The per-partition settings storage acts on (from topic configs and broker defaults)."""

    segment_bytes: int = 1024 * 1024 * 1024
    segment_ms: int = 7 * 24 * 3600 * 1000
    index_interval_bytes: int = 4096
    retention_ms: int = 7 * 24 * 3600 * 1000  # -1: keep forever
    retention_bytes: int = -1  # -1: no size limit


@dataclass(frozen=True, slots=True)
class CompactionConfig:
    """The settings of one compaction (cleanup.policy=compact), from the topic's configs."""

    delete_retention_ms: int = 24 * 3600 * 1000  # how long a tombstone outlives what it deletes
    min_compaction_lag_ms: int = 0  # segments holding records younger than this are left alone
    min_cleanable_dirty_ratio: float = 0.5  # clean once this share of the cleanable bytes is new
    force: bool = False  # clean whatever the dirty ratio


@dataclass(frozen=True, slots=True)
class CompactionStats:
    """What one compaction did; all zero when it found nothing to do or gave up."""

    records_read: int = 0  # records in the segments rewritten
    records_kept: int = 0
    bytes_before: int = 0  # size of the segments rewritten
    bytes_after: int = 0  # size of what replaced them
    segments_cleaned: int = 0
    elapsed: float = 0.0  # seconds


@dataclass(frozen=True, slots=True)
class AppendResult:
    base_offset: int  # offset given to the first record appended
    last_offset: int  # offset of the last record appended
    log_append_time: int  # ms; -1 unless the log stamped the batches


class PartitionLog(Protocol):
    """An append-only log of record batches for one partition."""

    config: LogConfig  # replaced by the broker when the topic's configs change

    @property
    def log_start_offset(self) -> int:
        """The first offset that can be read."""

    @property
    def log_end_offset(self) -> int:
        """The offset the next appended record gets (the high watermark on one machine)."""

    @property
    def size_bytes(self) -> int: ...

    @property
    def segment_count(self) -> int: ...

    def append(
        self,
        data: bytearray | memoryview,
        batches: list[tuple[int, BatchHeader]],
        now_ms: int,
        log_append_time: bool = False,
    ) -> AppendResult:
        """Append validated batches found at the given positions of `data`.

        Assigns consecutive offsets from log_end_offset by rewriting each batch's base offset in
        place (and, with log_append_time, its max timestamp and CRC), writes them to the log as
        they are, and returns the offsets given. The bytes are handed to the OS before return.
        `data` is often a view of the request frame: an engine keeps no reference to it after
        return (one that keeps batches in memory copies them).
        """

    def read(self, offset: int, max_bytes: int, min_one: bool = True) -> bytes:
        """Whole batches from the one holding `offset`, up to max_bytes.

        With min_one, the first batch is returned even if larger than max_bytes (KIP-74).
        Returns b"" at log_end_offset; raises OffsetOutOfRange outside
        [log_start_offset, log_end_offset].
        """

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record whose timestamp is >= timestamp, or None."""

    def max_timestamp(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the record with the largest timestamp, or None if empty."""

    def batch_headers(self, from_offset: int) -> Iterator[BatchHeader]:
        """Headers of the batches from the one holding from_offset (recovery of producer state)."""

    def delete_records_before(self, offset: int) -> int:
        """Move log_start_offset forward to `offset` (DeleteRecords); return the new start."""

    def apply_retention(self, config: LogConfig, now_ms: int) -> int:
        """Delete closed segments beyond retention; return how many were deleted."""

    def roll_if_due(self, config: LogConfig, now_ms: int) -> bool:
        """Close the active segment if it is older than segment_ms and not empty."""

    def compact(self, config: CompactionConfig, now_ms: int) -> CompactionStats:
        """Keep only the latest record of each key in the closed segments (log compaction).

        Records keep their offsets (batches get gaps); tombstones go delete_retention_ms after
        their timestamp. The active segment is never rewritten, and neither the log start nor
        the log end offset moves. Blocking: the broker runs it in a worker thread, while appends
        and reads go on; only the final swap of segments holds them up, briefly.
        """

    def flush(self) -> None:
        """fsync what was appended (blocking: the broker calls it off the event loop)."""

    def close(self) -> None: ...


class StorageEngine(Protocol):
    """Where partition logs live: a data directory, or memory."""

    def open_log(self, topic: str, partition: int, config: LogConfig) -> PartitionLog:
        """Open (recovering, if it exists) or create the log of topic-partition."""

    def delete_log(self, topic: str, partition: int) -> None: ...

    def close(self) -> None: ...
