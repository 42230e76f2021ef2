"""kafka-python against a real broker process over TCP: admin, producer and consumer."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, OffsetSpec, OffsetTimestamp
from kafka.errors import (
    InvalidPartitionsError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from eventyard.testing import BrokerProcess

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]

# (partition, offset, key, value): one record as sent (from its metadata) or as read back.
Record = tuple[int, int, bytes | None, bytes]


@pytest.fixture
def admin(broker: BrokerProcess) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    yield client
    client.close()


def create_topic(
    admin: KafkaAdminClient, name: str, partitions: int = 3, configs: dict[str, str] | None = None
) -> dict[str, Any]:
    result = admin.create_topics(
        {name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}}
    )
    [topic] = result["topics"]
    assert (topic["name"], topic["error_code"], topic["num_partitions"]) == (name, 0, partitions)
    return topic


def produce(
    broker: BrokerProcess, topic: str, messages: list[tuple[bytes | None, bytes]], **conf: Any
) -> list[Record]:
    """Send every message, wait for all acknowledgements; the records as the broker placed them."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, **{"linger_ms": 5, **conf})
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in messages]
        producer.flush(timeout=30)
        sent = []
        for (key, value), future in zip(messages, futures, strict=True):
            metadata = future.get(timeout=10)
            sent.append((metadata.partition, metadata.offset, key, value))
        return sent
    finally:
        producer.close(timeout=10)


def consumer_for(broker: BrokerProcess, **conf: Any) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        request_timeout_ms=10_000,
        **conf,
    )


def consume_all(
    broker: BrokerProcess, topic: str, partitions: int, expected: int, timeout: float = 30, **conf: Any
) -> list[Record]:
    """Read from the start of every partition until `expected` records arrived (or the deadline)."""
    consumer = consumer_for(broker, **conf)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        out: list[Record] = []
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200, max_records=5000).values():
                out += [(r.partition, r.offset, r.key, r.value) for r in records]
        # Nothing more than expected: poll once more briefly to catch extra records.
        for records in consumer.poll(timeout_ms=100).values():
            out += [(r.partition, r.offset, r.key, r.value) for r in records]
        return out
    finally:
        consumer.close()


def assert_same_log(sent: list[Record], got: list[Record]) -> None:
    """Every partition holds exactly what was sent to it, in send order, at offsets 0, 1, 2, ..."""
    assert len(got) == len(sent)
    sent_by: dict[int, list[Record]] = defaultdict(list)
    got_by: dict[int, list[Record]] = defaultdict(list)
    for record in sent:
        sent_by[record[0]].append(record)
    for record in got:
        got_by[record[0]].append(record)
    assert sorted(got_by) == sorted(sent_by)
    for partition, records in got_by.items():
        assert [r[1] for r in records] == list(range(len(records)))
        assert records == sent_by[partition]


def messages(n: int, keyed: bool) -> list[tuple[bytes | None, bytes]]:
    return [
        (f"key-{i % 13}".encode() if keyed else None, f"value-{i}-".encode() + b"x" * (i % 61))
        for i in range(n)
    ]


