"""Log compaction: one conformance class for both engines, then crashes of the file engine."""

from __future__ import annotations

import errno
import functools
import os
import random
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from eventyard.coordinator.producers import ProducerStates
from eventyard.protocol.records import (
    CONTROL,
    HEADER_SIZE,
    TRANSACTIONAL,
    BatchHeader,
    Record,
    build_batch,
    crc_of,
    decode_records,
    iter_batches,
    read_header,
    split_batches,
)
from eventyard.storage import compaction, file_log
from eventyard.storage.base import (
    AppendResult,
    CompactionConfig,
    CompactionStats,
    LogConfig,
    PartitionLog,
    StorageEngine,
    StorageError,
)
from eventyard.storage.file_log import FileLog, FileStorageEngine
from eventyard.storage.memory_log import MemoryLog, MemoryStorageEngine

NOW = 1_700_000_000_000
HOUR = 3600 * 1000
RETENTION = 24 * HOUR  # delete_retention_ms's default
CONFIG = LogConfig(segment_bytes=1500, index_interval_bytes=128)
REPO = Path(__file__).resolve().parents[2]

KV = tuple[bytes | None, bytes | None]


class Rec(NamedTuple):
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


class History:
    """What was written to a log, to say what compaction must leave of it."""

    def __init__(self, log: PartitionLog) -> None:
        self.log = log
        self.records: list[Rec] = []
        self.headers: dict[int, BatchHeader] = {}  # by base offset, as appended
        self.batches: dict[int, bytes] = {}

    def write(self, records: Sequence[KV], ts: int, codec: int = 0, **batch: Any) -> AppendResult:
        built = build_batch(
            [Record(k, v, timestamp=ts + i) for i, (k, v) in enumerate(records)],
            base_timestamp=ts,
            compression=codec,
            **batch,
        )
        data = bytearray(built)
        result = self.log.append(data, split_batches(built), ts)
        self.records += [Rec(result.base_offset + i, k, v, ts + i) for i, (k, v) in enumerate(records)]
        self.headers[result.base_offset] = read_header(data)
        self.batches[result.base_offset] = bytes(data)
        return result

    def expected(self, cleaned_below: int, now: int, known: int | None = None) -> list[Rec]:
        """The records a compaction at now leaves, having cleaned below offset cleaned_below and
        seen the first `known` records in its key map."""
        latest = {r.key: r.offset for r in self.records[:known] if r.key is not None}
        return [
            r
            for r in self.records
            if r.offset >= cleaned_below
            or r.key is None
            or (latest[r.key] == r.offset and not (r.value is None and r.timestamp + RETENTION <= now))
        ]


def random_history(history: History, rng: random.Random, batches: int, keys: int, ts: int) -> int:
    """Updates of keys (10% tombstones, a few records without a key), every codec in turn; the
    timestamps rise record by record. Returns the next timestamp."""
    for i in range(batches):
        records: list[KV] = []
        for _ in range(rng.randrange(1, 7)):
            if rng.random() < 0.02:
                records.append((None, b"keyless %d" % i))
                continue
            key = b"key-%03d" % rng.randrange(keys)
            records.append((key, None if rng.random() < 0.1 else b"value %d " % i * rng.randrange(1, 6)))
        history.write(records, ts, codec=i % 5)
        ts += len(records)
    return ts


def roll(log: PartitionLog) -> int:
    """Close the active segment; return the base offset of the new one."""
    assert log.roll_if_due(LogConfig(segment_ms=0), 1 << 62)
    return log.log_end_offset


