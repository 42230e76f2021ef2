"""The segmented log logic both storage engines share.

`SegmentedLog` does offset assignment, segment rolls, reads that run across segments, timestamp
lookups, DeleteRecords and retention over any `SegmentLike`. memory_log.py plugs in segments that
are lists of batch bytes, file_log.py segments on disk, so both engines behave alike down to when
segments roll and get deleted.

Every public method holds the log's lock (`_locked`) while it touches segments, so that
compaction (compaction.py), which runs in a worker thread, can swap closed segments for their
cleaned copies between two of them.
"""

from __future__ import annotations

import functools
import itertools
import threading
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar, cast

from eventyard.protocol.records import (
    TIMESTAMP_TYPE_LOG_APPEND,
    BatchHeader,
    decode_records,
    read_header,
    set_base_offset,
    set_max_timestamp,
)
from eventyard.storage.base import AppendResult, LogConfig, OffsetOutOfRange, StorageError

if TYPE_CHECKING:
    from eventyard.storage.base import CompactionConfig, CompactionStats

NO_TIMESTAMP = -(1 << 63)  # below any real timestamp, so the first batch always raises the max
MAX_RELATIVE = (1 << 31) - 1  # file indexes store int32: bounds a segment's offsets and bytes
_HEADERS_PER_LOCK = 1000  # batch_headers() lets go of the lock this often


class BatchInfo(NamedTuple):
    """What a segment needs to know about a batch it appends (offsets already assigned)."""

    position: int  # in the buffer handed to append()
    size: int
    base_offset: int
    last_offset: int
    max_timestamp: int  # NO_TIMESTAMP for a batch without records


class SegmentLike(Protocol):
    """What the shared log logic needs from a segment, on disk or in memory."""

    base_offset: int
    next_offset: int  # one past the last offset the segment holds
    size: int
    max_timestamp: int
    max_timestamp_offset: int  # base offset of the first batch reaching max_timestamp
    created_ms: int

    def append(self, buf: bytes | memoryview, infos: Sequence[BatchInfo], now_ms: int) -> None: ...

    def read(self, offset: int, max_bytes: int, min_one: bool) -> tuple[bytes, bool]:
        """Whole batches from the one holding offset; also whether the segment's end was reached."""

    def headers(self, from_offset: int) -> Iterator[BatchHeader]: ...

    def timestamp_floor(self, timestamp: int) -> int:
        """An offset before which no batch reaches the timestamp (an index hint: the lower the
        slower, never wrong)."""

    def batch_at(self, offset: int) -> bytes: ...

    def finalize(self) -> None:
        """The segment stops being the active one."""

    def close(self) -> None: ...

    def delete(self) -> None: ...


def record_timestamps(batch: bytes) -> list[tuple[int, int]]:
    """(offset, timestamp) of each record; a LogAppendTime batch stamps all with its max timestamp."""
    header = read_header(batch)
    records = decode_records(batch)
    if header.attributes & TIMESTAMP_TYPE_LOG_APPEND:
        return [(r.offset, header.max_timestamp) for r in records]
    return [(r.offset, r.timestamp) for r in records]


def first_at_or_after(batch: bytes, timestamp: int, min_offset: int) -> tuple[int, int] | None:
    for offset, ts in record_timestamps(batch):
        if offset >= min_offset and ts >= timestamp:
            return offset, ts
    return None


def latest_record(batch: bytes, min_offset: int) -> tuple[int, int] | None:
    """(offset, timestamp) of the first record with the batch's largest timestamp."""
    best: tuple[int, int] | None = None
    for offset, ts in record_timestamps(batch):
        if offset >= min_offset and (best is None or ts > best[1]):
            best = (offset, ts)
    return best


S = TypeVar("S", bound=SegmentLike)
F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    @functools.wraps(method)
    def locked(self: SegmentedLog[Any], *args: Any, **kwargs: Any) -> Any:
        with self._segments_lock:
            return method(self, *args, **kwargs)

    return cast(F, locked)


