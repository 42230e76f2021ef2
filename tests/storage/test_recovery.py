"""The file engine after restarts, crashes, damaged files and failing disks."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eventyard.protocol.records import HEADER_SIZE, split_batches
from eventyard.storage.base import LogConfig, OffsetOutOfRange, StorageError
from eventyard.storage.file_log import FileLog, FileStorageEngine
from eventyard.storage.memory_log import MemoryStorageEngine
from eventyard.storage.segment import OFFSET_ENTRY, TIME_ENTRY

from .test_conformance import NOW, append, at_offset, batch_of, fill, make_batch, read_all

CONFIG = LogConfig(segment_bytes=1024, index_interval_bytes=256)


def open_log(data: Path, config: LogConfig = CONFIG) -> FileLog:
    return FileStorageEngine(data).open_log("t", 0, config)


def log_dir(data: Path) -> Path:
    return data / "t-0"


def files(data: Path, suffix: str) -> list[Path]:
    return sorted(log_dir(data).glob(f"*{suffix}"))


def snapshot(log: FileLog) -> tuple[object, ...]:
    """Everything observable about a log, to compare before and after a restart."""
    stamps = [log.offset_for_timestamp(NOW + t) for t in range(-5, 1000, 7)]
    headers = [(h.base_offset, h.last_offset) for h in log.batch_headers(0)]
    return (
        log.log_start_offset,
        log.log_end_offset,
        log.size_bytes,
        log.segment_count,
        read_all(log, log.log_start_offset),
        stamps,
        log.max_timestamp(),
        headers,
    )


def test_reopen_after_close_keeps_everything(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, 80)
    log.delete_records_before(20)
    before = snapshot(log)
    assert log.segment_count > 4
    log.close()
    log = open_log(tmp_path)
    assert snapshot(log) == before
    assert append(log, make_batch()).base_offset == 240
    log.close()


def test_reopen_without_close(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, 80)
    before = snapshot(log)
    del log  # a crash: nothing finalized, nothing flushed (the OS still has the bytes)
    log = open_log(tmp_path)
    assert snapshot(log) == before
    assert append(log, make_batch()).base_offset == 240


def test_log_start_offset_survives_a_restart(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, 10)
    log.delete_records_before(13)
    log.close()
    log = open_log(tmp_path)
    assert log.log_start_offset == 13
    with pytest.raises(OffsetOutOfRange):
        log.read(12, 100)
    log.delete_records_before(30)  # everything
    del log
    log = open_log(tmp_path)
    assert (log.log_start_offset, log.log_end_offset, log.segment_count) == (30, 30, 1)
    assert append(log, make_batch()).base_offset == 30


CHILD = textwrap.dedent(
    """
    import sys
    from eventyard.protocol.records import Record, build_batch, split_batches
    from eventyard.storage.base import LogConfig
    from eventyard.storage.file_log import FileStorageEngine

    config = LogConfig(segment_bytes=16 * 1024, index_interval_bytes=512)
    log = FileStorageEngine(sys.argv[1]).open_log("t", 0, config)
    i = 0
    while True:
        records = [Record(b"k", b"%d" % i * (1 + i % 40), timestamp=1000 + i) for _ in range(1 + i % 5)]
        data = bytearray(build_batch(records))
        result = log.append(data, split_batches(bytes(data)), 1000 + i)
        print(result.base_offset, result.last_offset, flush=True)
        i += 1
    """
)


def run_and_kill(data: Path, appends: int) -> list[tuple[int, int]]:
    """Run a process appending in a loop, SIGKILL it after `appends` appends, return them all."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(data)], stdout=subprocess.PIPE)
    assert child.stdout is not None
    lines: list[bytes] = []
    try:
        while len(lines) < appends:
            line = child.stdout.readline()
            assert line, "the child died"
            lines.append(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    lines += child.stdout.read().splitlines(keepends=True)
    child.stdout.close()
    return [(int(a), int(b)) for a, b in (line.split() for line in lines if line.endswith(b"\n"))]


def test_appends_survive_sigkill(tmp_path: Path) -> None:
    reported: list[tuple[int, int]] = []
    for appends in (300, 1000, 50):
        acked = run_and_kill(tmp_path, appends)
        assert acked and acked[0][0] == (reported[-1][1] + 1 if reported else 0)
        reported += acked
        log = open_log(tmp_path, LogConfig(segment_bytes=16 * 1024, index_interval_bytes=512))
        assert log.segment_count > 1
        data = read_all(log, 0)  # every batch whole and CRC-valid
        stored = [(h.base_offset, h.last_offset) for _, h in split_batches(data)]
        assert stored[: len(reported)] == reported
        assert log.log_end_offset == stored[-1][1] + 1
        assert len(stored) <= len(reported) + 1  # at most the append being made when killed
        reported = stored
        log.close()


def write_and_close(data: Path, count: int = 10, index_interval_bytes: int = 100) -> list[bytes]:
    log = open_log(data, LogConfig(index_interval_bytes=index_interval_bytes))
    expected = fill(log, count)
    log.close()
    return expected


def test_torn_tail_is_truncated(tmp_path: Path) -> None:
    expected = write_and_close(tmp_path)
    (path,) = files(tmp_path, ".log")
    size = path.stat().st_size
    os.truncate(path, size - 5)
    log = open_log(tmp_path)
    assert log.log_end_offset == 27
    assert path.stat().st_size == size - len(expected[-1])
    assert read_all(log, 0) == b"".join(expected[:-1])
    batch = make_batch()
    assert append(log, batch).base_offset == 27
    assert read_all(log, 0) == b"".join([*expected[:-1], at_offset(batch, 27)])


@pytest.mark.parametrize("keep", [0, 7, 30, 61, 80])
def test_torn_tail_at_any_point_of_a_batch(tmp_path: Path, keep: int) -> None:
    expected = write_and_close(tmp_path)
    (path,) = files(tmp_path, ".log")
    cut = sum(map(len, expected[:6]))
    os.truncate(path, cut + keep)  # index entries may now point past the end
    log = open_log(tmp_path)
    assert (log.log_end_offset, log.size_bytes) == (18, cut)
    assert read_all(log, 0) == b"".join(expected[:6])
    assert log.offset_for_timestamp(NOW + 51) == (16, NOW + 51)
    assert log.offset_for_timestamp(NOW + 53) is None
    assert log.max_timestamp() == (17, NOW + 52)
    assert append(log, make_batch(ts=NOW + 500)).base_offset == 18
    assert log.offset_for_timestamp(NOW + 53) == (18, NOW + 500)


def test_corrupt_last_batch_is_dropped(tmp_path: Path) -> None:
    expected = write_and_close(tmp_path)
    (path,) = files(tmp_path, ".log")
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(raw)
    log = open_log(tmp_path)
    assert log.log_end_offset == 27
    assert read_all(log, 0) == b"".join(expected[:-1])


def test_corruption_after_the_last_index_point_truncates_there(tmp_path: Path) -> None:
    # Recovery verifies the batches after the last index point; none here, so all of them.
    expected = write_and_close(tmp_path, index_interval_bytes=4096)
    (path,) = files(tmp_path, ".log")
    raw = bytearray(path.read_bytes())
    raw[sum(map(len, expected[:4])) + 70] ^= 0x01
    path.write_bytes(raw)
    log = open_log(tmp_path)
    assert log.log_end_offset == 12
    assert read_all(log, 0) == b"".join(expected[:4])


def test_a_corrupt_first_batch_empties_the_last_segment(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    expected = fill(log, 20)
    base = log._segments[-1].base_offset
    log.close()
    path = files(tmp_path, ".log")[-1]
    raw = bytearray(path.read_bytes())
    raw[HEADER_SIZE + 2] ^= 0xFF
    path.write_bytes(raw)
    log = open_log(tmp_path)
    assert (log.log_end_offset, path.stat().st_size) == (base, 0)
    assert read_all(log, 0) == b"".join(expected[: base // 3])
    assert append(log, make_batch()).base_offset == base


def test_batches_bigger_than_the_recovery_chunk(tmp_path: Path) -> None:
    log = open_log(tmp_path, LogConfig())
    expected = [*fill(log, 2), *fill(log, 2, size=400_000)]
    log.close()
    log = open_log(tmp_path, LogConfig())
    assert read_all(log, 0) == b"".join(expected)
    log.close()
    (path,) = files(tmp_path, ".log")
    os.truncate(path, path.stat().st_size - 1000)
    log = open_log(tmp_path, LogConfig())
    assert read_all(log, 0) == b"".join(expected[:3])


@pytest.mark.parametrize("first", [False, True])
def test_damaged_base_offset(tmp_path: Path, first: bool) -> None:
    # The base offset is outside the CRC: offsets must start at the segment's and go forward.
    expected = write_and_close(tmp_path, index_interval_bytes=4096)
    (path,) = files(tmp_path, ".log")
    raw = bytearray(path.read_bytes())
    raw[7 if first else len(raw) - len(expected[-1]) + 7] = 0x55
    path.write_bytes(raw)
    log = open_log(tmp_path)
    assert log.log_end_offset == (0 if first else 27)


def test_missing_or_garbage_indexes_are_rebuilt(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, 60, size=60)
    before = snapshot(log)
    log.close()
    indexes, timeindexes = files(tmp_path, ".index"), files(tmp_path, ".timeindex")
    assert len(indexes) > 3
    originals = [path.read_bytes() for path in indexes + timeindexes]
    indexes[0].unlink()
    timeindexes[0].unlink()
    indexes[1].write_bytes(b"\xff" * 16)  # negative offsets
    timeindexes[1].write_bytes(b"garbage!!")
    indexes[2].write_bytes(OFFSET_ENTRY.pack(1, 7))  # plausible, but not a batch start
    timeindexes[3].write_bytes(b"")
    # Sane-looking but wrong entries for the last segment: found out while verifying the tail.
    indexes[-1].write_bytes(OFFSET_ENTRY.pack(5, 9))
    timeindexes[-1].write_bytes(TIME_ENTRY.pack(NOW + 5000, 20))
    log = open_log(tmp_path)
    assert snapshot(log) == before
    assert [path.read_bytes() for path in indexes + timeindexes] == originals
    log.close()
    log = open_log(tmp_path)
    assert snapshot(log) == before


def test_a_wrong_index_entry_found_while_reading(tmp_path: Path) -> None:
    log = open_log(tmp_path, LogConfig(index_interval_bytes=100))
    expected = fill(log, 10)
    positions = log._segments[0]._idx_pos
    for k in range(len(positions)):
        positions[k] += 3  # as if the file lied
    assert log.read(26, 1000) == expected[-2] + expected[-1]
    assert read_all(log, 0) == b"".join(expected)


def test_a_failed_write_raises_and_leaves_the_log_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(tmp_path)
    expected = fill(log, 5)
    (path,) = files(tmp_path, ".log")
    size = path.stat().st_size
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        monkeypatch.setattr(os, "write", real_write)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(StorageError):
        append(log, make_batch())
    assert (log.log_end_offset, log.size_bytes, path.stat().st_size) == (15, size, size)

    def half_written(fd: int, data: bytes) -> int:
        monkeypatch.setattr(os, "write", real_write)
        return real_write(fd, bytes(data)[: len(data) // 2])

    monkeypatch.setattr(os, "write", half_written)
    with pytest.raises(StorageError):
        append(log, make_batch(), make_batch())
    assert (log.log_end_offset, log.size_bytes, path.stat().st_size) == (15, size, size)

    batch = make_batch(ts=NOW + 100)
    assert append(log, batch).base_offset == 15
    expected.append(at_offset(batch, 15))
    assert read_all(log, 0) == b"".join(expected)
    log.close()
    log = open_log(tmp_path)
    assert read_all(log, 0) == b"".join(expected)
    assert log.offset_for_timestamp(NOW + 43) == (15, NOW + 100)


def test_a_write_that_cannot_be_undone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(tmp_path)
    expected = fill(log, 5)
    real_write = os.write

    def half_written(fd: int, data: bytes) -> int:
        monkeypatch.setattr(os, "write", real_write)
        return real_write(fd, bytes(data)[: len(data) // 2])

    def failing_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "write", half_written)
    monkeypatch.setattr(os, "ftruncate", failing_truncate)
    with pytest.raises(StorageError):
        append(log, make_batch())
    monkeypatch.undo()
    with pytest.raises(StorageError):  # refuses to append after the garbage
        append(log, make_batch())
    assert read_all(log, 0) == b"".join(expected)
    del log
    log = open_log(tmp_path)  # recovery cuts the half batch
    assert read_all(log, 0) == b"".join(expected)
    assert append(log, make_batch()).base_offset == 15


def test_failing_fsync_raises_storage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(tmp_path)
    fill(log, 3)

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageError):
        log.flush()
    monkeypatch.undo()
    log.flush()  # the failed one is retried
    log.close()


def test_retention_and_delete_remove_the_files(tmp_path: Path) -> None:
    engine = FileStorageEngine(tmp_path)
    log = engine.open_log("t", 0, CONFIG)
    fill(log, 100)
    count = log.segment_count
    assert len(files(tmp_path, ".log")) == count
    assert log.apply_retention(LogConfig(retention_ms=-1, retention_bytes=4096), NOW) > 0
    assert len(files(tmp_path, ".log")) == log.segment_count < count
    assert len(files(tmp_path, ".index")) == len(files(tmp_path, ".timeindex")) == log.segment_count
    engine.delete_log("t", 0)
    assert not log_dir(tmp_path).exists()
    engine.close()


@pytest.mark.parametrize("seed", range(4))
def test_file_log_matches_memory_log_through_restarts(tmp_path: Path, seed: int) -> None:
    """Random operations on both engines give the same answers, restarts included."""
    rng = random.Random(seed)
    segment_bytes, interval = rng.choice([700, 3000, 20_000]), rng.choice([1, 200])
    config = LogConfig(segment_bytes=segment_bytes, index_interval_bytes=interval)
    memory = MemoryStorageEngine().open_log("t", 0, config)
    log = open_log(tmp_path, config)
    now = NOW
    for _ in range(500):
        now += rng.randrange(100)
        op = rng.random()
        if op < 0.4:
            batches = [
                batch_of(
                    [NOW + rng.randrange(-50_000, 50_000) for _ in range(rng.randrange(1, 6))],
                    compression=rng.choice([0, 0, 1]),
                )
                for _ in range(rng.randrange(1, 4))
            ]
            stamp = rng.random() < 0.2
            assert append(log, *batches, now_ms=now, log_append_time=stamp) == append(
                memory, *batches, now_ms=now, log_append_time=stamp
            )
        elif op < 0.6:
            offset = rng.randrange(memory.log_start_offset, memory.log_end_offset + 1)
            max_bytes, min_one = rng.randrange(2000), rng.random() < 0.7
            assert log.read(offset, max_bytes, min_one) == memory.read(offset, max_bytes, min_one)
        elif op < 0.75:
            ts = NOW + rng.randrange(-60_000, 60_000)
            assert log.offset_for_timestamp(ts) == memory.offset_for_timestamp(ts)
        elif op < 0.8:
            offset = rng.randrange(memory.log_end_offset + 1)
            assert list(log.batch_headers(offset)) == list(memory.batch_headers(offset))
        elif op < 0.83:
            offset = rng.randrange(memory.log_end_offset + 1)
            assert log.delete_records_before(offset) == memory.delete_records_before(offset)
        elif op < 0.86:
            ms, size = rng.choice([-1, 40_000]), rng.choice([-1, 5000])
            retention = LogConfig(retention_ms=ms, retention_bytes=size)
            assert log.apply_retention(retention, now) == memory.apply_retention(retention, now)
        elif op < 0.9:
            if rng.random() < 0.5:
                log.close()
            del log
            log = open_log(tmp_path, config)
        assert log.max_timestamp() == memory.max_timestamp()
        assert (log.log_start_offset, log.log_end_offset, log.size_bytes, log.segment_count) == (
            memory.log_start_offset,
            memory.log_end_offset,
            memory.size_bytes,
            memory.segment_count,
        )
    assert read_all(log, log.log_start_offset) == read_all(memory, memory.log_start_offset)
    log.close()