def scan(
    log: PartitionLog, offset: int | None = None, max_bytes: int = 3000
) -> tuple[list[Rec], list[BatchHeader]]:
    """Fetch like a consumer from offset to the log end, checking every batch; the records at or
    after offset, and the headers of the batches fetched."""
    offset = log.log_start_offset if offset is None else offset
    records: list[Rec] = []
    headers: list[BatchHeader] = []
    while offset < log.log_end_offset:
        data = log.read(offset, max_bytes)
        if not data:
            break  # only past the last batch: compaction emptied the end of the closed segments
        end = 0
        for pos, header in iter_batches(data):
            assert header.magic == 2 and crc_of(data, pos, header.size) == header.crc
            assert header.last_offset >= offset
            decoded = decode_records(data, pos)
            assert len(decoded) == header.record_count
            assert all(header.base_offset <= r.offset <= header.last_offset for r in decoded)
            if not header.attributes & CONTROL:  # markers are not for consumers
                records += [Rec(r.offset, r.key, r.value, r.timestamp) for r in decoded if r.offset >= offset]
            headers.append(header)
            offset = header.last_offset + 1
            end = pos + header.size
        assert end == len(data), "whole batches only"
    offsets = [r.offset for r in records]
    assert offsets == sorted(set(offsets))
    return records, headers


def snapshot(log: PartitionLog) -> tuple[object, ...]:
    """Everything observable about a log, to compare before and after a restart."""
    stamps = [log.offset_for_timestamp(NOW + t) for t in range(-5, 3000, 37)]
    return (
        log.log_start_offset,
        log.log_end_offset,
        log.size_bytes,
        log.segment_count,
        log.read(log.log_start_offset, 1 << 30),
        stamps,
        log.max_timestamp(),
        list(log.batch_headers(0)),
    )


def control_batch(producer_id: int) -> bytes:
    """A transaction marker (COMMIT), as a transaction coordinator would write it."""
    marker = Record(struct.pack(">hh", 0, 1), struct.pack(">hi", 0, 0), timestamp=NOW)
    out = bytearray(build_batch([marker], producer_id=producer_id, producer_epoch=0, transactional=True))
    struct.pack_into(">h", out, 21, struct.unpack_from(">h", out, 21)[0] | CONTROL)
    struct.pack_into(">I", out, 17, crc_of(out, 0, len(out)))
    return bytes(out)


def compact(log: PartitionLog, now: int = NOW + HOUR, **config: Any) -> CompactionStats:
    return log.compact(CompactionConfig(**config), now)


