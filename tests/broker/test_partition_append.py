"""Partition.append from a view of the request frame: rewritten in place, written once, not kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventyard.broker.partition import Partition
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.records import Record, build_batch, read_header, split_batches
from eventyard.storage.base import LogConfig, StorageEngine
from eventyard.storage.file_log import FileStorageEngine
from eventyard.storage.memory_log import MemoryStorageEngine

NOW = 1_700_000_000_000


@pytest.fixture(params=["file", "memory"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageEngine]:
    engine: StorageEngine = (
        FileStorageEngine(tmp_path / "data") if request.param == "file" else MemoryStorageEngine()
    )
    yield engine
    engine.close()


def _partition(engine: StorageEngine) -> Partition:
    return Partition("t", 0, engine.open_log("t", 0, LogConfig()))


def _batches(n: int) -> bytes:
    return b"".join(build_batch([Record(b"k", b"v%d" % i * 50)], base_timestamp=NOW) for i in range(n))


def test_a_frame_view_is_stamped_in_place_and_the_log_holds_its_own_copy(engine: StorageEngine) -> None:
    partition = _partition(engine)
    partition.append(_batches(2), max_batch_bytes=1 << 20, now_ms=NOW, log_append_time=False)
    frame = bytearray(b"header" + _batches(3) + b"trailer")  # records sit inside a larger frame
    view = memoryview(frame)[6:-7]
    outcome = partition.append(view, max_batch_bytes=1 << 20, now_ms=NOW, log_append_time=True)
    assert outcome.error == ErrorCode.NONE and outcome.base_offset == 2 and outcome.record_count == 3
    assert read_header(frame, 6).base_offset == 2  # rewritten where it was received
    assert frame[:6] == b"header" and frame[-7:] == b"trailer"
    stored = partition.log.read(2, 1 << 20)
    frame[6:-7] = bytes(len(frame) - 13)  # the request is over: its frame may change or go
    del view, frame
    again = partition.log.read(2, 1 << 20)
    assert again == stored
    headers = [h for _, h in split_batches(again)]  # CRCs still valid after the LogAppendTime stamp
    assert [h.base_offset for h in headers] == [2, 3, 4]
    assert all(h.max_timestamp == NOW for h in headers)


def test_read_only_bytes_are_copied_not_modified(engine: StorageEngine) -> None:
    partition = _partition(engine)
    partition.append(_batches(1), max_batch_bytes=1 << 20, now_ms=NOW, log_append_time=False)
    data = _batches(2)
    for given in (data, memoryview(data)):
        outcome = partition.append(given, max_batch_bytes=1 << 20, now_ms=NOW, log_append_time=False)
        assert outcome.error == ErrorCode.NONE
    assert data == _batches(2)  # bytes untouched: offsets were set in a copy
    assert [h.base_offset for h in partition.log.batch_headers(0)] == [0, 1, 2, 3, 4]


def test_a_corrupt_batch_in_a_view_is_refused_before_anything_is_rewritten(engine: StorageEngine) -> None:
    partition = _partition(engine)
    frame = bytearray(_batches(2))
    frame[-1] ^= 0xFF  # the CRC-32C is checked on the bytes as received
    before = bytes(frame)
    outcome = partition.append(memoryview(frame), max_batch_bytes=1 << 20, now_ms=NOW, log_append_time=False)
    assert outcome.error == ErrorCode.CORRUPT_MESSAGE
    assert frame == before and partition.log.log_end_offset == 0
