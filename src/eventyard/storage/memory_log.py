"""The storage engine that keeps logs in memory (`eventyard serve --memory`, tests)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from eventyard.protocol.records import BatchHeader, read_header
from eventyard.storage.base import LogConfig
from eventyard.storage.segmented import NO_TIMESTAMP, BatchInfo, SegmentedLog


class MemorySegment:
    def __init__(self, base_offset: int) -> None:
        self.base_offset = base_offset
        self.next_offset = base_offset
        self.size = 0
        self.max_timestamp = NO_TIMESTAMP
        self.max_timestamp_offset = -1
        self.created_ms = 0
        self._batches: list[bytes] = []
        self._lasts: list[int] = []  # last offset of each batch
        self._ends: list[int] = []  # where each batch ends, counting bytes from the segment start
        self._running_max: list[int] = []  # max timestamp of the batches up to each one

    def append(self, buf: bytes | memoryview, infos: Sequence[BatchInfo], now_ms: int) -> None:
        if not self.size:
            self.created_ms = now_ms
        for info in infos:
            self._batches.append(bytes(buf[info.position : info.position + info.size]))
            self._lasts.append(info.last_offset)
            self._ends.append(self.size + info.size)
            if info.max_timestamp > self.max_timestamp:
                self.max_timestamp = info.max_timestamp
                self.max_timestamp_offset = info.base_offset
            self._running_max.append(self.max_timestamp)
            self.size += info.size
        self.next_offset = infos[-1].last_offset + 1

    def _index(self, offset: int) -> int:
        """Index of the batch holding offset (len(batches) if none)."""
        return bisect_left(self._lasts, offset)

    def read(self, offset: int, max_bytes: int, min_one: bool) -> tuple[bytes, bool]:
        start = self._index(offset)
        if start == len(self._batches):
            return b"", True
        end = bisect_right(self._ends, (self._ends[start - 1] if start else 0) + max_bytes)
        if end <= start:
            if not min_one:
                return b"", False
            end = start + 1
        return b"".join(self._batches[start:end]), end == len(self._batches)

    def headers(self, from_offset: int) -> Iterator[BatchHeader]:
        for batch in self._batches[self._index(from_offset) :]:
            yield read_header(batch)

    def batch_at(self, offset: int) -> bytes:
        return self._batches[self._index(offset)]

    def timestamp_floor(self, timestamp: int) -> int:
        # The running max is sorted: bisect finds the first batch reaching the timestamp.
        k = bisect_left(self._running_max, timestamp)
        return self._lasts[k - 1] + 1 if k else self.base_offset

    def finalize(self) -> None:
        pass

    def close(self) -> None:
        pass

    def delete(self) -> None:
        self._batches.clear()
        self._lasts.clear()
        self._ends.clear()
        self._running_max.clear()


class MemoryLog(SegmentedLog[MemorySegment]):
    def __init__(self, config: LogConfig | None = None) -> None:
        super().__init__(config or LogConfig())
        self._set_segments([MemorySegment(0)])

    def _new_segment(self, base_offset: int) -> MemorySegment:
        return MemorySegment(base_offset)


class MemoryStorageEngine:
    """Logs live as long as the engine: reopening a closed log finds its records again."""

    def __init__(self) -> None:
        self._logs: dict[tuple[str, int], MemoryLog] = {}

    def open_log(self, topic: str, partition: int, config: LogConfig) -> MemoryLog:
        log = self._logs.get((topic, partition))
        if log is None:
            log = self._logs[(topic, partition)] = MemoryLog(config)
        log.config = config
        log.closed = False
        return log

    def delete_log(self, topic: str, partition: int) -> None:
        log = self._logs.pop((topic, partition), None)
        if log is not None:
            log.close()

    def close(self) -> None:
        for log in self._logs.values():
            log.close()


if TYPE_CHECKING:  # both must satisfy the protocols in base.py
    from eventyard.storage.base import PartitionLog, StorageEngine

    _log: type[PartitionLog] = MemoryLog
    _engine: type[StorageEngine] = MemoryStorageEngine
