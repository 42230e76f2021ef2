"""Log compaction (cleanup.policy=compact): keep the latest record of each key.

`compact` runs over any `SegmentedLog`, in four steps:

1. Plan (log lock held briefly). The cleanable segments are the closed ones, oldest first, up to
   the first holding a record younger than min_compaction_lag_ms. They are cleaned if `force`,
   or if the dirty ratio (bytes of cleanable segments never cleaned / all cleanable bytes)
   reaches min_cleanable_dirty_ratio.
2. Key map: key -> offset of its latest record, over the whole log up to the log end at planning
   time, active segment included, so a key updated there is dropped from the older segments.
3. Rewrite: the cleanable segments, in groups of at most segment_bytes, are copied into new
   segments off to the side of the log (for files, `.cleaned` files), record by record.
4. Swap (log lock held): if the cleanable segments are all still there, the copies replace them.

Steps 2 and 3 read a chunk at a time, holding the lock only for each read, so appends (which only
touch the active segment, never cleaned) and fetches go on. If retention or DeleteRecords
removes a cleanable segment meanwhile, the compaction gives up and leaves the log as it was.

What becomes of a batch (Kafka's rules for format v2):
- every record kept: the batch, byte for byte;
- some kept: the same header (base offset, last offset delta, base timestamp, attributes,
  producer id, epoch and base sequence: batches are never merged, so these always stay) over
  the kept records, whose bytes are copied unchanged (their deltas still hold), recompressed
  with the batch's codec; record count, max timestamp, length and CRC are recomputed. Offsets
  never change: batches get gaps, and a read at a removed offset returns the next batch;
- none kept: dropped, except the last batch of an idempotent producer, kept empty so that the
  producer state rebuilt from batch headers after a restart still has its last sequence;
- control and transactional batches: kept as they are, and transactional records stay out of
  the key map (without a transaction coordinator whether they committed is unknown);
- a batch failing its CRC or not decoding: kept as it is, out of the key map;
- wholly below the log start offset: dropped.
Records without a key are kept. A tombstone (value None) goes once delete_retention_ms has passed
since its timestamp (Kafka counts from when its segment was first cleaned: a simplification). A
group left with nothing is dropped, except the first, whose base offset is where the log starts.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Generic

# The batch layout, codecs and varint reader are private to records.py; compaction is their one
# other user (its docstring says so), and copying them here would make two of each.
from eventyard.protocol.records import (
    COMPRESSION_MASK,
    CONTROL,
    HEADER_SIZE,
    HEADER_STRUCT,
    LOG_OVERHEAD,
    MAGIC_V2,
    TIMESTAMP_TYPE_LOG_APPEND,
    TRANSACTIONAL,
    BatchHeader,
    compress,
    crc_of,
    decompress,
    iter_batches,
    read_header,
    read_varint,
)
from eventyard.storage.base import CompactionConfig, CompactionStats, StorageError
from eventyard.storage.segmented import MAX_RELATIVE, NO_TIMESTAMP, BatchInfo, S, SegmentedLog, SegmentLike

_CHUNK = 1 << 20  # bytes read per hold of the log's lock, and written per append to a copy

# A record found in a payload: (start, end, key, is a tombstone, timestamp delta, offset delta).
_Record = tuple[int, int, bytes | None, bool, int, int]


class _Aborted(Exception):
    """The log changed under the cleaner (a segment was deleted, the log closed)."""


@dataclass(slots=True)
class _Plan(Generic[S]):
    cleanable: list[S]  # closed segments to rewrite, from the first of the log
    rest: list[S]  # the segments after them, to the active one: read for the key map
    scan_end: int  # the log end offset when planned
    log_start: int


def compact(log: SegmentedLog[S], config: CompactionConfig, now_ms: int) -> CompactionStats:
    started = time.perf_counter()
    with log._cleaner_lock:
        log._before_compaction()
        plan = _plan(log, config, now_ms)
        if plan is None:
            return CompactionStats(elapsed=time.perf_counter() - started)
        cleaner = _Cleaner(log, plan, now_ms - config.delete_retention_ms)
        try:
            cleaner.build_key_map()
            groups = cleaner.rewrite()
        except _Aborted:
            return CompactionStats(elapsed=time.perf_counter() - started)
        new = [seg for _, seg in groups if seg is not None]
        if not _swap(log, plan, groups, new):
            return CompactionStats(elapsed=time.perf_counter() - started)
        log._after_swap()
    return CompactionStats(
        records_read=cleaner.records_read,
        records_kept=cleaner.records_kept,
        bytes_before=sum(seg.size for seg in plan.cleanable),
        bytes_after=sum(seg.size for seg in new),
        segments_cleaned=len(plan.cleanable),
        elapsed=time.perf_counter() - started,
    )


def _plan(log: SegmentedLog[S], config: CompactionConfig, now_ms: int) -> _Plan[S] | None:
    with log._segments_lock:
        log._check_open()
        segments = list(log._segments)
        scan_end, log_start, clean_offset = log.log_end_offset, log.log_start_offset, log._clean_offset
    count = 0
    for seg in segments[:-1]:  # closed segments hold still: no lock needed to look at them
        if config.min_compaction_lag_ms > 0 and now_ms - seg.max_timestamp < config.min_compaction_lag_ms:
            break
        count += 1
    cleanable = segments[:count]
    total = sum(seg.size for seg in cleanable)
    dirty = sum(seg.size for seg in cleanable if seg.base_offset >= clean_offset)
    if not cleanable or not (config.force or (dirty and dirty >= config.min_cleanable_dirty_ratio * total)):
        return None
    return _Plan(cleanable, segments[count:], scan_end, log_start)


def _swap(log: SegmentedLog[S], plan: _Plan[S], groups: list[tuple[list[S], S | None]], new: list[S]) -> bool:
    with log._segments_lock:
        if all(log._holds(seg) for seg in plan.cleanable):
            try:
                log._commit_swap(groups)
            except BaseException:
                _drop(log, new, delete=not log.closed)  # offline: recovery decides what stays
                raise
            log._replace_run(plan.cleanable, new)
            swapped = True
        else:
            swapped = False
    # Out of the lock: closing the last descriptor of an unlinked file frees its blocks (slow).
    _drop(log, plan.cleanable if swapped else new, delete=not swapped)
    return swapped


def _drop(log: SegmentedLog[S], segments: Sequence[S], delete: bool) -> None:
    for seg in segments:
        if delete:
            log._discard_cleaned(seg)
        else:
            seg.close()


class _Cleaner(Generic[S]):
    def __init__(self, log: SegmentedLog[S], plan: _Plan[S], horizon: int) -> None:
        self.log = log
        self.plan = plan
        self.horizon = horizon  # tombstones stamped at or before it go
        self.latest: dict[bytes, int] = {}  # key -> offset of its latest record
        self.last_batch: dict[int, int] = {}  # idempotent producer id -> base offset of its last batch
        self.records_read = 0
        self.records_kept = 0

    def _batches(self, seg: S, end: int | None) -> Iterator[tuple[bytes, BatchHeader]]:
        """The batches of seg (up to offset end), read a chunk per hold of the log's lock."""
        offset = seg.base_offset
        while end is None or offset < end:
            with self.log._segments_lock:
                if not self.log._holds(seg):
                    raise _Aborted
                data, at_end = seg.read(offset, _CHUNK, True)
            if not data:
                return
            start = offset
            for pos, header in iter_batches(data):
                if end is not None and header.base_offset >= end:
                    return
                yield data[pos : pos + header.size], header
                offset = header.last_offset + 1
            if offset == start:  # not even one whole batch: never skip what cannot be read
                raise StorageError(f"compaction cannot read the batch at offset {offset}")
            if at_end:
                return

    def build_key_map(self) -> None:
        latest, last_batch = self.latest, self.last_batch
        for seg in (*self.plan.cleanable, *self.plan.rest):
            for batch, header in self._batches(seg, self.plan.scan_end):
                if header.producer_id >= 0 and header.base_sequence >= 0:
                    last_batch[header.producer_id] = header.base_offset
                if header.attributes & (CONTROL | TRANSACTIONAL):
                    continue
                payload = _payload(batch, header)
                records = None if payload is None else _scan(payload, header.record_count)
                base = header.base_offset
                for _, _, key, _, _, delta in records or ():
                    if key is not None:
                        latest[key] = base + delta

    def rewrite(self) -> list[tuple[list[S], S | None]]:
        """Copy the cleanable segments, a group per new segment; None for a group left empty."""
        log = self.log
        groups: list[tuple[list[S], S | None]] = []
        limit = min(log.config.segment_bytes, MAX_RELATIVE)
        try:
            for sources in _groups(self.plan.cleanable, limit):
                copy = log._cleaned_segment(sources[0].base_offset)
                groups.append((sources, copy))
                self._write(sources, copy)
                if copy.size or len(groups) == 1:  # the first stays: it holds the log start
                    log._seal_cleaned(copy)
                else:
                    log._discard_cleaned(copy)
                    groups[-1] = (sources, None)
            log._sync_cleaned()
        except BaseException:
            _drop(log, [seg for _, seg in groups if seg is not None], delete=True)
            raise
        return groups

    def _write(self, sources: list[S], copy: S) -> None:
        created = copy.created_ms = sources[0].created_ms
        out = bytearray()
        infos: list[BatchInfo] = []
        for src in sources:
            for batch, header in self._batches(src, None):
                self.records_read += header.record_count
                cleaned = self._clean(batch, header)
                if cleaned is None:
                    continue
                kept = header if cleaned is batch else read_header(cleaned)
                self.records_kept += kept.record_count
                max_ts = kept.max_timestamp if kept.record_count else NO_TIMESTAMP
                infos.append(BatchInfo(len(out), len(cleaned), kept.base_offset, kept.last_offset, max_ts))
                out += cleaned
                if len(out) >= _CHUNK:
                    copy.append(bytes(out), infos, created)
                    out, infos = bytearray(), []
        if infos:
            copy.append(bytes(out), infos, created)

    def _clean(self, batch: bytes, header: BatchHeader) -> bytes | None:
        """The batch with only the records to keep: itself if all stay, None if it goes."""
        if header.last_offset < self.plan.log_start:
            return None
        if header.attributes & (CONTROL | TRANSACTIONAL):
            return batch
        if not header.record_count:  # kept empty earlier for its producer: until it has another
            return batch if self._producer_ends_at(header) else None
        payload = _payload(batch, header)
        records = None if payload is None else _scan(payload, header.record_count)
        if payload is None or records is None:
            return batch
        latest, base, base_ts, horizon = self.latest, header.base_offset, header.base_timestamp, self.horizon
        stamped = header.max_timestamp if header.attributes & TIMESTAMP_TYPE_LOG_APPEND else None
        kept: list[_Record] = []
        for record in records:
            _, _, key, tombstone, ts_delta, offset_delta = record
            if key is not None:
                if latest.get(key) != base + offset_delta:
                    continue  # a later record has the key
                if tombstone and (base_ts + ts_delta if stamped is None else stamped) <= horizon:
                    continue  # past delete_retention_ms
            kept.append(record)
        if len(kept) == len(records):
            return batch
        if kept:
            body = compress(header.compression, b"".join(payload[start:end] for start, end, *_ in kept))
            max_ts = base_ts + max(r[4] for r in kept) if stamped is None else stamped
            return _batch(header, body, len(kept), max_ts, header.attributes)
        if self._producer_ends_at(header):
            return _batch(header, b"", 0, header.max_timestamp, header.attributes & ~COMPRESSION_MASK)
        return None

    def _producer_ends_at(self, header: BatchHeader) -> bool:
        return header.base_sequence >= 0 and self.last_batch.get(header.producer_id) == header.base_offset


