"""A full disk: KAFKA_STORAGE_ERROR for writes, reads keep working, writes recover once space is
freed, and nothing already acknowledged is damaged. The data directory is a 3 MB tmpfs mounted by
the test (the suite runs as root in CI; elsewhere it needs the privilege to mount)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.api_versions_request import ApiVersionsRequest
from eventyard.protocol.messages.create_topics_request import (
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
)
from eventyard.protocol.messages.delete_topics_request import DeleteTopicsRequest
from eventyard.protocol.records import Record, build_batch, crc_of, iter_batches
from eventyard.testing import BrokerProcess
from eventyard.wire_client import WireClient
from tests.interop.test_wire_semantics import fetch, produce

pytestmark = pytest.mark.eventyard_only(
    reason="runs Eventyard on a small tmpfs data dir to fill the disk (Kafka takes the log dir offline "
    "and, single-node, stops serving: no equivalent to compare)"
)

VALUE = os.urandom(50_000)  # incompressible, so sizes on disk are predictable


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def create(c: WireClient, name: str) -> None:
    config = [CreatableTopicConfig(name="segment.bytes", value="262144")]
    request = CreateTopicsRequest(
        topics=[CreatableTopic(name=name, num_partitions=1, replication_factor=1, configs=config)],
        timeout_ms=5000,
    )
    assert c.request(request, 5).topics[0].error_code == ErrorCode.NONE


def test_full_disk_refuses_writes_and_recovers(small_disk: Path) -> None:
    with BrokerProcess(small_disk / "data") as broker, WireClient(broker.host, broker.port) as c:
        create(c, "filler")
        for _ in range(20):  # about 1 MB that can be deleted later to free space
            assert produce(c, "filler", build_batch([Record(None, VALUE)]))[0] == ErrorCode.NONE
        create(c, "events")
        acknowledged = 0
        error = ErrorCode.NONE
        for _ in range(200):  # more than the disk holds
            error, offset = produce(c, "events", build_batch([Record(b"%d" % acknowledged, VALUE)]))
            if error != ErrorCode.NONE:
                break
            assert offset == acknowledged
            acknowledged += 1
        assert error == ErrorCode.KAFKA_STORAGE_ERROR
        assert 10 < acknowledged < 60

        # The broker still answers, and every acknowledged record reads back intact.
        assert c.request(ApiVersionsRequest(), 0).error_code == ErrorCode.NONE
        read_back = read_all(c, "events")
        assert read_back == acknowledged

        # Free space by deleting the filler topic: writes work again, at the next offset.
        assert (
            c.request(DeleteTopicsRequest(topic_names=["filler"], timeout_ms=5000), 4).responses[0].error_code
            == 0
        )
        assert produce(c, "events", build_batch([Record(b"after", VALUE)])) == (ErrorCode.NONE, acknowledged)

    # And after a restart on the same full-then-freed disk, the log is whole.
    with BrokerProcess(small_disk / "data") as broker, WireClient(broker.host, broker.port) as c:
        assert read_all(c, "events") == acknowledged + 1


def read_all(c: WireClient, topic: str) -> int:
    """Count the records of partition 0, checking every batch's CRC and the offsets' continuity."""
    offset = 0
    while True:
        partition = fetch(c, topic, offset, partition_max_bytes=1_000_000).responses[0].partitions[0]
        assert partition.error_code == ErrorCode.NONE
        if not partition.records:
            return offset
        for pos, header in iter_batches(partition.records):
            assert header.base_offset == offset
            assert crc_of(partition.records, pos, header.size) == header.crc
            offset = header.last_offset + 1