def test_admin_topic_lifecycle(broker: BrokerProcess, admin: KafkaAdminClient, topic_name: str) -> None:
    created = create_topic(admin, topic_name, 3, {"retention.ms": "3600000"})
    assert created["configs"]["retention.ms"]["value"] == "3600000"
    assert created["configs"]["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert created["configs"]["cleanup.policy"]["value"] == "delete"
    assert topic_name in admin.list_topics()
    [described] = admin.describe_topics([topic_name])
    assert described["error_code"] == 0
    assert [(p["partition_index"], p["leader_id"], p["replica_nodes"]) for p in described["partitions"]] == [
        (0, 1, [1]),
        (1, 1, [1]),
        (2, 1, [1]),
    ]
    with pytest.raises(TopicAlreadyExistsError):
        create_topic(admin, topic_name, 3)

    cluster = admin.describe_cluster()
    assert cluster["controller_id"] == 1
    # DescribeCluster v2 (Kafka serves it, Eventyard 0-1) adds is_fenced: compare what both answer.
    brokers = [{k: v for k, v in b.items() if k != "is_fenced"} for b in cluster["brokers"]]
    assert brokers == [{"broker_id": 1, "host": broker.host, "port": broker.port, "rack": None}]
    broker_configs = admin.describe_configs([ConfigResource("BROKER", "1")], config_filter="all")
    assert (
        broker_configs["broker"]["1"]["num.partitions"]["value"] == "3"
    )  # the session broker's --partitions

    # Only what was set on the topic ("modified"), then everything.
    resource = ConfigResource("TOPIC", topic_name)
    modified = admin.describe_configs([resource])["topic"][topic_name]
    assert {k: v["value"] for k, v in modified.items()} == {"retention.ms": "3600000"}
    everything = admin.describe_configs([resource], config_filter="all")["topic"][topic_name]
    assert everything["cleanup.policy"]["value"] == "delete"
    assert everything["cleanup.policy"]["config_source"] == "DEFAULT_CONFIG"
    assert everything["retention.ms"]["config_type"] == "LONG"

    # IncrementalAlterConfigs (SET), then the legacy AlterConfigs (which replaces the whole set).
    result = admin.alter_configs([ConfigResource("TOPIC", topic_name, {"retention.ms": "7200000"})])
    assert result == {"topic": {topic_name: "OK"}}
    result = admin.alter_configs(
        [ConfigResource("TOPIC", topic_name, {"segment.ms": "600000"})], incremental=False
    )
    assert result == {"topic": {topic_name: "OK"}}
    modified = admin.describe_configs([resource])["topic"][topic_name]
    assert {k: v["value"] for k, v in modified.items()} == {"retention.ms": "7200000", "segment.ms": "600000"}
    result = admin.alter_configs([ConfigResource("TOPIC", topic_name, {"retention.ms": "soon"})])
    assert result["topic"][topic_name] != "OK"
    assert "retention.ms" in result["topic"][topic_name]
    admin.reset_configs([ConfigResource("TOPIC", topic_name, ["segment.ms"])])
    modified = admin.describe_configs([resource])["topic"][topic_name]
    assert {k: v["value"] for k, v in modified.items()} == {"retention.ms": "7200000"}

    admin.create_partitions({topic_name: 5})
    [described] = admin.describe_topics([topic_name])
    assert [p["partition_index"] for p in described["partitions"]] == [0, 1, 2, 3, 4]
    with pytest.raises(InvalidPartitionsError):
        admin.create_partitions({topic_name: 2})

    result = admin.delete_topics([topic_name])
    assert [(t["name"], t["error_code"]) for t in result["topics"]] == [(topic_name, 0)]
    assert topic_name not in admin.list_topics()
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.delete_topics([topic_name])


@pytest.mark.parametrize("keyed", [True, False], ids=["keys", "no-keys"])
@pytest.mark.parametrize("codec", CODECS, ids=[c or "none" for c in CODECS])
def test_produce_and_consume_every_codec(
    broker: BrokerProcess, admin: KafkaAdminClient, topic_name: str, codec: str | None, keyed: bool
) -> None:
    create_topic(admin, topic_name, 3)
    sent = produce(broker, topic_name, messages(3000, keyed), compression_type=codec)
    assert len({p for p, _, _, _ in sent}) == 3  # spread over every partition
    got = consume_all(broker, topic_name, 3, len(sent))
    assert_same_log(sent, got)
    if keyed:  # one key, one partition
        partitions_of_key: dict[bytes | None, set[int]] = defaultdict(set)
        for partition, _, key, _ in got:
            partitions_of_key[key].add(partition)
        assert len(partitions_of_key) == 13
        assert all(len(ps) == 1 for ps in partitions_of_key.values())
    else:
        assert all(key is None for _, _, key, _ in got)


@pytest.mark.parametrize("acks", [1, "all"])
def test_acks(broker: BrokerProcess, admin: KafkaAdminClient, topic_name: str, acks: int | str) -> None:
    create_topic(admin, topic_name, 1)
    batch = messages(500, keyed=True)
    sent = produce(broker, topic_name, batch, acks=acks, enable_idempotence=acks == "all")
    assert_same_log(sent, consume_all(broker, topic_name, 1, len(batch)))


def test_acks_zero(broker: BrokerProcess, admin: KafkaAdminClient, topic_name: str) -> None:
    create_topic(admin, topic_name, 1)
    batch = messages(500, keyed=True)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks=0, enable_idempotence=False, linger_ms=5
    )
    try:
        for key, value in batch:
            producer.send(topic_name, key=key, value=value)
        producer.flush(30)
        # No answers, so wait for the records to be in before closing the connection: closing at
        # once loses records (a broker bug; see test_kcat's acks=0 test).
        tp = TopicPartition(topic_name, 0)
        consumer = consumer_for(broker)
        deadline = time.monotonic() + 10
        while consumer.end_offsets([tp])[tp] < len(batch) and time.monotonic() < deadline:
            time.sleep(0.02)
        consumer.close()
    finally:
        producer.close(10)
    # kafka-python makes up offsets for acks=0: expect the send order from offset 0.
    sent = [(0, i, key, value) for i, (key, value) in enumerate(batch)]
    assert_same_log(sent, consume_all(broker, topic_name, 1, len(batch)))


