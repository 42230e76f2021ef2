"""Partition logs in a data directory: `<data_dir>/<topic>-<partition>/`, one file per segment.

`FileLog` is the shared `SegmentedLog` logic (memory_log.py) over file `Segment`s, plus what only
files need: recovery on open (`RecoveredSegment`), the persisted log start offset, and fsync.

Compaction writes its cleaned segments as `<base>.log.cleaned` (and indexes) beside the log and
fsyncs them; then, holding the log's lock, it records the swap in `cleaner-swap` (the commit
point) and renames them over the old segments (compaction.finish_swap). A crash before the
record leaves the old segments (recovery deletes the `.cleaned` files); after it, recovery
redoes the renames: the log is always either the old segments or the cleaned ones.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import struct
import threading
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from typing import TYPE_CHECKING

from eventyard.protocol.records import HEADER_SIZE, BatchHeader, read_header
from eventyard.storage.base import AppendResult, LogConfig, StorageError
from eventyard.storage.compaction import (
    CLEANED,
    SWAP_FILE,
    Swap,
    finish_swap,
    format_swap,
    parse_swap,
    swap_of,
)
from eventyard.storage.segment import OFFSET_ENTRY, TIME_ENTRY, Segment
from eventyard.storage.segmented import MAX_RELATIVE, NO_TIMESTAMP, SegmentedLog

_LOG_FILE = re.compile(r"(\d{20})\.log")
_HINT_FILE = re.compile(r"(\d{20})\.(?:index|timeindex)")
_LOG_START_FILE = "log-start-offset"
_CLEAN_OFFSET_FILE = "cleaner-offset"  # where compaction got to (the dirty ratio counts from it)


def _ordered(*columns: Sequence[int]) -> bool:
    return all(a < b for column in columns for a, b in itertools.pairwise(column))


def _columns(raw: bytes, entry: struct.Struct) -> tuple[list[int], list[int]] | None:
    """The two fields of each entry of an index file; None if it is not whole entries."""
    if len(raw) % entry.size:
        return None
    rows = list(entry.iter_unpack(raw))
    return [row[0] for row in rows], [row[1] for row in rows]


class RecoveredSegment(Segment):
    """A segment found on disk when its log opens. A closed one keeps its indexes if they check
    out (else they are rebuilt from the batch headers); the last one has every batch after its
    last index point verified (length, magic, CRC-32C) and is cut at the first bad one, which is
    where a process killed mid-write leaves a partial tail."""

    @classmethod
    def open(
        cls, directory: str, base_offset: int, interval_bytes: int, next_base: int | None
    ) -> RecoveredSegment:
        """Open an existing segment: the last one (next_base None) is verified batch by batch."""
        try:
            seg = cls(directory, base_offset, interval_bytes, create=False)
        except OSError as exc:
            raise StorageError(f"cannot open segment {base_offset} in {directory}: {exc}") from exc
        try:
            if next_base is None:
                seg._recover_tail()
            else:
                seg._load_closed(next_base)
        except OSError as exc:
            seg.close()
            raise StorageError(f"cannot recover {seg.path}: {exc}") from exc
        except BaseException:
            seg.close()
            raise
        return seg

    def _install_hints(self, file_size: int, max_rel: int) -> bool:
        """Load the index files if they look sane; False if either is missing or was ignored."""
        columns = _columns(self._index.load(), OFFSET_ENTRY)
        rels, positions = columns or ([], [])
        while positions and positions[-1] >= file_size:  # past a torn tail: the rest still holds
            rels.pop()
            positions.pop()
        if rels and rels[0] > 0 and rels[-1] <= max_rel and positions[0] > 0 and _ordered(rels, positions):
            self._idx_rel, self._idx_pos = array("i", rels), array("i", positions)
            self._last_index_pos = positions[-1]
            ok = True
        else:  # no entries is only believable for a segment too small to have any
            ok = columns is not None and not rels and file_size <= self._interval
        stamps, rels = _columns(self._timeindex.load(), TIME_ENTRY) or ([], [])
        if rels and rels[0] >= 0 and rels[-1] <= max_rel and _ordered(stamps, rels):
            self._ts, self._ts_rel = array("q", stamps), array("i", rels)
        else:
            ok = ok and not file_size
        return ok

    def _hint_bytes(self) -> tuple[bytes, bytes]:
        index = b"".join(OFFSET_ENTRY.pack(r, p) for r, p in zip(self._idx_rel, self._idx_pos, strict=True))
        times = b"".join(TIME_ENTRY.pack(t, r) for t, r in zip(self._ts, self._ts_rel, strict=True))
        return index, times

    def _load_closed(self, next_base: int) -> None:
        self.size = os.fstat(self._fd).st_size
        self.next_offset = next_base
        ok = self._install_hints(self.size, next_base - self.base_offset - 1)
        if ok and self.size and self._hints_check_out() and (self._idx_rel or self.size <= self._interval):
            self.max_timestamp = self._ts[-1]
            self.max_timestamp_offset = self.base_offset + self._ts_rel[-1]
            return
        # Missing or wrong: rebuild from the headers (a closed segment was complete when closed).
        for arr in (self._idx_rel, self._idx_pos, self._ts, self._ts_rel):
            del arr[:]
        self._last_index_pos = self._last_time_pos = 0
        for pos, header in self._walk(0):
            max_ts = header.max_timestamp if header.record_count else NO_TIMESTAMP
            self._track(pos, header.base_offset, max_ts, None, None)
        self._final_time_entry()
        index, times = self._hint_bytes()
        self._index.rewrite(index, keep_open=False)
        self._timeindex.rewrite(times, keep_open=False)

    def _hints_check_out(self) -> bool:
        """Spot-check the last entry of each index against the log."""
        if self._idx_rel:
            header = read_header(self._pread(HEADER_SIZE, self._idx_pos[-1]).ljust(HEADER_SIZE, b"\0"))
            if header.base_offset != self.base_offset + self._idx_rel[-1]:
                return False
        offset = self.base_offset + self._ts_rel[-1]
        pos = self._locate(offset)
        if pos + HEADER_SIZE > self.size:
            return False
        header = read_header(self._pread(HEADER_SIZE, pos))
        return header.base_offset == offset and header.max_timestamp == self._ts[-1]

    def _recover_tail(self) -> None:
        file_size = os.fstat(self._fd).st_size
        self._install_hints(file_size, MAX_RELATIVE)
        while not self._scan_tail(file_size):
            pass
        index, times = self._hint_bytes()
        self._index.rewrite(index, keep_open=True)
        self._timeindex.rewrite(times, keep_open=True)
        if self.size:
            self.created_ms = read_header(self._pread(HEADER_SIZE, 0)).max_timestamp

    def _scan_tail(self, file_size: int) -> bool:
        """Verify the batches after the last trustworthy index point and truncate at the first
        torn or corrupt one. Returns False when a hint proved wrong: it is dropped, scan again."""
        # Resume at the last time entry's batch: the max timestamp there is known exactly.
        anchor_rel = self._ts_rel[-1] if self._ts_rel else 0
        pending = bool(self._ts_rel)
        anchor, anchor_ts = self.base_offset + anchor_rel, (self._ts[-1] if self._ts else NO_TIMESTAMP)
        i = bisect_right(self._idx_rel, anchor_rel) - 1
        start = self._idx_pos[i] if i >= 0 else 0
        expected = self.base_offset + (self._idx_rel[i] if i >= 0 else 0)
        del self._idx_rel[i + 1 :]
        del self._idx_pos[i + 1 :]
        self._last_index_pos = start
        self.max_timestamp, self.max_timestamp_offset = NO_TIMESTAMP, -1
        last: int | None = None
        end = start
        for pos, header in self._walk(start, file_size, verify=True):
            if last is None and header.base_offset != expected:
                if i < 0:
                    break  # the first batch of the segment is garbage
                del self._idx_rel[i:]
                del self._idx_pos[i:]
                return False
            if last is not None and header.base_offset != last + 1:
                break  # the base offset is outside the CRC, and the active segment has no gaps
            max_ts = header.max_timestamp if header.record_count else NO_TIMESTAMP
            if pending:
                if header.base_offset > anchor or (header.base_offset < anchor and max_ts >= anchor_ts):
                    return self._drop_time_entry()
                self._track_index(pos, header.base_offset)
                if header.base_offset == anchor:
                    if max_ts != anchor_ts:
                        return self._drop_time_entry()
                    self.max_timestamp, self.max_timestamp_offset = anchor_ts, anchor
                    self._last_time_pos = pos
                    pending = False
            else:
                self._track(pos, header.base_offset, max_ts, None, None)
            last = header.last_offset
            end = pos + header.size
        if pending:  # the anchor was in the torn part: resume from the entry before it
            return self._drop_time_entry()
        if end < file_size:
            os.ftruncate(self._fd, end)
        self.size = end
        self.next_offset = last + 1 if last is not None else self.base_offset
        return True

    def _drop_time_entry(self) -> bool:
        del self._ts[-1]
        del self._ts_rel[-1]
        return False


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileLog(SegmentedLog[Segment]):
    """A partition log in `directory`, recovered (torn tail truncated) when opened."""

    def __init__(self, directory: str, config: LogConfig) -> None:
        super().__init__(config)
        self.directory = directory
        self._lock = threading.Lock()  # flush() runs off the event loop
        self._unflushed: dict[Segment, None] = {}
        self._dir_dirty = False
        try:
            os.makedirs(directory, exist_ok=True)
            self._recover()
        except OSError as exc:
            raise StorageError(f"cannot open log {directory}: {exc}") from exc

    def _new_segment(self, base_offset: int) -> Segment:
        segment = Segment.create(self.directory, base_offset, self.config.index_interval_bytes)
        self._dir_dirty = True
        return segment

    def _recover(self) -> None:
        swap = self._read_swap()
        if swap is not None:  # a compaction got past its commit point: finish it
            finish_swap(self.directory, swap)
            self._forget_swap()
        names = os.listdir(self.directory)
        bases = sorted(int(m.group(1)) for m in map(_LOG_FILE.fullmatch, names) if m)
        for name in names:
            hint = _HINT_FILE.fullmatch(name)
            if name.endswith((".tmp", CLEANED)) or (hint and int(hint.group(1)) not in bases):
                with contextlib.suppress(OSError):  # leftovers of an interrupted write or delete
                    os.unlink(os.path.join(self.directory, name))
        self._log_start = self._read_offset(_LOG_START_FILE)
        self._clean_offset = self._read_offset(_CLEAN_OFFSET_FILE)
        interval = self.config.index_interval_bytes
        try:
            for k, base in enumerate(bases):
                next_base = bases[k + 1] if k + 1 < len(bases) else None
                self._segments.append(RecoveredSegment.open(self.directory, base, interval, next_base))
            self._log_start = max(self._log_start, self._segments[0].base_offset if bases else 0)
            if not bases or self._log_start > self.log_end_offset:
                # Empty, or all that is left lies below a persisted DeleteRecords point.
                self._segments.append(self._new_segment(self._log_start))
            self._set_segments(self._segments)
            self._delete_segments_below(self._log_start)  # if a crash came before they were
        except BaseException:
            for seg in self._segments:
                seg.close()
            raise

    def _read_offset(self, name: str) -> int:
        try:
            with open(os.path.join(self.directory, name)) as f:
                return max(int(f.read().strip()), 0)
        except (OSError, ValueError):
            return 0

    def _write_file(self, name: str, data: bytes) -> None:
        """Replace a small file atomically and durably."""
        path = os.path.join(self.directory, name)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if os.write(fd, data) != len(data):
                raise OSError("short write")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(self.directory)

    def _persist_log_start(self, offset: int) -> None:
        try:
            self._write_file(_LOG_START_FILE, f"{offset}\n".encode())
        except OSError as exc:
            raise StorageError(f"cannot persist the log start offset of {self.directory}: {exc}") from exc

    # --- compaction hooks (see the module docstring) --------------------------------------

    def _cleaned_segment(self, base_offset: int) -> Segment:
        return Segment.create(self.directory, base_offset, self.config.index_interval_bytes, CLEANED)

    def _seal_cleaned(self, segment: Segment) -> None:
        segment.finalize(sync=True)

    def _sync_cleaned(self) -> None:
        try:  # the names of the cleaned files must be on disk before the record of them
            _fsync_dir(self.directory)
        except OSError as exc:
            raise StorageError(f"fsync of {self.directory} failed: {exc}") from exc

    def _before_compaction(self) -> None:
        self._forget_swap()  # a record left behind would replay over the new .cleaned files

    def _commit_swap(self, groups: Sequence[tuple[Sequence[Segment], Segment | None]]) -> None:
        swap = swap_of(groups)
        try:
            self._write_file(SWAP_FILE, format_swap(swap))
        except OSError as exc:
            try:
                self._forget_swap()
            except StorageError:
                self._go_offline()  # the record may be there or not: recovery decides
                raise
            raise StorageError(f"cannot record the compaction of {self.directory}: {exc}") from exc
        try:
            finish_swap(self.directory, swap)
        except OSError as exc:
            self._go_offline()
            raise StorageError(f"compaction of {self.directory} stopped halfway ({exc}): reopen it") from exc
        for _, new in groups:
            if new is not None:
                new.strip_suffix(CLEANED)

    def _after_swap(self) -> None:
        self._forget_swap()
        try:
            self._write_file(_CLEAN_OFFSET_FILE, f"{self._clean_offset}\n".encode())
        except OSError as exc:
            raise StorageError(f"cannot persist the clean offset of {self.directory}: {exc}") from exc

    def _read_swap(self) -> Swap | None:
        try:
            with open(os.path.join(self.directory, SWAP_FILE)) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        groups = parse_swap(text)
        if groups is None:  # written atomically: this is damage, not a torn write
            raise StorageError(f"{self.directory}/{SWAP_FILE} is unreadable")
        return groups

    def _forget_swap(self) -> None:
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, SWAP_FILE))
            _fsync_dir(self.directory)  # even if it was gone: an earlier unlink may not be durable
        except OSError as exc:
            raise StorageError(f"cannot remove the compaction record of {self.directory}: {exc}") from exc

    def _go_offline(self) -> None:
        # The files may be halfway between old and cleaned segments: only recovery sorts them out.
        self.closed = True
        for seg in self._segments:
            seg.close()

    def append(
        self,
        data: bytearray,
        batches: list[tuple[int, BatchHeader]],
        now_ms: int,
        log_append_time: bool = False,
    ) -> AppendResult:
        result = super().append(data, batches, now_ms, log_append_time)
        with self._lock:
            self._unflushed[self._segments[-1]] = None
        return result

    def flush(self) -> None:
        with self._lock:
            pending = list(self._unflushed)
            self._unflushed.clear()
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        try:
            for seg in pending:
                seg.fsync()
            if dir_dirty:
                _fsync_dir(self.directory)
        except (OSError, StorageError) as exc:
            with self._lock:  # still to do next time
                self._unflushed.update(dict.fromkeys(pending))
                self._dir_dirty = self._dir_dirty or dir_dirty
            if isinstance(exc, StorageError):
                raise
            raise StorageError(f"fsync of {self.directory} failed: {exc}") from exc

    def close(self) -> None:
        with self._segments_lock:  # not in the middle of a compaction's swap
            if self.closed:
                return
            self.closed = True
            try:
                self._segments[-1].finalize()
                self.flush()
            finally:
                for seg in self._segments:
                    seg.close()


class FileStorageEngine:
    """Partition logs under data_dir, one directory per topic-partition."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = os.fspath(data_dir)
        self._logs: dict[tuple[str, int], FileLog] = {}
        try:
            os.makedirs(self.data_dir, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.data_dir}: {exc}") from exc

    def log_dir(self, topic: str, partition: int) -> str:
        return os.path.join(self.data_dir, f"{topic}-{partition}")

    def open_log(self, topic: str, partition: int, config: LogConfig) -> FileLog:
        log = self._logs.get((topic, partition))
        if log is not None and not log.closed:
            log.config = config
            return log
        log = FileLog(self.log_dir(topic, partition), config)
        self._logs[(topic, partition)] = log
        return log

    def delete_log(self, topic: str, partition: int) -> None:
        log = self._logs.pop((topic, partition), None)
        if log is not None:
            with contextlib.suppress(StorageError):  # its files go anyway
                log.close()
        try:
            shutil.rmtree(self.log_dir(topic, partition))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot delete {self.log_dir(topic, partition)}: {exc}") from exc

    def close(self) -> None:
        error: StorageError | None = None
        for log in self._logs.values():
            try:
                log.close()
            except StorageError as exc:
                error = error or exc
        self._logs.clear()
        if error is not None:
            raise error


if TYPE_CHECKING:  # both must satisfy the protocols in base.py
    from eventyard.storage.base import PartitionLog, StorageEngine

    _log: type[PartitionLog] = FileLog
    _engine: type[StorageEngine] = FileStorageEngine
