"""Partition logs in a data directory: `<data_dir>/<topic>-<partition>/`, one file per segment.

`FileLog` is the shared `SegmentedLog` logic (segmented.py) over file `Segment`s, plus what only
files need: opening a directory (leftovers removed, each segment recovered by `RecoveredSegment`
in segment_recovery.py), the persisted log start and clean offsets, the compaction hooks, and
fsync. `FileStorageEngine` keeps one `FileLog` per topic-partition.

Compaction writes its cleaned segments as `<base>.log.cleaned` (and indexes) beside the log and
fsyncs them; then, holding the log's lock, it records the swap in `cleaner-swap` (the commit
point) and renames them over the old segments (compaction.finish_swap). A crash before the
record leaves the old segments (recovery deletes the `.cleaned` files); after it, recovery
redoes the renames: the log is always either the old segments or the cleaned ones.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from eventyard.protocol.records import BatchHeader
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
from eventyard.storage.segment import Segment
from eventyard.storage.segment_recovery import RecoveredSegment
from eventyard.storage.segmented import SegmentedLog

# RecoveredSegment is re-exported: it was defined here before recovery got its own module.
__all__ = ["FileLog", "FileStorageEngine", "RecoveredSegment"]

_LOG_FILE = re.compile(r"(\d{20})\.log")
_HINT_FILE = re.compile(r"(\d{20})\.(?:index|timeindex)")
_LOG_START_FILE = "log-start-offset"
_CLEAN_OFFSET_FILE = "cleaner-offset"  # where compaction got to (the dirty ratio counts from it)


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
        data: bytearray | memoryview,
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