def test_idempotent_producer(broker: BrokerProcess, admin: KafkaAdminClient, topic_name: str) -> None:
    create_topic(admin, topic_name, 3)
    batch = [(str(i % 7).encode(), b"%d" % i) for i in range(6000)]
    sent = produce(
        broker,
        topic_name,
        batch,
        enable_idempotence=True,
        acks="all",
        max_in_flight_requests_per_connection=5,
        batch_size=4096,
        compression_type="lz4",
    )
    got = consume_all(broker, topic_name, 3, len(batch))
    assert_same_log(sent, got)
    assert sorted(int(value) for _, _, _, value in got) == list(range(6000))


def test_small_fetch_limits(broker: BrokerProcess, admin: KafkaAdminClient, topic_name: str) -> None:
    """Fetch byte limits far below one batch: the broker still returns a whole first batch (KIP-74)."""
    create_topic(admin, topic_name, 2)
    batch = [(None, b"%d-" % i + b"p" * 300) for i in range(2000)]
    sent = produce(broker, topic_name, batch, batch_size=16384, linger_ms=20, compression_type="gzip")
    got = consume_all(broker, topic_name, 2, len(batch), max_partition_fetch_bytes=100, fetch_max_bytes=200)
    assert_same_log(sent, got)


def test_large_records(broker: BrokerProcess, admin: KafkaAdminClient, topic_name: str) -> None:
    """Up to max.message.bytes goes through; a larger batch is refused with MESSAGE_TOO_LARGE."""
    create_topic(admin, topic_name, 1)
    # Not idempotent: kafka-python treats the refusal as fatal for an idempotent producer.
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, max_request_size=3_000_000, linger_ms=0, enable_idempotence=False
    )
    try:
        big = bytes(range(256)) * 3500  # 896,000 bytes: under the 1,048,588 default
        assert producer.send(topic_name, value=big, partition=0).get(10).offset == 0
        with pytest.raises(MessageSizeTooLargeError):  # refused by the broker, not the client
            producer.send(topic_name, value=b"x" * 1_500_000, partition=0).get(10)
        assert producer.send(topic_name, value=b"after", partition=0).get(10).offset == 1
    finally:
        producer.close(10)
    got = consume_all(broker, topic_name, 1, 2)
    assert got == [(0, 0, None, big), (0, 1, None, b"after")]


