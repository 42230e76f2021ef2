"""Classic consumer groups with kafka-python and aiokafka against a real broker process over TCP.

The core scenario for each client: two consumers of one group share a topic, every record is
processed exactly once (explicit commits after each batch), then the group is restarted and
resumes from its committed offsets: it reads exactly the records produced since.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AIOTopicPartition
from aiokafka.abc import ConsumerRebalanceListener as AIOListener
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from kafka.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    InconsistentGroupProtocolError,
    NotCoordinatorError,
)
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment, ConsumerProtocolSubscription

from eventyard.testing import BrokerProcess

# (partition, offset): where a record was acknowledged or read.
Position = tuple[int, int]

PARTITIONS = 4
GROUP_SETTINGS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 500,
    "fetch_max_wait_ms": 100,
    "request_timeout_ms": 10_000,
}


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Ownership:
    """Assignment changes reported by the members' rebalance listeners, in the order they happened:
    a partition must never be given to one member while another still owns it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owned: dict[str, set[int]] = defaultdict(set)
        self.violations: list[str] = []

    def assigned(self, member: str, partitions: set[int]) -> None:
        with self.lock:
            for other, owned in self.owned.items():
                if other != member and partitions & owned:
                    self.violations.append(f"{member} given {sorted(partitions & owned)} owned by {other}")
            self.owned[member] |= partitions

    def revoked(self, member: str, partitions: set[int]) -> None:
        with self.lock:
            self.owned[member] -= partitions

    def balanced(self, members: list[str], partitions: int) -> bool:
        with self.lock:
            owned = [self.owned[m] for m in members]
        share = partitions // len(members)
        return all(len(o) == share for o in owned) and set().union(*owned) == set(range(partitions))


def assert_exactly_once(consumed: list[Position], produced: list[Position]) -> None:
    counts = Counter(consumed)
    missing, unexpected = sorted(set(produced) - set(counts)), sorted(set(counts) - set(produced))
    assert (missing[:10], unexpected[:10]) == ([], [])
    assert [pos for pos, n in counts.items() if n > 1] == []


# ---------------------------------------------------------------------------------------------
# kafka-python


def kp_create_topic(broker: BrokerProcess, name: str, partitions: int) -> None:
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    try:
        client.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}})
    finally:
        client.close()


def kp_produce(broker: BrokerProcess, topic: str, count: int, partitions: int = PARTITIONS) -> list[Position]:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    try:
        futures = [producer.send(topic, value=b"%d" % i, partition=i % partitions) for i in range(count)]
        producer.flush(timeout=30)
        return [(m.partition, m.offset) for m in (f.get(timeout=10) for f in futures)]
    finally:
        producer.close(timeout=10)


class KafkaPythonMember(threading.Thread):
    """A kafka-python consumer on a thread of its own: poll, process, commit, until stopped."""

    def __init__(
        self, name: str, broker: BrokerProcess, group: str, topic: str, ownership: Ownership
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.broker, self.group, self.topic, self.ownership = broker, group, topic, ownership
        self.consumed: list[Position] = []
        self.errors: list[BaseException] = []
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        member = self.name
        ownership = self.ownership

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: list[KTopicPartition]) -> None:
                ownership.revoked(member, {tp.partition for tp in revoked})

            def on_partitions_assigned(self, assigned: list[KTopicPartition]) -> None:
                ownership.assigned(member, {tp.partition for tp in assigned})

        try:
            consumer = KafkaConsumer(
                bootstrap_servers=self.broker.bootstrap,
                group_id=self.group,
                client_id=member,
                **GROUP_SETTINGS,
            )
        except BaseException as e:
            self.errors.append(e)
            return
        try:
            consumer.subscribe([self.topic], listener=Listener())
            # Load the topic's metadata now that the consumer subscribes to it, before it joins.
            # Otherwise a leader assigns from an empty metadata snapshot, rejoins when the metadata
            # arrives, and kafka-python 3.0.12 can drop that rejoin: if a poll() times out while
            # it is in flight, need_rejoin() turns False once the leader has assigned, the join
            # task's result is never awaited, and the member never gets its partitions nor
            # heartbeats again (the broker answered it correctly and then expires it).
            assert consumer.partitions_for_topic(self.topic) == set(range(PARTITIONS))
            while not self.halt.is_set():
                batches = consumer.poll(timeout_ms=200)
                batch = [(r.partition, r.offset) for records in batches.values() for r in records]
                if batch:
                    with self.lock:
                        self.consumed += batch
                    consumer.commit()  # the positions of what was just processed
        except BaseException as e:
            self.errors.append(e)
        finally:
            consumer.close()

    def snapshot(self) -> list[Position]:
        with self.lock:
            return list(self.consumed)

    def stop(self) -> None:
        self.halt.set()
        self.join(20)
        assert not self.is_alive()


