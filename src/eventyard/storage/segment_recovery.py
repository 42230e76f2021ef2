"""Recovery of a file segment when its log opens (see file_log.py for the log around it).

`RecoveredSegment` is a `Segment` (segment.py) found on disk. A closed segment keeps the index
files appended as hints if they check out, else they are rebuilt from the batch headers. The
last segment, the one a crash may have cut mid-write, has every batch after its last
trustworthy index point verified (length, magic, CRC-32C) and is truncated at the first torn or
corrupt one.
"""

from __future__ import annotations

import itertools
import os
import struct
from array import array
from bisect import bisect_right
from collections.abc import Sequence

from eventyard.protocol.records import HEADER_SIZE, read_header
from eventyard.storage.base import StorageError
from eventyard.storage.segment import OFFSET_ENTRY, TIME_ENTRY, Segment
from eventyard.storage.segmented import MAX_RELATIVE, NO_TIMESTAMP

__all__ = ["RecoveredSegment"]


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
