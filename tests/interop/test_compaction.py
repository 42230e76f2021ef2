"""Log compaction seen by real clients: librdkafka writes many updates per key with every codec,
including tombstones; after a roll and a clean, a consumer from the beginning sees exactly the
latest value of each live key, at the offset it was written, and deleted keys only while
delete.retention.ms has not passed."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from eventyard.testing import BrokerProcess

pytestmark = pytest.mark.eventyard_only(
    reason="runs its own Eventyard with --housekeeping-interval 0.2 to compact within seconds "
    "(Kafka's cleaner needs its own log.cleaner.* settings and segment rolls)"
)

KEYS = [f"key-{i}".encode() for i in range(50)]
DELETED = KEYS[:10]


@pytest.fixture(scope="module")
def compacting_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    data = tmp_path_factory.mktemp("compaction")
    with BrokerProcess(Path(data), "--housekeeping-interval", "0.2") as broker:
        yield broker


def write_updates(broker: BrokerProcess, topic: str, codec: str) -> dict[bytes, tuple[int, bytes | None]]:
    """Many updates per key, then tombstones; the latest (offset, value) of every key."""
    latest: dict[bytes, tuple[int, bytes | None]] = {}

    def delivered(err: object, msg: object) -> None:
        assert err is None, err
        latest[msg.key()] = (msg.offset(), msg.value())  # type: ignore[attr-defined]

    producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec, "linger.ms": 2})
    rng = random.Random(7)
    for i in range(3000):
        producer.produce(
            topic, key=rng.choice(KEYS), value=b"v%d-" % i + bytes(rng.randrange(50)), on_delivery=delivered
        )
        if i % 500 == 0:
            producer.flush(10)  # several batches, so several segments
    producer.flush(10)
    for key in DELETED:
        producer.produce(topic, key=key, value=None, on_delivery=delivered)
    producer.flush(10)
    return latest


def read_all(broker: BrokerProcess, topic: str) -> list[tuple[int, bytes, bytes | None]]:
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "reader", "enable.partition.eof": True}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    out = []
    while True:
        # The end of the partition, or quiet: compaction may leave no record at the last offsets
        # (removed tombstones), in which case a consumer never sees an end-of-partition event.
        msg = consumer.poll(1.5)
        if msg is None or msg.error():
            break
        out.append((msg.offset(), msg.key(), msg.value()))
    consumer.close()
    return out


def wait_for(broker: BrokerProcess, topic: str, expected: list[tuple[int, bytes, bytes | None]]) -> None:
    deadline = time.monotonic() + 30
    while True:
        got = read_all(broker, topic)
        if got == expected or time.monotonic() > deadline:
            assert got == expected
            return
        time.sleep(0.3)


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compaction_keeps_the_latest_value_per_key(compacting_broker: BrokerProcess, codec: str) -> None:
    broker = compacting_broker
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    base = {
        "cleanup.policy": "compact",
        "segment.bytes": "16384",
        "segment.ms": "300",
        "min.cleanable.dirty.ratio": "0.01",
    }
    keep_tombstones, drop_tombstones = f"compact-keep-{codec}", f"compact-drop-{codec}"
    topics = [
        NewTopic(keep_tombstones, 1, 1, config={**base, "delete.retention.ms": "3600000"}),
        NewTopic(drop_tombstones, 1, 1, config={**base, "delete.retention.ms": "0"}),
    ]
    for future in admin.create_topics(topics).values():
        future.result(10)
    for topic, tombstones_stay in ((keep_tombstones, True), (drop_tombstones, False)):
        latest = write_updates(broker, topic, codec)
        expected = sorted(
            (offset, key, value)
            for key, (offset, value) in latest.items()
            if value is not None or tombstones_stay
        )
        assert len(expected) == (50 if tombstones_stay else 40)
        wait_for(broker, topic, expected)