class CompactionConformance:
    """The cases; a subclass provides the `engine` fixture."""

    @pytest.fixture
    def engine(self) -> Iterator[StorageEngine]:
        raise NotImplementedError

    def open(self, engine: StorageEngine, config: LogConfig = CONFIG) -> PartitionLog:
        return engine.open_log("compacted", 0, config)

    def test_keeps_the_latest_record_of_each_key(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        history = History(log)
        ts = random_history(history, random.Random(1), batches=400, keys=30, ts=NOW)
        active = roll(log)
        closed = log.segment_count - 1
        # The active segment updates some keys (and deletes one): older segments lose them.
        history.write([(b"key-001", b"new"), (b"key-002", None), (b"key-003", b"new")], ts, codec=3)
        history.write([(b"key-004", b"newer")], ts + 3)
        active_bytes = log.read(active, 1 << 20)
        start, end, size = log.log_start_offset, log.log_end_offset, log.size_bytes

        stats = compact(log)

        expected = history.expected(active, NOW + HOUR)
        records, headers = scan(log)
        assert records == expected
        assert (log.log_start_offset, log.log_end_offset) == (start, end)
        assert log.read(active, 1 << 20) == active_bytes  # the active segment as it was
        assert any(r.value is None for r in records if r.offset < active)  # tombstones not yet due
        assert {r.key for r in records} == {r.key for r in history.records}  # no key lost
        for header in headers:  # batches keep their header fields and codec
            original = history.headers[header.base_offset]
            assert header.last_offset == original.last_offset
            assert header.compression == original.compression
            assert (header.producer_id, header.base_sequence) == (
                original.producer_id,
                original.base_sequence,
            )
            assert 0 < header.record_count <= original.record_count
        assert {h.compression for h in headers} == {0, 1, 2, 3, 4}
        assert list(log.batch_headers(0)) == headers
        cleaned = sum(1 for r in history.records if r.offset < active)
        assert stats.segments_cleaned == closed
        assert stats.records_read == cleaned
        assert stats.records_kept == sum(1 for r in expected if r.offset < active)
        assert stats.bytes_before - stats.bytes_after == size - log.size_bytes > 0

        # Fetching from any offset, removed ones included, gives what is left from there on.
        for offset in range(start, end, 7):
            assert scan(log, offset, max_bytes=1)[0] == [r for r in expected if r.offset >= offset]
        # Timestamps rise with offsets: a lookup finds the first record left at or after it.
        for r in history.records[::5]:
            after = [(e.offset, e.timestamp) for e in expected if e.timestamp >= r.timestamp]
            assert log.offset_for_timestamp(r.timestamp) == after[0]
        last = history.records[-1]
        assert log.max_timestamp() == (last.offset, last.timestamp)

        # Past delete_retention_ms the tombstones in cleaned segments go too.
        later = max(r.timestamp for r in history.records) + RETENTION
        compact(log, later, force=True)
        records, _ = scan(log)
        assert records == history.expected(active, later)
        assert all(r.value is not None for r in records if r.offset < active)
        assert (b"key-002", None) in [(r.key, r.value) for r in records]  # in the active segment

    def test_tombstones_outlive_delete_retention(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        history = History(log)
        history.write([(b"a", b"1"), (b"b", b"1")], NOW)
        history.write([(b"a", None)], NOW + 10, codec=1)
        data = bytearray(build_batch([Record(b"b", None, timestamp=NOW - 50 * RETENTION)]))
        log.append(data, split_batches(bytes(data)), NOW + 20, log_append_time=True)  # stamped NOW + 20
        history.write([(b"c", b"1")], NOW + 30)
        roll(log)
        compact(log, NOW + 10 + RETENTION - 1, delete_retention_ms=RETENTION)
        assert [(r.key, r.value) for r in scan(log)[0]] == [(b"a", None), (b"b", None), (b"c", b"1")]
        compact(log, NOW + 10 + RETENTION, delete_retention_ms=RETENTION, force=True)
        assert [(r.key, r.value) for r in scan(log)[0]] == [(b"b", None), (b"c", b"1")]
        compact(log, NOW + 20 + RETENTION, delete_retention_ms=RETENTION, force=True)
        assert [(r.key, r.value) for r in scan(log)[0]] == [(b"c", b"1")]
        assert (log.log_start_offset, log.log_end_offset) == (0, 5)

    def test_min_compaction_lag(self, engine: StorageEngine) -> None:
        log = self.open(engine, LogConfig(index_interval_bytes=128))
        history = History(log)
        rng = random.Random(2)
        random_history(history, rng, batches=30, keys=5, ts=NOW - 3 * HOUR)
        old_end = roll(log)
        random_history(history, rng, batches=30, keys=5, ts=NOW - HOUR // 2)
        active = roll(log)
        history.write([(b"key-000", b"latest")], NOW)

        stats = compact(log, NOW, min_compaction_lag_ms=HOUR)
        assert stats.segments_cleaned == 1  # the recent segment waits
        records, _ = scan(log)
        latest = history.expected(active, NOW)
        assert records == [r for r in history.records if r.offset >= old_end or r in latest]
        assert compact(log, NOW + HOUR // 4, min_compaction_lag_ms=HOUR, force=True).segments_cleaned == 1
        assert compact(log, NOW + HOUR, min_compaction_lag_ms=HOUR).segments_cleaned == 2
        assert scan(log)[0] == history.expected(active, NOW + HOUR)

    def test_dirty_ratio(self, engine: StorageEngine) -> None:
        log = self.open(engine, LogConfig(index_interval_bytes=128))
        history = History(log)
        history.write([(b"key-%03d" % i, b"first value %d" % i) for i in range(200)], NOW)
        roll(log)
        assert compact(log).segments_cleaned == 1  # all of it dirty
        idle = compact(log)  # nothing new
        assert idle == CompactionStats(elapsed=idle.elapsed)
        for i in range(5):
            history.write([(b"key-%03d" % i, b"second")], NOW + 1000 + i)
        active = roll(log)
        before = snapshot(log)
        assert compact(log).segments_cleaned == 0  # 5 new records against 200 clean ones
        assert snapshot(log) == before
        assert compact(log, min_cleanable_dirty_ratio=0.01).segments_cleaned == 2
        assert scan(log)[0] == history.expected(active, NOW + HOUR)
        assert log.segment_count == 2  # the two cleaned segments were merged
        history.write([(b"key-100", b"third")], NOW + 2000)
        active = roll(log)
        assert compact(log).segments_cleaned == 0
        assert compact(log, force=True).segments_cleaned == 2
        assert scan(log)[0] == history.expected(active, NOW + HOUR)

    def test_nothing_to_clean(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        assert compact(log, force=True).segments_cleaned == 0  # empty
        History(log).write([(b"a", b"1"), (b"a", b"2")], NOW)
        assert compact(log, force=True).segments_cleaned == 0  # the active segment is never cleaned
        assert [r.value for r in scan(log)[0]] == [b"1", b"2"]

    def test_emptied_segments(self, engine: StorageEngine) -> None:
        log = self.open(engine, LogConfig(segment_bytes=400, index_interval_bytes=64))
        history = History(log)
        for i in range(40):
            history.write([(b"same", b"value %d" % i), (b"other", b"x" * 40)], NOW + i, codec=i % 2)
        active = roll(log)
        segments = log.segment_count
        history.write([(b"same", b"last")], NOW + 100)
        compact(log)
        assert log.segment_count < segments
        assert log.log_start_offset == 0  # the first segment stays, empty, and holds the start
        assert log.read(0, 1000) == log.read(active - 1, 1000)
        records, _ = scan(log)
        assert records == history.expected(active, NOW + HOUR)
        assert [r.key for r in records] == [b"other", b"same"]
        assert scan(log, 1)[0] == records  # from a removed offset: the next batch left
        assert log.offset_for_timestamp(NOW) == (records[0].offset, records[0].timestamp)
        assert log.apply_retention(LogConfig(retention_ms=HOUR), NOW + 2 * HOUR) >= 1
        assert scan(log)[0] == [r for r in records if r.offset >= log.log_start_offset]

    def test_log_start_inside_a_segment(self, engine: StorageEngine) -> None:
        log = self.open(engine, LogConfig(index_interval_bytes=64))
        history = History(log)
        for i in range(20):
            history.write([(b"k%d" % (i % 7), b"v%d" % i)], NOW + i)
        assert log.delete_records_before(9) == 9
        active = roll(log)
        compact(log)
        assert (log.log_start_offset, log.log_end_offset) == (9, 20)
        assert scan(log)[0] == [r for r in history.expected(active, NOW + HOUR) if r.offset >= 9]
        assert [h.base_offset for h in log.batch_headers(0)] == [13, 14, 15, 16, 17, 18, 19]

    def test_keyless_control_and_transactional_batches_stay(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        history = History(log)
        history.write([(b"k", b"plain"), (None, b"no key"), (b"t", b"plain")], NOW)
        txn = history.write(
            [(b"k", b"in a transaction"), (b"t", b"t2")],
            NOW + 10,
            2,
            transactional=True,
            producer_id=5,
            producer_epoch=0,
            base_sequence=0,
        )
        marker = bytearray(control_batch(5))
        log.append(marker, split_batches(bytes(marker)), NOW + 20)
        history.write([(b"t", b"after")], NOW + 30)
        before = log.read(txn.base_offset, 1 << 20)
        roll(log)
        compact(log)
        records, headers = scan(log)
        # Whether the transaction committed is unknown: its records hide nothing.
        assert [(r.key, r.value) for r in records] == [
            (b"k", b"plain"),
            (None, b"no key"),
            (b"k", b"in a transaction"),
            (b"t", b"t2"),
            (b"t", b"after"),
        ]
        assert log.read(txn.base_offset, 1 << 20) == before  # both batches byte for byte
        assert [bool(h.attributes & CONTROL) for h in headers] == [False, False, True, False]
        assert headers[1].attributes & TRANSACTIONAL

    def test_a_batch_that_does_not_decode_stays_as_it_is(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        history = History(log)
        history.write([(b"k", b"old")], NOW)
        garbage = bytearray(build_batch([Record(b"k", b"hidden")], compression=1))
        garbage[HEADER_SIZE:] = b"\xff" * (len(garbage) - HEADER_SIZE)  # not gzip, yet a valid CRC
        struct.pack_into(">I", garbage, 17, crc_of(garbage, 0, len(garbage)))
        log.append(garbage, split_batches(bytes(garbage)), NOW + 1)  # at offset 1
        history.write([(b"j", b"1"), (b"j", b"2")], NOW + 2)
        roll(log)
        compact(log)
        assert [h.base_offset for h in log.batch_headers(0)] == [0, 1, 2]
        assert log.read(0, 1) == history.batches[0]  # its key is not known to be replaced
        assert log.read(1, 1) == garbage  # kept byte for byte
        assert [(r.offset, r.value) for r in decode_records(log.read(2, 1))] == [(3, b"2")]

    def test_the_last_batch_of_an_idempotent_producer_stays(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        history = History(log)
        for seq in range(0, 9, 3):
            history.write(
                [(b"p%d" % (seq + i), b"v") for i in range(3)],
                NOW + seq,
                4,
                producer_id=7,
                producer_epoch=2,
                base_sequence=seq,
            )
        last = max(history.headers)
        history.write([(b"p%d" % i, b"overwritten") for i in range(9)], NOW + 100)
        roll(log)
        states = ProducerStates()
        for header in log.batch_headers(0):
            states.record(header, header.base_offset)
        compact(log)
        headers = list(log.batch_headers(0))
        assert [(h.base_offset, h.record_count) for h in headers] == [(last, 0), (9, 9)]
        empty = headers[0]
        assert (empty.last_offset, empty.base_sequence, empty.producer_epoch) == (8, 6, 2)
        rebuilt = ProducerStates()
        for header in log.batch_headers(0):
            rebuilt.record(header, header.base_offset)
        assert rebuilt.producers[7].epoch == 2
        assert rebuilt.producers[7].batches[-1] == states.producers[7].batches[-1]
        assert scan(log)[0] == [r for r in history.records if r.offset >= 9]
        # Once the producer has a later batch, the empty one goes.
        history.write([(b"q", b"v")], NOW + 200, producer_id=7, producer_epoch=2, base_sequence=9)
        roll(log)
        compact(log, force=True)
        assert [h.base_offset for h in log.batch_headers(0)] == [9, 18]

    def test_appends_and_reads_go_on_during_a_compaction(
        self, engine: StorageEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        log = self.open(engine)
        history = History(log)
        rng = random.Random(3)
        ts = random_history(history, rng, batches=150, keys=20, ts=NOW)
        active = roll(log)
        known = len(history.records)
        planned, resume = threading.Event(), threading.Event()
        rewrite = compaction._Cleaner.rewrite

        def paused(cleaner: Any) -> Any:
            planned.set()
            assert resume.wait(10)
            return rewrite(cleaner)

        monkeypatch.setattr(compaction._Cleaner, "rewrite", paused)
        outcome: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: outcome.update(stats=compact(log)))
        thread.start()
        assert planned.wait(10)
        # Key map built, rewrite about to start: appends (rolling segments) and reads go on.
        segments = log.segment_count
        ts = random_history(history, rng, batches=60, keys=20, ts=ts)
        assert log.segment_count > segments
        assert scan(log)[0] == history.records
        resume.set()
        thread.join(10)
        assert outcome["stats"].segments_cleaned == segments - 1
        assert scan(log)[0] == history.expected(active, NOW + HOUR, known)

    def test_compaction_runs_alongside_appends(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        history = History(log)
        rng = random.Random(4)
        ts = random_history(history, rng, batches=100, keys=15, ts=NOW)
        done = threading.Event()
        errors: list[BaseException] = []

        def cleaner() -> None:
            try:
                for _ in range(8):
                    compact(log, force=True)
            except BaseException as exc:
                errors.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=cleaner)
        thread.start()
        rounds = 0
        while not done.is_set() or rounds < 3:
            ts = random_history(history, rng, batches=10, keys=15, ts=ts)
            records, _ = scan(log)
            assert set(records) <= set(history.records)
            latest = {r.key: r for r in history.records}
            assert set(latest.values()) <= set(records)  # the latest of every key is always there
            rounds += 1
        thread.join(10)
        assert not errors
        active = roll(log)
        compact(log, force=True)
        assert scan(log)[0] == history.expected(active, NOW + HOUR)

    def test_a_compaction_gives_up_when_retention_deletes_its_segments(
        self, engine: StorageEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        log = self.open(engine)
        history = History(log)
        random_history(history, random.Random(5), batches=100, keys=10, ts=NOW)
        roll(log)
        build = compaction._Cleaner.build_key_map

        def and_retention(cleaner: Any) -> None:
            build(cleaner)
            log.apply_retention(LogConfig(retention_ms=-1, retention_bytes=3000), NOW)

        monkeypatch.setattr(compaction._Cleaner, "build_key_map", and_retention)
        start = log.log_start_offset
        assert compact(log).segments_cleaned == 0
        assert log.log_start_offset > start
        assert scan(log)[0] == [r for r in history.records if r.offset >= log.log_start_offset]


class TestMemoryCompaction(CompactionConformance):
    @pytest.fixture
    def engine(self) -> Iterator[StorageEngine]:
        engine = MemoryStorageEngine()
        yield engine
        engine.close()


class TestFileCompaction(CompactionConformance):
    @pytest.fixture
    def engine(self, tmp_path: Path) -> Iterator[StorageEngine]:
        engine = FileStorageEngine(tmp_path / "data")
        yield engine
        engine.close()


# --- the file engine: restarts and crashes ----------------------------------------------------


def write_history(log: PartitionLog) -> int:
    """The log the crash cases compact; returns the base offset of its active segment."""
    history = History(log)
    random_history(history, random.Random(6), batches=150, keys=25, ts=NOW)
    active = roll(log)
    history.write([(b"key-001", b"in the active segment")], NOW + 5000)
    return active


@functools.cache
def reference(compacted: bool) -> bytes:
    """What the crash cases must find: the log compacted or not, as the memory engine has it."""
    log = MemoryLog(CONFIG)
    write_history(log)
    if compacted:
        compact(log)
    return log.read(0, 1 << 30)


def log_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def open_file_log(data: Path) -> FileLog:
    return FileStorageEngine(data).open_log("t", 0, CONFIG)


def test_reopened_log_reads_the_same(tmp_path: Path) -> None:
    log = open_file_log(tmp_path)
    write_history(log)
    compact(log)
    assert log.read(0, 1 << 30) == reference(compacted=True)  # the same bytes as in memory
    before = snapshot(log)
    log.close()
    log = open_file_log(tmp_path)
    assert snapshot(log) == before
    del log  # no close: a crash after the compaction
    log = open_file_log(tmp_path)
    assert snapshot(log) == before
    assert compact(log).segments_cleaned == 0  # the clean offset survived: nothing dirty
    assert not [name for name in log_files(tmp_path / "t-0") if "clean" in name and name != "cleaner-offset"]


def test_leftover_cleaned_files_are_deleted_on_open(tmp_path: Path) -> None:
    log = open_file_log(tmp_path)
    write_history(log)
    before = snapshot(log)
    log.close()
    directory = tmp_path / "t-0"
    for name in (
        "00000000000000000000.log.cleaned",
        "00000000000000000000.index.cleaned",
        "cleaner-swap.tmp",
    ):
        (directory / name).write_bytes(b"half written" * 100)
    log = open_file_log(tmp_path)
    assert snapshot(log) == before
    assert not [name for name in log_files(directory) if name.endswith((".cleaned", ".tmp"))]


@pytest.mark.parametrize("point", ["fsync", "record"])
def test_a_failure_before_the_commit_point_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    """The disk fails while a cleaned copy is made durable, or while the swap is recorded."""
    log = open_file_log(tmp_path)
    active = write_history(log)
    before = snapshot(log)
    files = log_files(tmp_path / "t-0")
    write_file, seal = FileLog._write_file, FileLog._seal_cleaned
    sealed = [0]

    def failing_write(self: FileLog, name: str, data: bytes) -> None:
        if name == "cleaner-swap":
            raise OSError(errno.ENOSPC, "No space left on device")
        write_file(self, name, data)

    def failing_seal(self: FileLog, segment: Any) -> None:
        sealed[0] += 1
        if sealed[0] == 3:
            raise StorageError("fsync failed")
        seal(self, segment)

    if point == "record":
        monkeypatch.setattr(FileLog, "_write_file", failing_write)
    else:
        monkeypatch.setattr(FileLog, "_seal_cleaned", failing_seal)
    with pytest.raises(StorageError):
        compact(log)
    assert snapshot(log) == before
    assert log_files(tmp_path / "t-0") == files  # no .cleaned file left behind
    monkeypatch.undo()
    assert History(log).write([(b"k", b"v")], NOW + 6000).base_offset == active + 1
    assert compact(log).segments_cleaned > 0


@pytest.mark.parametrize("steps", [0, 1, 5, 30, 10_000])
def test_a_failure_after_the_commit_point_is_finished_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps: int
) -> None:
    """The renames stop after `steps` file operations: the log goes offline, and reopening it
    finishes the swap."""
    log = open_file_log(tmp_path)
    write_history(log)
    budget = [steps]
    real_replace, real_unlink = os.replace, compaction._unlink

    def spend(operation: Any) -> Any:
        def limited(*args: Any) -> Any:
            if budget[0] == 0:
                raise OSError(errno.EIO, "Input/output error")
            budget[0] -= 1
            return operation(*args)

        return limited

    finish = compaction.finish_swap

    def failing_finish(directory: str, groups: Any) -> None:
        with monkeypatch.context() as patch:
            patch.setattr(os, "replace", spend(real_replace))
            patch.setattr(compaction, "_unlink", spend(real_unlink))
            finish(directory, groups)

    monkeypatch.setattr(file_log, "finish_swap", failing_finish)
    if steps < 10_000:
        with pytest.raises(StorageError, match="stopped halfway"):
            compact(log)
        assert log.closed
        with pytest.raises(StorageError):
            log.read(0, 100)
    else:
        compact(log)
        log.close()
    monkeypatch.undo()
    log = open_file_log(tmp_path)
    assert log.read(0, 1 << 30) == reference(compacted=True)
    assert not [name for name in log_files(tmp_path / "t-0") if name.endswith((".cleaned", ".tmp", "swap"))]


CHILD = textwrap.dedent(
    """
    import os, sys
    from eventyard.storage import file_log
    from eventyard.storage.base import CompactionConfig
    from eventyard.storage.file_log import FileLog, FileStorageEngine
    from tests.storage.test_compaction import CONFIG, HOUR, NOW, write_history

    def crash(*args, **kwargs):
        os._exit(3)

    point = sys.argv[2]
    if point == "before-record":  # the cleaned copies are on disk
        FileLog._commit_swap = crash
    elif point == "after-record":
        file_log.finish_swap = crash
    else:  # halfway through the renames
        replace = os.replace
        calls = [0]
        def replace_then_crash(a, b):
            calls[0] += 1
            if calls[0] == 4:
                os._exit(3)
            replace(a, b)
        finish = file_log.finish_swap
        def finish_with_crash(directory, swap):
            os.replace = replace_then_crash
            finish(directory, swap)
        file_log.finish_swap = finish_with_crash
    log = FileStorageEngine(sys.argv[1]).open_log("t", 0, CONFIG)
    write_history(log)
    log.flush()
    log.compact(CompactionConfig(), NOW + HOUR)
    """
)


@pytest.mark.parametrize(
    ("point", "compacted"), [("before-record", False), ("after-record", True), ("renames", True)]
)
def test_a_crash_leaves_the_old_or_the_new_segments(tmp_path: Path, point: str, compacted: bool) -> None:
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), point], cwd=REPO, timeout=60)
    assert child.returncode == 3
    names = log_files(tmp_path / "t-0")
    assert any(name.endswith(".cleaned") for name in names)
    assert ("cleaner-swap" in names) == compacted
    log = open_file_log(tmp_path)
    assert log.read(0, 1 << 30) == reference(compacted)
    assert not [name for name in log_files(tmp_path / "t-0") if name.endswith((".cleaned", ".tmp", "swap"))]