def test_headers_and_timestamps_round_trip(
    broker: BrokerProcess, admin: KafkaAdminClient, topic_name: str
) -> None:
    create_topic(admin, topic_name, 1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    base = 1_600_000_000_000
    futures = [
        producer.send(
            topic_name,
            value=b"v%d" % i if i != 3 else None,
            key=b"k%d" % i,
            headers=[("h", b"%d" % i), ("empty", b""), ("dup", b"a"), ("dup", b"b")],
            timestamp_ms=base + i,
        )
        for i in range(10)
    ]
    producer.flush(10)
    assert [f.get(10).offset for f in futures] == list(range(10))
    producer.close(10)
    consumer = consumer_for(broker, isolation_level="read_committed")
    consumer.assign([TopicPartition(topic_name, 0)])
    records: list[Any] = []
    deadline = time.monotonic() + 20
    while len(records) < 10 and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            records += batch
    consumer.close()
    assert [r.offset for r in records] == list(range(10))
    assert [r.value for r in records] == [b"v%d" % i if i != 3 else None for i in range(10)]
    assert [r.key for r in records] == [b"k%d" % i for i in range(10)]
    assert [r.timestamp for r in records] == [base + i for i in range(10)]
    assert {r.timestamp_type for r in records} == {0}  # CreateTime
    assert [list(r.headers) for r in records] == [
        [("h", b"%d" % i), ("empty", b""), ("dup", b"a"), ("dup", b"b")] for i in range(10)
    ]


def test_offsets_for_times_and_watermarks(
    broker: BrokerProcess, admin: KafkaAdminClient, topic_name: str
) -> None:
    create_topic(admin, topic_name, 3)
    base = 1_700_000_000_000
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    for i in range(10):
        producer.send(topic_name, value=b"%d" % i, partition=0, timestamp_ms=base + i * 1000)
        producer.flush(10)  # one batch per record: the lookup must find records, not batches
    producer.close(10)
    # Partition 1: one batch of ten records, timestamps rising inside it. Partition 2: one batch
    # whose largest timestamp is on its second record.
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=200, batch_size=65536)
    for i in range(10):
        producer.send(topic_name, value=b"%d" % i, partition=1, timestamp_ms=base + i * 1000)
    for i, delta in enumerate([5000, 9000, 1000, 2000]):
        producer.send(topic_name, value=b"%d" % i, partition=2, timestamp_ms=base + delta)
    producer.flush(10)
    producer.close(10)
    consumer = consumer_for(broker)
    tp0, tp1, tp2 = (TopicPartition(topic_name, p) for p in range(3))
    try:
        for tp in (tp0, tp1):
            found = consumer.offsets_for_times({tp: base + 4500})[tp]
            assert (found.offset, found.timestamp) == (5, base + 5000)
            found = consumer.offsets_for_times({tp: base + 3000})[tp]
            assert (found.offset, found.timestamp) == (3, base + 3000)
            found = consumer.offsets_for_times({tp: 0})[tp]
            assert (found.offset, found.timestamp) == (0, base)
            assert consumer.offsets_for_times({tp: base + 99_000})[tp] is None  # after the last record
        # The first record at or after the time, even if later ones are older.
        found = consumer.offsets_for_times({tp2: base + 1500})[tp2]
        assert (found.offset, found.timestamp) == (0, base + 5000)
        found = consumer.offsets_for_times({tp2: base + 6000})[tp2]
        assert (found.offset, found.timestamp) == (1, base + 9000)
        assert consumer.beginning_offsets([tp0, tp1, tp2]) == {tp0: 0, tp1: 0, tp2: 0}
        assert consumer.end_offsets([tp0, tp1, tp2]) == {tp0: 10, tp1: 10, tp2: 4}
        # Seek by time, then read from there.
        consumer.assign([tp0])
        consumer.seek(tp0, consumer.offsets_for_times({tp0: base + 7000})[tp0].offset)
        records: list[Any] = []
        deadline = time.monotonic() + 20
        while len(records) < 3 and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records += batch
        assert [(r.offset, r.value) for r in records] == [(7, b"7"), (8, b"8"), (9, b"9")]
    finally:
        consumer.close()

    # The admin client's ListOffsets, with the newer specs (KIP-734 max timestamp).
    found = admin.list_partition_offsets(
        {tp0: OffsetSpec.EARLIEST, tp1: OffsetSpec.LATEST, tp2: OffsetSpec.MAX_TIMESTAMP}
    )
    assert (found[tp0].offset, found[tp1].offset) == (0, 10)
    assert (found[tp2].offset, found[tp2].timestamp) == (1, base + 9000)
    found = admin.list_partition_offsets({tp0: OffsetSpec.MAX_TIMESTAMP, tp1: OffsetTimestamp(base + 8500)})
    assert (found[tp0].offset, found[tp0].timestamp) == (9, base + 9000)
    assert (found[tp1].offset, found[tp1].timestamp) == (9, base + 9000)


def test_delete_records(broker: BrokerProcess, admin: KafkaAdminClient, topic_name: str) -> None:
    create_topic(admin, topic_name, 2)
    for partition in (0, 1):
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        for i in range(50):
            producer.send(topic_name, value=b"%d" % i, partition=partition)
        producer.close(10)
    tp0, tp1 = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)
    result = admin.delete_records({tp0: 20, tp1: -1})  # -1: up to the high watermark
    assert result[tp0]["low_watermark"] == 20
    assert result[tp1]["low_watermark"] == 50
    with pytest.raises(Exception, match=r"OffsetOutOfRange"):
        admin.delete_records({tp0: 51})
    consumer = consumer_for(broker)
    try:
        assert consumer.beginning_offsets([tp0, tp1]) == {tp0: 20, tp1: 50}
        assert consumer.end_offsets([tp0, tp1]) == {tp0: 50, tp1: 50}
        consumer.assign([tp0])
        consumer.seek(tp0, 5)  # below the log start: out of range, reset to the earliest
        records: list[Any] = []
        deadline = time.monotonic() + 20
        while len(records) < 30 and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records += batch
        assert [(r.offset, int(r.value)) for r in records] == [(i, i) for i in range(20, 50)]
    finally:
        consumer.close()