def _groups(segments: list[S], limit: int) -> Iterator[list[S]]:
    """Consecutive segments whose copy fits one segment: at most limit bytes before cleaning,
    offsets within int32 of the first."""
    group: list[S] = []
    size = 0
    for seg in segments:
        if group and (size + seg.size > limit or seg.next_offset - 1 - group[0].base_offset > MAX_RELATIVE):
            yield group
            group, size = [], 0
        group.append(seg)
        size += seg.size
    if group:
        yield group


def _payload(batch: bytes, header: BatchHeader) -> bytes | None:
    """The decompressed records of a batch; None if it fails its CRC or does not decompress."""
    if header.magic != MAGIC_V2 or crc_of(batch, 0, header.size) != header.crc:
        return None
    try:
        return decompress(header.compression, batch[HEADER_SIZE:])
    except Exception:  # whatever the codec raises: the batch is kept as it is
        return None


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    # Nearly all are one or two bytes (deltas, key and record lengths): skip the general loop.
    b = buf[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    c = buf[pos + 1]
    if c < 0x80:
        v = (b & 0x7F) | (c << 7)
        return (v >> 1) ^ -(v & 1), pos + 2
    return read_varint(buf, pos)


def _scan(payload: bytes, count: int) -> list[_Record] | None:
    """Where each record is and what compaction needs of it, without decoding values and headers;
    None if the payload does not hold count whole records."""
    out: list[_Record] = []
    pos = 0
    try:
        for _ in range(count):
            length, p = _varint(payload, pos)
            end = p + length
            ts_delta, p = _varint(payload, p + 1)  # after the attributes byte
            offset_delta, p = _varint(payload, p)
            key_length, p = _varint(payload, p)
            key = payload[p : p + key_length] if key_length >= 0 else None
            value_length, _ = _varint(payload, p + max(key_length, 0))
            if length <= 0 or end > len(payload) or p + max(key_length, 0) >= end:
                return None
            out.append((pos, end, key, value_length < 0, ts_delta, offset_delta))
            pos = end
    except (IndexError, ValueError):
        return None
    return out


def _batch(header: BatchHeader, body: bytes, count: int, max_ts: int, attributes: int) -> bytes:
    """header's batch over new record bytes, with its length, count and CRC recomputed."""
    out = bytearray(
        HEADER_STRUCT.pack(
            header.base_offset,
            HEADER_SIZE - LOG_OVERHEAD + len(body),
            header.partition_leader_epoch,
            header.magic,
            0,
            attributes,
            header.last_offset_delta,
            header.base_timestamp,
            max_ts,
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            count,
        )
    )
    out += body
    struct.pack_into(">I", out, 17, crc_of(out, 0, len(out)))
    return bytes(out)


# --- the swap on disk, for FileLog (see file_log.py's docstring) -----------------------------

CLEANED = ".cleaned"  # suffix of the cleaned copies until they replace the old segments
SWAP_FILE = "cleaner-swap"  # the recorded swap: a line per group, "<has a copy> <old base offsets>"


Swap = list[tuple[bool, list[int]]]  # for each group: whether it has a copy, its old base offsets


def swap_of(groups: Sequence[tuple[Sequence[SegmentLike], SegmentLike | None]]) -> Swap:
    return [(new is not None, [seg.base_offset for seg in old]) for old, new in groups]


def format_swap(swap: Swap) -> bytes:
    return "".join(f"{int(has_copy)} {' '.join(map(str, bases))}\n" for has_copy, bases in swap).encode()


def parse_swap(text: str) -> Swap | None:
    try:
        groups = [(line[0] == "1", [int(base) for base in line[2:].split()]) for line in text.splitlines()]
    except (ValueError, IndexError):
        return None
    return groups if groups and all(bases for _, bases in groups) else None


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def finish_swap(directory: str, swap: Swap) -> None:
    """Carry out a recorded swap: delete each group's old segments and rename its cleaned copy
    (named after the first of them) into place. Idempotent: recovery redoes it after a crash."""

    def path(base: int, ext: str) -> str:
        return os.path.join(directory, f"{base:020d}.{ext}")

    for has_copy, bases in swap:
        for base in bases[1:] if has_copy else bases:
            for ext in ("log", "index", "timeindex"):
                _unlink(path(base, ext))
        if not has_copy:
            continue
        first = bases[0]
        if os.path.exists(path(first, "log") + CLEANED):
            _unlink(path(first, "index"))  # the old segment's, wrong for the copy
            _unlink(path(first, "timeindex"))
            os.replace(path(first, "log") + CLEANED, path(first, "log"))
        for ext in ("index", "timeindex"):
            if os.path.exists(path(first, ext) + CLEANED):
                os.replace(path(first, ext) + CLEANED, path(first, ext))
