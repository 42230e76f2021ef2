"""One behaviour for both storage engines: every case runs against the file and the memory log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventyard.protocol.records import (
    TIMESTAMP_TYPE_LOG_APPEND,
    Record,
    build_batch,
    decode_records,
    set_base_offset,
    split_batches,
)
from eventyard.storage.base import AppendResult, LogConfig, OffsetOutOfRange, PartitionLog, StorageEngine
from eventyard.storage.file_log import FileStorageEngine
from eventyard.storage.memory_log import MemoryStorageEngine

NOW = 1_700_000_000_000
DAY = 24 * 3600 * 1000


def make_batch(count: int = 3, ts: int = NOW, step: int = 1, size: int = 20, compression: int = 0) -> bytes:
    """A batch of `count` records stamped ts, ts + step, ..."""
    records = [Record(b"key", bytes([65 + i % 26]) * size, timestamp=ts + i * step) for i in range(count)]
    return build_batch(records, base_timestamp=ts, compression=compression)


def batch_of(timestamps: list[int], compression: int = 0) -> bytes:
    records = [Record(None, b"v%d" % t, timestamp=t) for t in timestamps]
    return build_batch(records, base_timestamp=timestamps[0], compression=compression)


def append(
    log: PartitionLog, *batches: bytes, now_ms: int = NOW, log_append_time: bool = False
) -> AppendResult:
    data = bytearray(b"".join(batches))
    return log.append(data, split_batches(bytes(data)), now_ms, log_append_time)


def at_offset(batch: bytes, base_offset: int) -> bytes:
    out = bytearray(batch)
    set_base_offset(out, 0, base_offset)
    return bytes(out)


def read_all(log: PartitionLog, offset: int, max_bytes: int = 1 << 20) -> bytes:
    """Fetch like a consumer until the log end; every answer must be whole, valid batches."""
    out = bytearray()
    while offset < log.log_end_offset:
        chunk = log.read(offset, max_bytes)
        assert chunk, f"no progress at offset {offset}"
        batches = split_batches(chunk)  # checks sizes and CRCs
        out += chunk
        offset = batches[-1][1].last_offset + 1
    return bytes(out)


def fill(log: PartitionLog, count: int, records: int = 3, ts: int = NOW, size: int = 20) -> list[bytes]:
    """Append `count` batches one by one; return them as the log must hand them back."""
    expected = []
    for i in range(count):
        batch = make_batch(records, ts + i * 10, size=size)
        result = append(log, batch)
        expected.append(at_offset(batch, result.base_offset))
    return expected


class LogConformance:
    """The cases; a subclass provides the `engine` fixture."""

    @pytest.fixture
    def engine(self) -> Iterator[StorageEngine]:
        raise NotImplementedError

    def open(self, engine: StorageEngine, **config: int) -> PartitionLog:
        config.setdefault("index_interval_bytes", 256)
        return engine.open_log("events", 0, LogConfig(**config))

    def test_new_log_is_empty(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        assert (log.log_start_offset, log.log_end_offset, log.size_bytes, log.segment_count) == (0, 0, 0, 1)
        assert log.read(0, 1000) == b""
        assert log.max_timestamp() is None
        assert log.offset_for_timestamp(0) is None
        assert list(log.batch_headers(0)) == []

    def test_append_assigns_consecutive_offsets(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        offset = 0
        for i in range(60):
            count = 1 + i % 7
            result = append(log, make_batch(count))
            assert result == AppendResult(offset, offset + count - 1, -1)
            offset += count
        assert log.append(bytearray(), [], NOW) == AppendResult(offset, offset - 1, -1)
        three = [make_batch(2), make_batch(5), make_batch(1)]
        assert append(log, *three) == AppendResult(offset, offset + 7, -1)
        assert log.log_end_offset == offset + 8
        headers = list(log.batch_headers(offset))
        assert [(h.base_offset, h.last_offset) for h in headers] == [
            (offset, offset + 1),
            (offset + 2, offset + 6),
            (offset + 7, offset + 7),
        ]

    def test_append_of_a_subset_of_the_data(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        first, skipped, last = make_batch(2), make_batch(4, ts=NOW + 1), make_batch(3, ts=NOW + 2)
        data = bytearray(first + skipped + last)
        found = split_batches(bytes(data))
        assert log.append(data, [found[0], found[2]], NOW) == AppendResult(0, 4, -1)
        assert log.read(0, 1 << 20) == at_offset(first, 0) + at_offset(last, 2)
        assert append(log, make_batch(1)).base_offset == 5

    def test_read_returns_the_appended_bytes_from_any_offset(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        expected = fill(log, 30, records=4)
        for offset in range(log.log_end_offset):
            data = log.read(offset, 1 << 20)
            k = offset // 4
            got = split_batches(data)
            assert data == b"".join(expected[k : k + len(got)])
        assert read_all(log, 0) == b"".join(expected)

    def test_max_bytes_gives_whole_batches(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        expected = fill(log, 10, records=2)
        size = len(expected[0])
        assert log.read(0, size * 5 // 2) == expected[0] + expected[1]
        assert log.read(0, size * 2) == expected[0] + expected[1]
        assert log.read(7, size * 3 - 1) == expected[3] + expected[4]
        assert log.read(0, size - 1) == expected[0]  # min_one (KIP-74)
        assert log.read(0, 0) == expected[0]
        assert log.read(5, 1) == expected[2]
        assert log.read(0, size - 1, min_one=False) == b""

    def test_batches_larger_than_the_read_chunks(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        small = fill(log, 2)
        big = make_batch(2, size=300_000)
        assert append(log, big).base_offset == 6
        after = fill(log, 2, ts=NOW + 100)
        expected = [*small, at_offset(big, 6), *after]
        assert read_all(log, 0, max_bytes=1000) == b"".join(expected)
        assert log.read(7, 1000) == expected[2]
        assert log.read(6, 10, min_one=False) == b""
        assert [h.base_offset for h in log.batch_headers(0)] == [0, 3, 6, 8, 11]
        assert log.offset_for_timestamp(NOW + 1) == (1, NOW + 1)

    def test_read_at_the_end_and_out_of_range(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        expected = fill(log, 5, records=2)
        assert log.read(10, 1000) == b""
        for bad in (11, 100, -1):
            with pytest.raises(OffsetOutOfRange):
                log.read(bad, 1000)
        log.delete_records_before(5)
        with pytest.raises(OffsetOutOfRange):
            log.read(4, 1000)
        assert log.read(5, 1000) == expected[2] + expected[3] + expected[4]

    def test_segments_roll_by_size_and_reads_span_them(self, engine: StorageEngine) -> None:
        size = len(make_batch())
        log = self.open(engine, segment_bytes=size * 3 + size // 2)
        expected = fill(log, 20)
        assert log.segment_count == 7
        assert log.size_bytes == 20 * size
        assert read_all(log, 0) == b"".join(expected)
        assert read_all(log, 0, max_bytes=size * 5) == b"".join(expected)
        for offset in range(0, 60, 4):
            data = log.read(offset, 1 << 20)
            assert data.startswith(expected[offset // 3])
            split_batches(data)

    def test_one_append_larger_than_a_segment(self, engine: StorageEngine) -> None:
        size = len(make_batch())
        log = self.open(engine, segment_bytes=size * 2)
        first = fill(log, 1)
        many = [make_batch() for _ in range(5)]
        result = append(log, *many)
        assert result == AppendResult(3, 17, -1)
        assert log.segment_count == 2  # rolled once, then written whole
        later = fill(log, 1, ts=NOW + 100)
        assert log.segment_count == 3
        moved = [at_offset(batch, 3 + 3 * i) for i, batch in enumerate(many)]
        assert read_all(log, 0) == b"".join([*first, *moved, *later])

    def test_offset_for_timestamp(self, engine: StorageEngine) -> None:
        size = len(make_batch(4, size=30))
        log = self.open(engine, segment_bytes=size * 4)
        for i in range(20):  # batch i: records at NOW + 100 i + 10 j
            append(log, make_batch(4, ts=NOW + 100 * i, step=10, size=30, compression=1 if i % 5 == 0 else 0))
        assert log.segment_count > 3
        assert log.offset_for_timestamp(0) == (0, NOW)
        for i in range(20):
            for j in range(4):
                ts = NOW + 100 * i + 10 * j
                assert log.offset_for_timestamp(ts) == (4 * i + j, ts)
                expected = (4 * i + j + 1, ts + 10) if j < 3 else ((4 * i + 4, ts + 70) if i < 19 else None)
                assert log.offset_for_timestamp(ts + 1) == expected
        assert log.offset_for_timestamp(NOW + 100 * 19 + 31) is None

    def test_offset_for_timestamp_with_timestamps_out_of_order(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        append(log, batch_of([NOW + 100, NOW + 50, NOW + 200]))
        append(log, batch_of([NOW + 150, NOW + 10]), batch_of([NOW + 300], compression=2))
        assert log.offset_for_timestamp(NOW + 120) == (2, NOW + 200)
        assert log.offset_for_timestamp(NOW + 40) == (0, NOW + 100)
        assert log.offset_for_timestamp(NOW + 201) == (5, NOW + 300)
        assert log.offset_for_timestamp(NOW + 301) is None
        log.delete_records_before(1)
        assert log.offset_for_timestamp(NOW) == (1, NOW + 50)
        log.delete_records_before(3)
        assert log.offset_for_timestamp(NOW + 120) == (3, NOW + 150)

    def test_max_timestamp(self, engine: StorageEngine) -> None:
        log = self.open(engine, segment_bytes=200)
        append(log, batch_of([NOW + 5, NOW + 9, NOW + 1]))
        assert log.max_timestamp() == (1, NOW + 9)
        append(log, batch_of([NOW + 20, NOW + 90, NOW + 90, NOW + 3]))
        append(log, batch_of([NOW + 30, NOW + 40]), batch_of([NOW + 90]))
        assert log.max_timestamp() == (4, NOW + 90)  # the first record with the largest timestamp
        log.delete_records_before(5)
        assert log.max_timestamp() == (5, NOW + 90)
        log.delete_records_before(6)
        assert log.max_timestamp() == (9, NOW + 90)
        log.delete_records_before(10)
        assert log.max_timestamp() is None

    def test_delete_records_before(self, engine: StorageEngine) -> None:
        size = len(make_batch())
        log = self.open(engine, segment_bytes=size * 2)
        expected = fill(log, 20)
        segments = log.segment_count
        assert log.delete_records_before(7) == 7
        assert log.log_start_offset == 7
        assert log.segment_count == segments - 1  # only offsets 0-5 were in a whole segment
        assert log.read(7, 1 << 20).startswith(expected[2])
        assert next(iter(log.batch_headers(0))).base_offset == 6
        assert log.delete_records_before(3) == 7  # never backwards
        with pytest.raises(OffsetOutOfRange):
            log.delete_records_before(61)
        assert log.delete_records_before(60) == 60
        assert (log.log_start_offset, log.log_end_offset, log.segment_count, log.size_bytes) == (60, 60, 1, 0)
        assert log.read(60, 1000) == b""
        assert append(log, make_batch()).base_offset == 60
        assert read_all(log, 60) == at_offset(make_batch(), 60)

    def test_retention_by_time_keeps_the_active_segment(self, engine: StorageEngine) -> None:
        size = len(make_batch())
        log = self.open(engine, segment_bytes=size * 2)
        fill(log, 6, ts=NOW - 10 * DAY)  # 3 segments, old
        recent = fill(log, 3, ts=NOW - 1000)  # the last one fills one more and starts the active
        assert log.segment_count == 5
        config = LogConfig(retention_ms=DAY, retention_bytes=-1)
        assert log.apply_retention(config, NOW) == 3
        assert (log.log_start_offset, log.segment_count) == (18, 2)
        assert read_all(log, 18) == b"".join(recent)
        assert log.apply_retention(config, NOW) == 0
        assert log.apply_retention(config, NOW + 30 * DAY) == 1  # all expired: the active stays
        assert (log.log_start_offset, log.log_end_offset, log.segment_count) == (24, 27, 1)
        assert log.apply_retention(LogConfig(retention_ms=-1), NOW + 3650 * DAY) == 0

    def test_retention_by_size_keeps_the_active_segment(self, engine: StorageEngine) -> None:
        size = len(make_batch())
        log = self.open(engine, segment_bytes=size * 3)
        expected = fill(log, 10)  # segments of 3, 3, 3 and 1 batches
        assert log.apply_retention(LogConfig(retention_ms=-1, retention_bytes=size * 10), NOW) == 0
        assert log.apply_retention(LogConfig(retention_ms=-1, retention_bytes=size * 5), NOW) == 2
        assert (log.log_start_offset, log.size_bytes) == (18, size * 4)
        assert read_all(log, 18) == b"".join(expected[6:])
        assert log.apply_retention(LogConfig(retention_ms=-1, retention_bytes=0), NOW) == 1
        assert (log.log_start_offset, log.segment_count, log.size_bytes) == (27, 1, size)

    def test_log_append_time_stamps_batches_with_valid_crcs(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        result = append(log, make_batch(3, ts=NOW - DAY), make_batch(2, ts=NOW - DAY), log_append_time=True)
        assert result == AppendResult(0, 4, NOW)
        append(log, make_batch(1, ts=NOW + DAY))
        data = log.read(0, 1 << 20)
        batches = split_batches(data)  # raises on a bad CRC
        for _, header in batches[:2]:
            assert header.max_timestamp == NOW
            assert header.attributes & TIMESTAMP_TYPE_LOG_APPEND
        assert not batches[2][1].attributes & TIMESTAMP_TYPE_LOG_APPEND
        assert log.offset_for_timestamp(NOW - DAY) == (0, NOW)
        assert log.offset_for_timestamp(NOW + 1) == (5, NOW + DAY)
        stamped = append(log, make_batch(2), now_ms=NOW + 2 * DAY, log_append_time=True)
        assert stamped.log_append_time == NOW + 2 * DAY
        assert log.max_timestamp() == (6, NOW + 2 * DAY)
        assert [r.value for r in decode_records(data)] == [b"A" * 20, b"B" * 20, b"C" * 20]

    def test_batch_headers(self, engine: StorageEngine) -> None:
        size = len(make_batch())
        log = self.open(engine, segment_bytes=size * 2)
        fill(log, 7)
        headers = list(log.batch_headers(10))
        assert [h.base_offset for h in headers] == [9, 12, 15, 18]
        assert all(h.record_count == 3 for h in headers)
        assert list(log.batch_headers(21)) == []
        log.delete_records_before(4)
        assert [h.base_offset for h in log.batch_headers(0)] == [3, 6, 9, 12, 15, 18]

    def test_roll_if_due(self, engine: StorageEngine) -> None:
        config = LogConfig(segment_ms=1000)
        log = self.open(engine, segment_ms=1000)
        assert not log.roll_if_due(config, NOW + 5000)  # empty: nothing to roll
        append(log, make_batch(), now_ms=NOW)
        assert not log.roll_if_due(config, NOW + 999)
        assert log.roll_if_due(config, NOW + 1000)
        assert log.segment_count == 2
        assert not log.roll_if_due(config, NOW + 9000)
        append(log, make_batch(), now_ms=NOW + 9000)
        append(log, make_batch(), now_ms=NOW + 10_000)  # old enough: the append itself rolls
        assert log.segment_count == 3
        assert [h.base_offset for h in log.batch_headers(0)] == [0, 3, 6]

    def test_reopening_through_the_engine(self, engine: StorageEngine) -> None:
        log = self.open(engine)
        expected = fill(log, 4)
        assert self.open(engine) is log  # still open: the same log
        log.close()
        log = self.open(engine)
        assert read_all(log, 0) == b"".join(expected)
        engine.delete_log("events", 0)
        assert self.open(engine).log_end_offset == 0


class TestFileLog(LogConformance):
    @pytest.fixture
    def engine(self, tmp_path: Path) -> Iterator[StorageEngine]:
        engine = FileStorageEngine(tmp_path / "data")
        yield engine
        engine.close()


class TestMemoryLog(LogConformance):
    @pytest.fixture
    def engine(self) -> Iterator[StorageEngine]:
        engine = MemoryStorageEngine()
        yield engine
        engine.close()
