"""Crash safety under load: an idempotent acks=all producer writes continuously while the broker
is killed with SIGKILL at random moments, many times over. After every restart all acknowledged
records are present exactly once, in order per partition, and every segment on disk passes a CRC
check."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from eventyard.protocol.records import crc_of, iter_batches
from eventyard.testing import BrokerProcess
from tests.interop.test_restart import (
    FAST_RECONNECT,
    BackgroundProducer,
    assert_exactly,
    create_topic,
    read_all,
)

pytestmark = pytest.mark.eventyard_only(
    reason="SIGKILLs an Eventyard process and checks Eventyard's own segment files (CRCs) in its data dir"
)

KILLS = 10


def check_segments(data_dir: Path) -> int:
    """Every batch of every segment file is whole and CRC-valid, offsets rising; returns the count."""
    batches = 0
    for log_file in sorted(data_dir.glob("*/*.log")):
        data = log_file.read_bytes()
        end = 0
        last_offset = -1
        for pos, header in iter_batches(data):
            assert pos == end, f"{log_file}: a gap or garbage at byte {end}"
            assert crc_of(data, pos, header.size) == header.crc, f"{log_file}: bad CRC at byte {pos}"
            assert header.base_offset > last_offset, f"{log_file}: offsets go back at byte {pos}"
            last_offset = header.last_offset
            end = pos + header.size
            batches += 1
        assert end == len(data), f"{log_file}: {len(data) - end} trailing bytes"
    return batches


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, topic_name: str) -> None:
    rng = random.Random(20261126)
    data_dir = tmp_path / "data"
    broker = BrokerProcess(data_dir, "--config", "segment.bytes=65536").start()
    try:
        create_topic(broker, topic_name, 3)
        producer = Producer(
            {
                "bootstrap.servers": broker.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 1,
                **FAST_RECONNECT,
            }
        )
        writer = BackgroundProducer(producer, topic_name, 3)
        writer.start()
        try:
            for _ in range(KILLS):
                writer.wait_for_acks(len(writer.deliveries.acked) + 200)
                time.sleep(rng.uniform(0.0, 0.4))  # a random moment, mid-write more often than not
                broker.kill()
                broker.start()
            writer.wait_for_acks(len(writer.deliveries.acked) + 200)
        except BaseException:
            writer.flush_timeout = 0
            raise
        finally:
            writer.halt.set()
            writer.join(90)
        assert writer.unflushed == 0 and writer.deliveries.failed == []
        stored = read_all(broker, topic_name, 3)
        assert_exactly(writer.deliveries.acked, stored)  # each once, in order, at its acknowledged offset
        assert len(stored) == writer.produced
    finally:
        broker.kill()
    assert check_segments(data_dir) > KILLS