def kp_run_group(
    broker: BrokerProcess, group: str, topic: str, produce: Callable[[], list[Position]]
) -> tuple[list[Position], list[Position], Ownership]:
    """Two members; once they share the partitions, produce; stop when everything was read."""
    ownership = Ownership()
    members = [KafkaPythonMember(f"kp-{i}", broker, group, topic, ownership) for i in range(2)]
    for m in members:
        m.start()
    try:
        wait_for(
            lambda: ownership.balanced(["kp-0", "kp-1"], PARTITIONS), 30, "two members sharing the topic"
        )
        produced = produce()
        wait_for(
            lambda: (
                {pos for m in members for pos in m.snapshot()} >= set(produced)
                or any(m.errors for m in members)
            ),
            30,
            "every record",
        )
        time.sleep(0.5)  # anything read twice would show up now
    finally:
        for m in members:
            m.stop()
    assert [m.errors for m in members] == [[], []]
    assert all(m.snapshot() for m in members)  # both took part
    return produced, [pos for m in members for pos in m.snapshot()], ownership


def kp_committed(broker: BrokerProcess, group: str, topic: str, timeout: float = 30) -> dict[int, int]:
    """A restarted Kafka answers NOT_COORDINATOR (or COORDINATOR_LOAD_IN_PROGRESS) while it loads its
    committed offsets: ask again until it answers."""
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                offsets = client.list_group_offsets({group: None})[group]
                break
            except (NotCoordinatorError, CoordinatorLoadInProgressError, CoordinatorNotAvailableError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        client.close()
    return {tp.partition: o.offset for tp, o in offsets.items() if tp.topic == topic}


def test_kafka_python_group_shares_and_resumes(fresh_broker: BrokerProcess, topic_name: str) -> None:
    kp_create_topic(fresh_broker, topic_name, PARTITIONS)
    group = f"g-{topic_name}"
    first, consumed, ownership = kp_run_group(
        fresh_broker, group, topic_name, lambda: kp_produce(fresh_broker, topic_name, 400)
    )
    assert_exactly_once(consumed, first)
    assert ownership.violations == []
    assert kp_committed(fresh_broker, group, topic_name) == {p: 100 for p in range(PARTITIONS)}

    # The group restarts (new members, new member ids): it resumes where it committed.
    fresh_broker.restart(kill=True)
    assert kp_committed(fresh_broker, group, topic_name) == {p: 100 for p in range(PARTITIONS)}
    second, consumed, ownership = kp_run_group(
        fresh_broker, group, topic_name, lambda: kp_produce(fresh_broker, topic_name, 200)
    )
    assert all(o >= 100 for _, o in second)
    assert_exactly_once(consumed, second)
    assert ownership.violations == []
    assert kp_committed(fresh_broker, group, topic_name) == {p: 150 for p in range(PARTITIONS)}


class RelayCheckingAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """An assignor no broker knows: the broker must pass its bytes along without reading them."""

    name = "eventyard-test-relay"
    SUBSCRIPTION_DATA = b"subscription \x00\xff\x01 bytes"
    ASSIGNMENT_DATA = b"assignment \xfe\x00 bytes"

    def __init__(self) -> None:
        self.seen_subscriptions: list[bytes | None] = []
        self.received: list[tuple[list[tuple[str, list[int]]], bytes | None]] = []

    def metadata(self, topics: set[str]) -> ConsumerProtocolSubscription:
        return ConsumerProtocolSubscription(0, sorted(topics), self.SUBSCRIPTION_DATA)

    def assign(self, cluster: Any, members: list[Any]) -> dict[str, ConsumerProtocolAssignment]:
        assignment = {}
        for member in members:
            self.seen_subscriptions.append(member.metadata.user_data)
            topics = [
                (t, sorted(cluster.partitions_for_topic(t) or [])) for t in sorted(member.metadata.topics)
            ]
            # Everything to every member: only a custom assignor would do that.
            assignment[member.member_id] = ConsumerProtocolAssignment(0, topics, self.ASSIGNMENT_DATA)
        return assignment

    def on_assignment(self, assignment: ConsumerProtocolAssignment, generation: int) -> None:
        topics = [(t, sorted(ps)) for t, ps in assignment.assigned_partitions]
        self.received.append((topics, assignment.user_data))


def test_kafka_python_custom_assignor_relayed_and_mixed_protocols_refused(
    broker: BrokerProcess, topic_name: str
) -> None:
    kp_create_topic(broker, topic_name, 3)
    group = f"g-{topic_name}"
    produced = kp_produce(broker, topic_name, 30, 3)
    assignor = RelayCheckingAssignor()
    custom = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        partition_assignment_strategy=[assignor],
        **GROUP_SETTINGS,
    )
    custom.subscribe([topic_name])
    assert custom.partitions_for_topic(topic_name) == {0, 1, 2}  # see KafkaPythonMember.run
    try:
        got: list[Position] = []
        deadline = time.monotonic() + 20
        while len(got) < len(produced) and time.monotonic() < deadline:
            got += [(r.partition, r.offset) for rs in custom.poll(timeout_ms=100).values() for r in rs]
        custom.commit()
        assert sorted(got) == sorted(produced)
        assert assignor.seen_subscriptions == [RelayCheckingAssignor.SUBSCRIPTION_DATA]
        assert assignor.received == [([(topic_name, [0, 1, 2])], RelayCheckingAssignor.ASSIGNMENT_DATA)]

        client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
        try:
            description = client.describe_groups([group])[group]
        finally:
            client.close()
        assert (description["group_state"], description["protocol_data"]) == (
            "Stable",
            RelayCheckingAssignor.name,
        )

        # A member that only speaks "range"/"roundrobin" cannot join a group that speaks neither.
        plain = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, **GROUP_SETTINGS)
        plain.subscribe([topic_name])
        try:
            with pytest.raises(InconsistentGroupProtocolError):
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    plain.poll(timeout_ms=100)
        finally:
            plain.close()
        # ... and the group it was refused from carries on undisturbed.
        for _ in range(10):
            custom.poll(timeout_ms=100)
        assert len(assignor.received) == 1
        assert {tp.partition for tp in custom.assignment()} == {0, 1, 2}
    finally:
        custom.close()