class SegmentedLog(ABC, Generic[S]):
    """A PartitionLog over segments; subclasses say how segments are made and kept."""

    def __init__(self, config: LogConfig) -> None:
        self.config = config  # the broker may replace it when topic configs change
        self._segments: list[S] = []
        self._bases: list[int] = []  # base offsets of _segments, for bisect
        self._log_start = 0
        self._clean_offset = 0  # compaction cleaned the segments below (the first dirty offset)
        self._segments_lock = threading.RLock()  # see the module docstring
        self._cleaner_lock = threading.Lock()  # one compaction at a time
        self.closed = False

    @abstractmethod
    def _new_segment(self, base_offset: int) -> S: ...

    def _persist_log_start(self, offset: int) -> None:
        """Make a DeleteRecords survive a restart (nothing to do in memory)."""

    def _check_open(self) -> None:
        if self.closed:
            raise StorageError("the log is closed")

    def _set_segments(self, segments: list[S]) -> None:
        self._segments = segments
        self._bases = [seg.base_offset for seg in segments]

    @property
    def log_start_offset(self) -> int:
        return self._log_start

    @property
    def log_end_offset(self) -> int:
        return self._segments[-1].next_offset

    @property
    @_locked
    def size_bytes(self) -> int:
        return sum(seg.size for seg in self._segments)

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    # --- appending -------------------------------------------------------------------------

    @_locked
    def append(
        self,
        data: bytearray | memoryview,
        batches: list[tuple[int, BatchHeader]],
        now_ms: int,
        log_append_time: bool = False,
    ) -> AppendResult:
        self._check_open()
        first = offset = self.log_end_offset
        if not batches:
            return AppendResult(first, first - 1, -1)
        infos: list[BatchInfo] = []
        contiguous = True
        written = 0  # position of each batch in the buffer written
        for pos, header in batches:
            set_base_offset(data, pos, offset)
            max_ts = header.max_timestamp if header.record_count else NO_TIMESTAMP
            if log_append_time:
                set_max_timestamp(data, pos, now_ms)
                max_ts = now_ms if header.record_count else NO_TIMESTAMP
            last = offset + header.last_offset_delta
            infos.append(BatchInfo(written, header.size, offset, last, max_ts))
            contiguous = contiguous and pos == batches[0][0] + written
            written += header.size
            offset = last + 1
        # One write per append: a failure is undone as a whole and nothing is half-appended.
        start = batches[0][0]
        if contiguous:
            buf: bytes | memoryview = memoryview(data)[start : start + written]
        else:
            buf = b"".join(data[pos : pos + header.size] for pos, header in batches)
        active = self._segments[-1]
        if active.size and (
            active.size + written > min(self.config.segment_bytes, MAX_RELATIVE)
            or now_ms - active.created_ms >= self.config.segment_ms
            or offset - 1 - active.base_offset > MAX_RELATIVE
        ):
            self._roll()
        self._segments[-1].append(buf, infos, now_ms)
        return AppendResult(first, offset - 1, now_ms if log_append_time else -1)

    def _roll(self) -> None:
        active = self._segments[-1]
        active.finalize()
        segment = self._new_segment(active.next_offset)
        self._segments.append(segment)
        self._bases.append(segment.base_offset)

    @_locked
    def roll_if_due(self, config: LogConfig, now_ms: int) -> bool:
        self._check_open()
        active = self._segments[-1]
        if active.size and now_ms - active.created_ms >= config.segment_ms:
            self._roll()
            return True
        return False

    # --- reading ---------------------------------------------------------------------------

    def _segment_index(self, offset: int) -> int:
        return max(bisect_right(self._bases, offset) - 1, 0)

    @_locked
    def read(self, offset: int, max_bytes: int, min_one: bool = True) -> bytes:
        self._check_open()
        end = self.log_end_offset
        if offset < self._log_start or offset > end:
            raise OffsetOutOfRange(f"offset {offset} is outside [{self._log_start}, {end}]")
        if offset == end:
            return b""
        parts: list[bytes] = []
        remaining = max_bytes
        segments = self._segments
        for i in range(self._segment_index(offset), len(segments)):
            seg = segments[i]
            data, at_end = seg.read(max(offset, seg.base_offset), remaining, min_one and not parts)
            if data:
                parts.append(data)
                remaining -= len(data)
            if not at_end or remaining <= 0:
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def batch_headers(self, from_offset: int) -> Iterator[BatchHeader]:
        # A slice at a time under the lock, never across a yield: the caller may stop halfway.
        offset = from_offset
        while headers := self._headers_slice(offset):
            yield from headers
            offset = headers[-1].last_offset + 1

    @_locked
    def _headers_slice(self, offset: int) -> list[BatchHeader]:
        self._check_open()
        offset = max(offset, self._log_start)
        out: list[BatchHeader] = []
        if offset >= self.log_end_offset:
            return out
        for seg in self._segments[self._segment_index(offset) :]:
            for header in seg.headers(max(offset, seg.base_offset)):
                out.append(header)
                if len(out) >= _HEADERS_PER_LOCK:
                    return out
        return out

    @_locked
    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        self._check_open()
        start = self._log_start
        # The first segment reaching the timestamp holds the answer; only its candidate batches
        # are decoded.
        for seg in self._segments:
            if seg.next_offset <= start or seg.max_timestamp < timestamp:
                continue
            for header in seg.headers(max(seg.timestamp_floor(timestamp), start)):
                if header.record_count and header.max_timestamp >= timestamp and header.last_offset >= start:
                    found = first_at_or_after(seg.batch_at(header.base_offset), timestamp, start)
                    if found is not None:
                        return found
        return None

    @_locked
    def max_timestamp(self) -> tuple[int, int] | None:
        self._check_open()
        start = self._log_start
        # (timestamp, offset, segment): the batch at offset is decoded, unless segment is None
        # and offset already is the record's.
        candidates: list[tuple[int, int, S | None]] = []
        for seg in self._segments:
            if seg.next_offset <= start or not seg.size:
                continue
            if seg.base_offset >= start:
                candidates.append((seg.max_timestamp, seg.max_timestamp_offset, seg))
                continue
            # Partly deleted: only what is left counts, record by record in the cut batch.
            headers = seg.headers(start)
            first = next(headers, None)
            if first is not None and first.base_offset < start:
                record = latest_record(seg.batch_at(start), start)
                if record is not None:
                    candidates.append((record[1], record[0], None))
            elif first is not None:
                headers = itertools.chain([first], headers)
            candidates.append((*_max_of_headers(headers), seg))
        best: tuple[int, int, S | None] | None = None
        for candidate in candidates:
            if candidate[0] != NO_TIMESTAMP and (best is None or candidate[0] > best[0]):
                best = candidate
        if best is None:
            return None
        timestamp, offset, segment = best
        return (offset, timestamp) if segment is None else latest_record(segment.batch_at(offset), start)

    # --- deleting --------------------------------------------------------------------------

    @_locked
    def delete_records_before(self, offset: int) -> int:
        self._check_open()
        if offset > self.log_end_offset:
            raise OffsetOutOfRange(f"offset {offset} is past the log end {self.log_end_offset}")
        if offset <= self._log_start:
            return self._log_start
        self._persist_log_start(offset)
        self._log_start = offset
        if self._segments[-1].size and self.log_end_offset <= offset:
            self._roll()  # everything goes: start an empty segment so the old one can be deleted
        self._delete_segments_below(offset)
        return offset

    @_locked
    def apply_retention(self, config: LogConfig, now_ms: int) -> int:
        self._check_open()
        deleted = 0
        # Oldest first, stopping at the first segment to keep: the log never gets holes.
        if config.retention_ms >= 0:
            while len(self._segments) > 1 and now_ms - self._segments[0].max_timestamp > config.retention_ms:
                self._delete_oldest()
                deleted += 1
        if config.retention_bytes >= 0:
            total = self.size_bytes
            while len(self._segments) > 1 and total > config.retention_bytes:
                total -= self._segments[0].size
                self._delete_oldest()
                deleted += 1
        return deleted

    def _delete_segments_below(self, offset: int) -> None:
        while len(self._segments) > 1 and self._segments[1].base_offset <= offset:
            self._delete_oldest()

    def _delete_oldest(self) -> None:
        seg = self._segments.pop(0)
        self._bases.pop(0)
        self._log_start = max(self._log_start, self._segments[0].base_offset)
        seg.delete()

    # --- compaction: the cleaner is compaction.py; these are the hooks it works through -----

    def compact(self, config: CompactionConfig, now_ms: int) -> CompactionStats:
        from eventyard.storage.compaction import compact  # it builds on this module

        return compact(self, config, now_ms)

    def _holds(self, segment: S) -> bool:
        """Whether segment is (still) one of the log's; call with the lock held."""
        i = self._segment_index(segment.base_offset)
        return not self.closed and i < len(self._segments) and self._segments[i] is segment

    def _cleaned_segment(self, base_offset: int) -> S:
        """An empty segment off to the side of the log, to write a cleaned copy to."""
        return self._new_segment(base_offset)

    def _seal_cleaned(self, segment: S) -> None:
        segment.finalize()  # FileLog also makes it durable

    def _discard_cleaned(self, segment: S) -> None:
        segment.delete()

    def _sync_cleaned(self) -> None:
        """All copies written, lock not held: FileLog makes their names durable."""

    def _before_compaction(self) -> None:
        """FileLog: make sure no earlier swap is still written down."""

    def _commit_swap(self, groups: Sequence[tuple[Sequence[S], S | None]]) -> None:
        """Lock held: FileLog records the swap, then renames the files. A group is a run of old
        segments and the copy replacing it (None: nothing left). If it raises with the log still
        open nothing changed; if it took the log offline, recovery finishes or undoes it."""

    def _after_swap(self) -> None:
        """Lock released: FileLog forgets the recorded swap and persists the clean offset."""

    def _replace_run(self, old: Sequence[S], new: Sequence[S]) -> None:
        """Lock held: put new (cleaned copies, the first with old[0]'s base offset) in place of
        the consecutive segments old (for the caller to close once it lets go of the lock)."""
        i = self._segment_index(old[0].base_offset)
        end = self._segments[i + len(old)].base_offset  # the active segment is never in a run
        for k, seg in enumerate(new):
            seg.next_offset = new[k + 1].base_offset if k + 1 < len(new) else end
        self._segments[i : i + len(old)] = new
        self._bases[i : i + len(old)] = [seg.base_offset for seg in new]
        self._clean_offset = max(self._clean_offset, end)

    def flush(self) -> None:
        """Nothing to sync in memory; FileLog overrides."""

    @_locked
    def close(self) -> None:
        self.closed = True


def _max_of_headers(headers: Iterator[BatchHeader]) -> tuple[int, int]:
    best = (NO_TIMESTAMP, -1)
    for header in headers:
        if header.record_count and header.max_timestamp > best[0]:
            best = (header.max_timestamp, header.base_offset)
    return best
