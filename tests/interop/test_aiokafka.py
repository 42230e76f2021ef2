"""aiokafka (old, non-flexible protocol versions) against a real broker process over TCP."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import InvalidPartitionsError, OffsetOutOfRangeError

from eventyard.testing import BrokerProcess

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]

# (partition, offset, key, value): one record as sent (from its metadata) or as read back.
Record = tuple[int, int, bytes | None, bytes | None]
T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout)

    return asyncio.run(bounded())


async def with_admin(broker: BrokerProcess, action: Callable[[AIOKafkaAdminClient], Awaitable[T]]) -> T:
    client = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    await client.start()
    try:
        return await action(client)
    finally:
        await client.close()


def create_topic(
    broker: BrokerProcess, name: str, partitions: int = 3, configs: dict[str, str] | None = None
) -> None:
    async def create(client: AIOKafkaAdminClient) -> Any:
        return await client.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])

    response = run(lambda: with_admin(broker, create))
    assert [(t[0], t[1]) for t in response.topic_errors] == [(name, 0)]


def consumer_for(broker: BrokerProcess, **conf: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        request_timeout_ms=10_000,
        **conf,
    )


async def consume_all(
    broker: BrokerProcess, topic: str, partitions: int, expected: int, timeout: float = 30, **conf: Any
) -> list[Any]:
    """Read from the start of every partition until `expected` records arrived (or the deadline)."""
    consumer = consumer_for(broker, **conf)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                out += records
        for records in (await consumer.getmany(timeout_ms=100)).values():  # nothing more than expected
            out += records
        return out
    finally:
        await consumer.stop()


async def wait_for_end_offset(
    broker: BrokerProcess, tp: TopicPartition, offset: int, timeout: float = 10
) -> None:
    consumer = consumer_for(broker)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while (await consumer.end_offsets([tp]))[tp] < offset and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        await consumer.stop()


async def eventually(
    call: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout: float = 15.0
) -> bool:
    """Whether `check(await call())` comes true within `timeout`."""
    deadline = time.monotonic() + timeout
    while not check(await call()):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


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


def as_records(consumed: list[Any]) -> list[Record]:
    return [(r.partition, r.offset, r.key, r.value) for r in consumed]


@pytest.mark.parametrize("codec", CODECS, ids=[c or "none" for c in CODECS])
def test_produce_and_consume_every_codec(broker: BrokerProcess, topic_name: str, codec: str | None) -> None:
    create_topic(broker, topic_name, 3)

    async def main() -> tuple[list[Record], list[Record]]:
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap,
            compression_type=codec,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
        )
        await producer.start()
        sent: list[Record] = []
        try:
            # One at a time, waiting for each.
            for i in range(30):
                key, value = b"one-%d" % (i % 4), b"single-%d" % i
                md = await producer.send_and_wait(topic_name, value, key=key)
                sent.append((md.partition, md.offset, key, value))
            # Many in flight, keyed.
            pending = []
            for i in range(2000):
                key, value = f"key-{i % 11}".encode(), f"value-{i}-".encode() + b"y" * (i % 37)
                pending.append((key, value, await producer.send(topic_name, value, key=key)))
            for key, value, future in pending:
                md = await future
                sent.append((md.partition, md.offset, key, value))
            # Whole batches built by hand, one per partition.
            for partition in range(3):
                batch = producer.create_batch()
                values = [b"batch-%d-%d" % (partition, i) for i in range(40)]
                for value in values:
                    assert batch.append(key=None, value=value, timestamp=None) is not None
                batch.close()
                md = await (await producer.send_batch(batch, topic_name, partition=partition))
                sent += [(partition, md.offset + i, None, value) for i, value in enumerate(values)]
        finally:
            await producer.stop()
        return sent, as_records(await consume_all(broker, topic_name, 3, len(sent)))

    sent, got = run(main)
    assert len(sent) == 30 + 2000 + 3 * 40
    assert_same_log(sent, got)
    partitions_of_key: dict[bytes | None, set[int]] = defaultdict(set)
    for partition, _, key, _ in got:
        if key is not None:
            partitions_of_key[key].add(partition)
    assert len(partitions_of_key) == 4 + 11
    assert all(len(ps) == 1 for ps in partitions_of_key.values())


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_acks(broker: BrokerProcess, topic_name: str, acks: int | str) -> None:
    create_topic(broker, topic_name, 1)
    values = [b"acks-%d" % i for i in range(300)]

    async def main() -> list[Record]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks=acks, linger_ms=2)
        await producer.start()
        try:
            futures = [await producer.send(topic_name, value, partition=0) for value in values]
            results = [await f for f in futures]
            if acks == 0:
                # No answers, so wait for the records to be in before closing the connection:
                # closing at once loses records (a broker bug; see test_kcat's acks=0 test).
                await wait_for_end_offset(broker, TopicPartition(topic_name, 0), len(values))
        finally:
            await producer.stop()
        if acks == 0:  # no answer, no metadata
            assert results == [None] * len(values)
        else:
            assert [md.offset for md in results] == list(range(len(values)))
        return as_records(await consume_all(broker, topic_name, 1, len(values)))

    got = run(main)
    assert got == [(0, i, None, value) for i, value in enumerate(values)]


def test_headers_and_timestamps(broker: BrokerProcess, topic_name: str) -> None:
    create_topic(broker, topic_name, 1)
    base = 1_650_000_000_000

    async def main() -> list[Any]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=2)
        await producer.start()
        try:
            for i in range(10):
                await producer.send(
                    topic_name,
                    None if i == 4 else b"v%d" % i,
                    key=b"k%d" % i,
                    partition=0,
                    timestamp_ms=base + i,
                    headers=[("n", b"%d" % i), ("empty", b"")],
                )
            await producer.flush()
        finally:
            await producer.stop()
        return await consume_all(broker, topic_name, 1, 10, isolation_level="read_committed")

    got = run(main)
    assert [r.offset for r in got] == list(range(10))
    assert [r.value for r in got] == [None if i == 4 else b"v%d" % i for i in range(10)]
    assert [r.key for r in got] == [b"k%d" % i for i in range(10)]
    assert [r.timestamp for r in got] == [base + i for i in range(10)]
    assert [list(r.headers) for r in got] == [[("n", b"%d" % i), ("empty", b"")] for i in range(10)]


def test_offsets_for_times_and_watermarks(broker: BrokerProcess, topic_name: str) -> None:
    create_topic(broker, topic_name, 2)
    base = 1_700_000_000_000

    async def main() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
        await producer.start()
        try:
            for i in range(10):  # partition 0: one batch per record
                await producer.send_and_wait(topic_name, b"%d" % i, partition=0, timestamp_ms=base + i * 1000)
            batch = producer.create_batch()  # partition 1: one batch of ten records
            for i in range(10):
                batch.append(key=None, value=b"%d" % i, timestamp=base + i * 1000)
            batch.close()
            await (await producer.send_batch(batch, topic_name, partition=1))
        finally:
            await producer.stop()
        consumer = consumer_for(broker)
        await consumer.start()
        tp0, tp1 = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)
        try:
            for tp in (tp0, tp1):
                found = (await consumer.offsets_for_times({tp: base + 4500}))[tp]
                assert (found.offset, found.timestamp) == (5, base + 5000)
                found = (await consumer.offsets_for_times({tp: base + 3000}))[tp]
                assert (found.offset, found.timestamp) == (3, base + 3000)
                found = (await consumer.offsets_for_times({tp: 0}))[tp]
                assert (found.offset, found.timestamp) == (0, base)
                assert (await consumer.offsets_for_times({tp: base + 99_000}))[tp] is None
            assert await consumer.beginning_offsets([tp0, tp1]) == {tp0: 0, tp1: 0}
            assert await consumer.end_offsets([tp0, tp1]) == {tp0: 10, tp1: 10}
            consumer.assign([tp1])
            consumer.seek(tp1, (await consumer.offsets_for_times({tp1: base + 7000}))[tp1].offset)
            records: list[Any] = []
            deadline = time.monotonic() + 20
            while len(records) < 3 and time.monotonic() < deadline:
                for batch_records in (await consumer.getmany(timeout_ms=200)).values():
                    records += batch_records
            assert [(r.offset, r.value) for r in records] == [(7, b"7"), (8, b"8"), (9, b"9")]
        finally:
            await consumer.stop()

    run(main)


def test_admin_client(broker: BrokerProcess, topic_name: str) -> None:
    async def main(client: AIOKafkaAdminClient) -> None:
        response = await client.create_topics(
            [NewTopic(topic_name, 3, 1, topic_configs={"retention.ms": "3600000"})]
        )
        assert [(t[0], t[1]) for t in response.topic_errors] == [(topic_name, 0)]
        response = await client.create_topics([NewTopic(topic_name, 3, 1)])
        assert [(t[0], t[1]) for t in response.topic_errors] == [(topic_name, 36)]  # TOPIC_ALREADY_EXISTS
        # Kafka answers CreateTopics once its controller has the topic; brokers learn of it just after.
        assert await eventually(lambda: client.list_topics(), lambda topics: topic_name in topics)
        [described] = await client.describe_topics([topic_name])
        assert (described["topic"], described["error_code"]) == (topic_name, 0)
        assert [(p["partition"], p["leader"], p["replicas"]) for p in described["partitions"]] == [
            (0, 1, [1]),
            (1, 1, [1]),
            (2, 1, [1]),
        ]

        async def configs(*keys: str) -> dict[str, tuple[str, int]]:
            resource = ConfigResource(ConfigResourceType.TOPIC, topic_name, dict.fromkeys(keys) or None)
            [response] = await client.describe_configs([resource])
            [result] = response.resources
            assert (result[0], result[2], result[3]) == (0, 2, topic_name)
            return {entry[0]: (entry[1], entry[3]) for entry in result[4]}  # name: (value, source)

        everything = await configs()
        assert everything["retention.ms"] == ("3600000", 1)  # DYNAMIC_TOPIC_CONFIG
        assert everything["cleanup.policy"] == ("delete", 5)  # DEFAULT_CONFIG
        assert await configs("retention.ms", "segment.ms") == {
            "retention.ms": ("3600000", 1),
            "segment.ms": ("604800000", 5),
        }
        # Legacy AlterConfigs: the new set replaces the old one.
        resource = ConfigResource(ConfigResourceType.TOPIC, topic_name, {"segment.ms": "600000"})
        [response] = await client.alter_configs([resource])
        assert [(r[0], r[2], r[3]) for r in response.resources] == [(0, 2, topic_name)]
        after = await configs("retention.ms", "segment.ms")
        assert after == {"retention.ms": ("604800000", 5), "segment.ms": ("600000", 1)}
        bad = ConfigResource(ConfigResourceType.TOPIC, topic_name, {"segment.ms": "often"})
        [response] = await client.alter_configs([bad])
        assert [r[0] for r in response.resources] == [40]  # INVALID_CONFIG
        assert await configs("segment.ms") == {"segment.ms": ("600000", 1)}

        await client.create_partitions({topic_name: NewPartitions(5)})
        [described] = await client.describe_topics([topic_name])
        assert [p["partition"] for p in described["partitions"]] == [0, 1, 2, 3, 4]
        with pytest.raises(InvalidPartitionsError):
            await client.create_partitions({topic_name: NewPartitions(4)})

        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=2)
        await producer.start()
        try:
            for i in range(30):
                await producer.send(topic_name, b"%d" % i, partition=4)
            await producer.flush()
        finally:
            await producer.stop()
        tp = TopicPartition(topic_name, 4)
        assert await client.delete_records({tp: RecordsToDelete(12)}) == {tp: 12}
        with pytest.raises(OffsetOutOfRangeError):
            await client.delete_records({tp: RecordsToDelete(31)})
        got = await consume_all(broker, topic_name, 5, 18)
        assert [(r.partition, r.offset, r.value) for r in got] == [(4, i, b"%d" % i) for i in range(12, 30)]

        response = await client.delete_topics([topic_name])
        assert [(t[0], t[1]) for t in response.topic_error_codes] == [(topic_name, 0)]
        assert await eventually(lambda: client.list_topics(), lambda topics: topic_name not in topics)
        response = await client.delete_topics([topic_name])
        assert [(t[0], t[1]) for t in response.topic_error_codes] == [(topic_name, 3)]  # UNKNOWN_TOPIC

    run(lambda: with_admin(broker, main))