# ---------------------------------------------------------------------------------------------
# aiokafka


async def aio_produce(broker: BrokerProcess, topic: str, count: int) -> list[Position]:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=b"%d" % i, partition=i % PARTITIONS) for i in range(count)
        ]
        return [(m.partition, m.offset) for m in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


class AIOMember:
    def __init__(
        self, name: str, broker: BrokerProcess, group: str, topic: str, ownership: Ownership
    ) -> None:
        self.name, self.broker, self.group, self.topic, self.ownership = name, broker, group, topic, ownership
        self.consumed: list[Position] = []
        self.halt = asyncio.Event()

    async def run(self) -> None:
        member, ownership = self.name, self.ownership

        class Listener(AIOListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: set[AIOTopicPartition]) -> None:
                ownership.revoked(member, {tp.partition for tp in revoked})

            async def on_partitions_assigned(self, assigned: set[AIOTopicPartition]) -> None:
                ownership.assigned(member, {tp.partition for tp in assigned})

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.broker.bootstrap, group_id=self.group, client_id=member, **GROUP_SETTINGS
        )
        consumer.subscribe([self.topic], listener=Listener())
        await consumer.start()
        try:
            while not self.halt.is_set():
                batches = await consumer.getmany(timeout_ms=50)
                batch = [(r.partition, r.offset) for records in batches.values() for r in records]
                if batch:
                    self.consumed += batch
                    await consumer.commit()
        finally:
            await consumer.stop()


