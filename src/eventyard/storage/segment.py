"""One segment of a file log: `<base_offset:020d>.log` and its two sparse indexes.

`.index` holds (relative offset int32, file position int32) for the first batch past every
index_interval_bytes of log. `.timeindex` holds (max timestamp int64, relative offset int32) for a
batch that raised the segment's max timestamp, at most one per index interval, plus a final entry
for the exact maximum when the segment is closed. Every time entry (T, O) therefore means: batch O
has max timestamp T and every batch before it has less. Both indexes are kept in memory and
appended to disk as hints: recovery (file_log.RecoveredSegment) checks them and rebuilds them
from the log when they are missing or wrong.
"""

from __future__ import annotations

import contextlib
import os
import struct
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence

from eventyard.protocol.records import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC_V2,
    BatchHeader,
    crc_of,
    peek_size,
    read_header,
)
from eventyard.storage.base import StorageError
from eventyard.storage.segmented import NO_TIMESTAMP, BatchInfo

_MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD
OFFSET_ENTRY = struct.Struct(">ii")
TIME_ENTRY = struct.Struct(">qi")
_RECOVERY_CHUNK = 1024 * 1024


class _BadIndexEntry(Exception):
    """An offset index entry points somewhere else than at the batch it names."""


class HintFile:
    """An index file. It only speeds things up, so a failed write drops it instead of failing."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._size = 0

    def load(self) -> bytes:
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def open(self, truncate: bool) -> None:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | (os.O_TRUNC if truncate else 0)
        try:
            self._fd = os.open(self.path, flags, 0o644)
            self._size = os.fstat(self._fd).st_size
        except OSError:
            self.discard()

    def rewrite(self, data: bytes, keep_open: bool) -> None:
        """Replace the content atomically (tmp file + rename)."""
        self.close()
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)
        except OSError:
            self.discard()
        if keep_open:
            self.open(truncate=False)

    def append(self, data: bytes, exact: bool = False) -> None:
        """Append entries; on failure roll back, or with `exact` (an entry that must not be
        missing) drop the file so recovery rebuilds it."""
        if self._fd is None:
            return
        try:
            written = os.write(self._fd, data)
        except OSError:
            written = -1
        if written == len(data):
            self._size += written
            return
        if exact:
            self.discard()
            return
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            self.discard()

    def fsync(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):  # a hint: recovery copes without it
                os.fsync(self._fd)

    def discard(self) -> None:
        self.close()
        for path in (self.path, self.path + ".tmp"):
            with contextlib.suppress(OSError):
                os.unlink(path)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class Segment:
    """A log file opened O_APPEND, with its indexes. Only fsync() may run off the event loop."""

    def __init__(
        self, directory: str, base_offset: int, index_interval_bytes: int, *, create: bool, suffix: str = ""
    ) -> None:
        self.base_offset = base_offset
        self.next_offset = base_offset
        self.size = 0
        self.max_timestamp = NO_TIMESTAMP
        self.max_timestamp_offset = -1
        self.created_ms = 0
        self.broken = False  # a failed write could not be undone: refuse further appends
        self.closed = False
        self._interval = max(1, index_interval_bytes)
        self._walk_chunk = min(max(8192, 2 * self._interval), _RECOVERY_CHUNK)
        self._idx_rel = array("i")
        self._idx_pos = array("i")
        self._ts = array("q")
        self._ts_rel = array("i")
        self._last_index_pos = 0
        self._last_time_pos = 0
        # A suffix (compaction's ".cleaned") keeps the files out of the log until renamed.
        stem = os.path.join(directory, f"{base_offset:020d}")
        self.path = stem + ".log" + suffix
        self._index = HintFile(stem + ".index" + suffix)
        self._timeindex = HintFile(stem + ".timeindex" + suffix)
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | (os.O_TRUNC if create else 0)
        self._fd = os.open(self.path, flags, 0o644)

    @classmethod
    def create(cls, directory: str, base_offset: int, index_interval_bytes: int, suffix: str = "") -> Segment:
        try:
            seg = cls(directory, base_offset, index_interval_bytes, create=True, suffix=suffix)
        except OSError as exc:
            raise StorageError(f"cannot create segment {base_offset} in {directory}: {exc}") from exc
        seg._index.open(truncate=True)
        seg._timeindex.open(truncate=True)
        return seg

    # --- appending -------------------------------------------------------------------------

    def append(self, buf: bytes | memoryview, infos: Sequence[BatchInfo], now_ms: int) -> None:
        if self.broken:
            raise StorageError(f"{self.path}: an earlier failed write could not be undone")
        start = self.size
        try:
            written = os.write(self._fd, buf)
        except OSError as exc:
            self._undo(start)
            raise StorageError(f"write to {self.path} failed: {exc}") from exc
        if written != len(buf):
            self._undo(start)
            raise StorageError(f"short write to {self.path}: {written} of {len(buf)} bytes")
        if start == 0:
            self.created_ms = now_ms
        index_out = bytearray()
        time_out = bytearray()
        for info in infos:
            self._track(start + info.position, info.base_offset, info.max_timestamp, index_out, time_out)
        self.size = start + len(buf)
        self.next_offset = infos[-1].last_offset + 1
        if index_out:
            self._index.append(bytes(index_out))
        if time_out:
            self._timeindex.append(bytes(time_out))

    def _undo(self, size: int) -> None:
        # Never leave part of a batch behind: a later append would land after the garbage.
        try:
            os.ftruncate(self._fd, size)
        except OSError:
            self.broken = True

    def _track_index(self, pos: int, base_offset: int) -> bool:
        if pos - self._last_index_pos < self._interval:
            return False
        self._idx_rel.append(base_offset - self.base_offset)
        self._idx_pos.append(pos)
        self._last_index_pos = pos
        return True

    def _track(
        self, pos: int, base_offset: int, max_ts: int, index_out: bytearray | None, time_out: bytearray | None
    ) -> None:
        if self._track_index(pos, base_offset) and index_out is not None:
            index_out += OFFSET_ENTRY.pack(base_offset - self.base_offset, pos)
        if max_ts <= self.max_timestamp:
            return
        self.max_timestamp = max_ts
        self.max_timestamp_offset = base_offset
        if not self._ts or pos - self._last_time_pos >= self._interval:
            self._ts.append(max_ts)
            self._ts_rel.append(base_offset - self.base_offset)
            self._last_time_pos = pos
            if time_out is not None:
                time_out += TIME_ENTRY.pack(max_ts, base_offset - self.base_offset)

    def _final_time_entry(self) -> bytes:
        if self.max_timestamp == NO_TIMESTAMP or (self._ts and self._ts[-1] == self.max_timestamp):
            return b""
        rel = self.max_timestamp_offset - self.base_offset
        self._ts.append(self.max_timestamp)
        self._ts_rel.append(rel)
        return TIME_ENTRY.pack(self.max_timestamp, rel)

    def finalize(self, sync: bool = False) -> None:
        # The exact maximum goes on disk so a reopened closed segment knows it without a scan.
        entry = self._final_time_entry()
        if entry:
            self._timeindex.append(entry, exact=True)
        if sync:  # a cleaned copy: all of it must be on disk before it replaces anything
            self.fsync()
        self._index.close()
        self._timeindex.close()

    def strip_suffix(self, suffix: str) -> None:
        """The files were renamed, dropping the suffix given to create(): follow them."""
        for hint in (self._index, self._timeindex):
            hint.path = hint.path.removesuffix(suffix)
        self.path = self.path.removesuffix(suffix)

    def fsync(self) -> None:
        if self.closed:
            return
        try:
            os.fsync(self._fd)
            self._index.fsync()
            self._timeindex.fsync()
        except OSError as exc:
            if not self.closed:  # deleted by retention meanwhile: nothing left to sync
                raise StorageError(f"fsync of {self.path} failed: {exc}") from exc

    # --- reading ---------------------------------------------------------------------------

    def _pread(self, size: int, pos: int) -> bytes:
        try:
            return os.pread(self._fd, size, pos)
        except OSError as exc:
            raise StorageError(f"read from {self.path} failed: {exc}") from exc

    def _walk(
        self, pos: int, end: int | None = None, verify: bool = False
    ) -> Iterator[tuple[int, BatchHeader]]:
        """Headers of the batches from pos, read a chunk at a time. With verify (recovery), stop
        at the first batch that is torn or fails its magic or CRC-32C check."""
        end = self.size if end is None else end
        chunk = _RECOVERY_CHUNK if verify else self._walk_chunk
        while pos + HEADER_SIZE <= end:
            buf = self._pread(min(chunk, end - pos), pos)
            p = 0
            while p + HEADER_SIZE <= len(buf):
                header = read_header(buf, p)
                size = header.size
                if header.batch_length < _MIN_BATCH_LENGTH or pos + p + size > end:
                    return
                if p + size > len(buf) and p:
                    break  # the rest comes with the next chunk
                if verify:
                    if p + size <= len(buf):
                        crc = crc_of(buf, p, size)
                    else:  # one batch bigger than the chunk
                        crc = crc_of(self._pread(size, pos), 0, size)
                    if header.magic != MAGIC_V2 or crc != header.crc:
                        return
                yield pos + p, header
                p += size
            if p == 0:
                return
            pos += p

    def _walk_indexed(self, i: int, pos: int) -> Iterator[tuple[int, BatchHeader]]:
        """_walk from index entry i, or from pos if i < 0. Raises _BadIndexEntry if the entry
        does not name the batch at its position."""
        if i < 0:
            yield from self._walk(pos)
            return
        walk = self._walk(self._idx_pos[i])
        first = next(walk, None)
        if first is None or first[1].base_offset != self.base_offset + self._idx_rel[i]:
            raise _BadIndexEntry
        yield first
        yield from walk

    def _drop_index(self) -> None:
        # A wrong entry: forget the index (recovery rebuilds the file); reads scan meanwhile.
        del self._idx_rel[:]
        del self._idx_pos[:]
        self._index.discard()

    def _locate(self, offset: int) -> int:
        """Position of the batch holding offset (self.size if none): index, then a short walk."""
        i = bisect_right(self._idx_rel, offset - self.base_offset) - 1
        try:
            for pos, header in self._walk_indexed(i, 0):
                if header.base_offset + header.last_offset_delta >= offset:
                    return pos
        except _BadIndexEntry:
            self._drop_index()
            return self._locate(offset)
        return self.size

    def _batch_end(self, pos: int, limit: int) -> int:
        """End of the whole batches from pos (a batch start) that end by limit, walking from the
        last index entry before limit rather than over every batch."""
        j = bisect_right(self._idx_pos, limit) - 1
        if j >= 0 and self._idx_pos[j] <= pos:
            j = -1
        end = pos if j < 0 else self._idx_pos[j]
        try:
            for p, header in self._walk_indexed(j, pos):
                if p + header.size > limit:
                    break
                end = p + header.size
        except _BadIndexEntry:
            self._drop_index()
            return self._batch_end(pos, limit)
        return end

    def read(self, offset: int, max_bytes: int, min_one: bool) -> tuple[bytes, bool]:
        pos = self._locate(offset)
        size = self.size
        if pos >= size:
            return b"", True
        # Find where the whole batches end first, so the data is read once and never sliced.
        end = self._batch_end(pos, min(pos + max(max_bytes, 0), size))
        if end == pos:
            if not min_one:
                return b"", False
            end = pos + (peek_size(self._pread(LOG_OVERHEAD, pos), 0) or 0)
        return self._pread(end - pos, pos), end >= size

    def headers(self, from_offset: int) -> Iterator[BatchHeader]:
        for _, header in self._walk(self._locate(from_offset)):
            yield header

    def batch_at(self, offset: int) -> bytes:
        pos = self._locate(offset)
        size = peek_size(self._pread(LOG_OVERHEAD, pos), 0) or 0
        return self._pread(size, pos)

    def timestamp_floor(self, timestamp: int) -> int:
        # The last time entry below the target: every batch up to it is older.
        j = bisect_left(self._ts, timestamp) - 1
        return self.base_offset + (self._ts_rel[j] if j >= 0 else 0)

    # --- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._index.close()
        self._timeindex.close()
        os.close(self._fd)

    def delete(self) -> None:
        self.close()
        for path in (self.path, self._index.path, self._timeindex.path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageError(f"cannot delete {path}: {exc}") from exc
