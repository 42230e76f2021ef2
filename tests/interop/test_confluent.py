"""librdkafka (confluent-kafka) against a real broker process over TCP."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from eventyard.testing import BrokerProcess

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def admin(broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create_topic(broker: BrokerProcess, name: str, partitions: int = 3, **config: str) -> None:
    client = admin(broker)  # keep the client alive until its futures are done
    futures = client.create_topics([NewTopic(name, partitions, 1, config=config)], operation_timeout=10)
    futures[name].result(10)


def produce(
    broker: BrokerProcess, topic: str, messages: list[tuple[bytes | None, bytes]], **conf: object
) -> list:
    delivered: list = []
    errors: list = []

    def on_delivery(err: KafkaError | None, msg: object) -> None:
        (errors if err else delivered).append(err or msg)

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, **conf})
    for key, value in messages:
        producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors, errors
    return delivered


def consume_all(
    broker: BrokerProcess, topic: str, partitions: int, expected: int, timeout: float = 30
) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list = []
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 0.5):
            assert msg.error() is None, msg.error()
            out.append(msg)
    consumer.close()
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume_every_codec(broker: BrokerProcess, topic_name: str, codec: str) -> None:
    create_topic(broker, topic_name, 3)
    messages = [(f"key-{i % 17}".encode() if i % 3 else None, f"value-{i}".encode() * 3) for i in range(3000)]
    delivered = produce(broker, topic_name, messages, **{"compression.type": codec})
    assert len(delivered) == len(messages)
    got = consume_all(broker, topic_name, 3, len(messages))
    assert len(got) == len(messages)
    # Order within a partition is the order of delivery, offsets are consecutive from 0.
    by_partition: dict[int, list] = defaultdict(list)
    for m in got:
        by_partition[m.partition()].append(m)
    sent: dict[int, list] = defaultdict(list)
    for m in delivered:
        sent[m.partition()].append((m.offset(), m.key(), m.value()))
    for p, msgs in by_partition.items():
        assert [m.offset() for m in msgs] == list(range(len(msgs)))
        assert [(m.offset(), m.key(), m.value()) for m in msgs] == sorted(sent[p])
    # Keyed messages land by key: one key, one partition.
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for m in got:
        if m.key() is not None:
            partitions_of_key[m.key()].add(m.partition())
    assert all(len(ps) == 1 for ps in partitions_of_key.values())


def test_idempotent_producer(broker: BrokerProcess, topic_name: str) -> None:
    create_topic(broker, topic_name, 2)
    messages = [(str(i % 5).encode(), str(i).encode()) for i in range(5000)]
    produce(broker, topic_name, messages, **{"enable.idempotence": True, "acks": "all", "linger.ms": 1})
    got = consume_all(broker, topic_name, 2, len(messages))
    assert sorted(int(m.value()) for m in got) == list(range(5000))


def test_acks_zero_and_one(broker: BrokerProcess, topic_name: str) -> None:
    create_topic(broker, topic_name, 1)
    produce(broker, topic_name, [(None, b"a%d" % i) for i in range(100)], acks="0")
    produce(broker, topic_name, [(None, b"b%d" % i) for i in range(100)], acks="1")
    got = consume_all(broker, topic_name, 1, 200)
    assert [m.value() for m in got] == [b"a%d" % i for i in range(100)] + [b"b%d" % i for i in range(100)]


def test_offsets_for_times(broker: BrokerProcess, topic_name: str) -> None:
    create_topic(broker, topic_name, 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    base = 1_700_000_000_000
    for i in range(10):
        producer.produce(topic_name, value=b"%d" % i, timestamp=base + i * 1000)
        producer.flush(10)  # one batch per record: the lookup must find records, not batches
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "times"})
    found = consumer.offsets_for_times([TopicPartition(topic_name, 0, base + 4500)], timeout=10)
    assert found[0].offset == 5
    found = consumer.offsets_for_times([TopicPartition(topic_name, 0, base + 3000)], timeout=10)
    assert found[0].offset == 3
    found = consumer.offsets_for_times([TopicPartition(topic_name, 0, base + 99_000)], timeout=10)
    assert found[0].offset == -1  # after the last record: no offset
    low, high = consumer.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
    assert (low, high) == (0, 10)
    consumer.close()


def test_delete_records(broker: BrokerProcess, topic_name: str) -> None:
    create_topic(broker, topic_name, 1)
    produce(broker, topic_name, [(None, b"%d" % i) for i in range(50)])
    client = admin(broker)
    result = client.delete_records([TopicPartition(topic_name, 0, 20)], request_timeout=10)
    deleted = next(iter(result.values())).result(10)
    assert deleted.low_watermark == 20
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "dr"})
    assert consumer.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10) == (20, 50)
    consumer.close()
    got = consume_all(broker, topic_name, 1, 30)  # from offset 0: reset to the start
    assert [int(m.value()) for m in got][:1] == [20]


def eventually(condition: Callable[[], bool], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_configs_and_partitions(broker: BrokerProcess, topic_name: str) -> None:
    create_topic(broker, topic_name, 1, **{"retention.ms": "3600000"})
    client = admin(broker)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    configs = client.describe_configs([resource])[resource].result(10)
    assert configs["retention.ms"].value == "3600000"
    assert configs["cleanup.policy"].value == "delete"
    change = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic_name,
        incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    client.incremental_alter_configs([change])[change].result(10)
    configs = client.describe_configs([resource])[resource].result(10)
    assert configs["retention.ms"].value == "7200000"
    bad = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic_name,
        incremental_configs=[
            ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    with pytest.raises(Exception, match=r"retention.ms"):
        client.incremental_alter_configs([bad])[bad].result(10)
    client.create_partitions([NewPartitions(topic_name, 4)])[topic_name].result(10)
    # Kafka answers CreatePartitions and DeleteTopics before its metadata shows the change: poll.

    def partitions() -> int:
        return len(client.list_topics(topic_name, timeout=10).topics[topic_name].partitions)

    assert eventually(lambda: partitions() >= 4)
    assert partitions() == 4
    with pytest.raises(Exception, match=r"INVALID_PARTITIONS|partitions"):
        client.create_partitions([NewPartitions(topic_name, 2)])[topic_name].result(10)
    client.delete_topics([topic_name])[topic_name].result(10)
    assert eventually(lambda: topic_name not in client.list_topics(timeout=10).topics)


def test_topic_errors(broker: BrokerProcess) -> None:
    client = admin(broker)
    with pytest.raises(Exception, match=r"TOPIC_EXCEPTION"):
        client.create_topics([NewTopic("bad name!", 1, 1)])["bad name!"].result(10)
    with pytest.raises(Exception, match=r"REPLICATION|eplication"):
        client.create_topics([NewTopic("rf-three", 1, 3)])["rf-three"].result(10)