async def aio_run_group(
    broker: BrokerProcess, group: str, topic: str, count: int
) -> tuple[list[Position], list[Position], Ownership]:
    ownership = Ownership()
    members = [AIOMember(f"aio-{i}", broker, group, topic, ownership) for i in range(2)]
    tasks = [asyncio.create_task(m.run()) for m in members]

    async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            failed = [t for t in tasks if t.done()]
            if failed:
                failed[0].result()
                raise AssertionError("a consumer stopped")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.02)

    try:
        await until(lambda: ownership.balanced(["aio-0", "aio-1"], PARTITIONS), 30, "two members sharing")
        produced = await aio_produce(broker, topic, count)
        await until(lambda: {p for m in members for p in m.consumed} >= set(produced), 30, "every record")
        await asyncio.sleep(0.5)
    finally:
        for m in members:
            m.halt.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert all(m.consumed for m in members)
    return produced, [p for m in members for p in m.consumed], ownership


async def aio_committed(broker: BrokerProcess, group: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        out = {}
        for p in range(PARTITIONS):
            offset = await consumer.committed(AIOTopicPartition(topic, p))
            if offset is not None:
                out[p] = offset
        return out
    finally:
        await consumer.stop()


def test_aiokafka_group_shares_and_resumes(fresh_broker: BrokerProcess, topic_name: str) -> None:
    kp_create_topic(fresh_broker, topic_name, PARTITIONS)
    group = f"g-{topic_name}"

    async def before_restart() -> None:
        first, consumed, ownership = await aio_run_group(fresh_broker, group, topic_name, 400)
        assert_exactly_once(consumed, first)
        assert ownership.violations == []
        assert await aio_committed(fresh_broker, group, topic_name) == {p: 100 for p in range(PARTITIONS)}

    async def after_restart() -> None:
        # A restarted Kafka loads its committed offsets in the background (aiokafka's committed() is
        # empty meanwhile): poll. Eventyard has them as soon as it listens.
        deadline = time.monotonic() + 30
        while (
            committed := await aio_committed(fresh_broker, group, topic_name)
        ) == {} and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert committed == {p: 100 for p in range(PARTITIONS)}
        second, consumed, ownership = await aio_run_group(fresh_broker, group, topic_name, 200)
        assert all(o >= 100 for _, o in second)
        assert_exactly_once(consumed, second)
        assert ownership.violations == []
        assert await aio_committed(fresh_broker, group, topic_name) == {p: 150 for p in range(PARTITIONS)}

    asyncio.run(asyncio.wait_for(before_restart(), 90))
    fresh_broker.restart(kill=True)
    asyncio.run(asyncio.wait_for(after_restart(), 90))


def test_ownership_check_catches_double_assignment() -> None:
    """The bookkeeping the tests above rely on does fail when two members own one partition."""
    ownership = Ownership()
    ownership.assigned("a", {0, 1})
    ownership.assigned("b", {2, 3})
    assert ownership.balanced(["a", "b"], 4) and ownership.violations == []
    ownership.revoked("a", {1})
    ownership.assigned("b", {1})
    assert ownership.violations == []
    ownership.assigned("a", {2})
    assert ownership.violations == ["a given [2] owned by b"]
    with pytest.raises(AssertionError):
        assert_exactly_once([(0, 0), (0, 0)], [(0, 0)])
    with pytest.raises(AssertionError):
        assert_exactly_once([(0, 0)], [(0, 0), (0, 1)])
