"""The KIP-848 consumer group protocol (ConsumerGroupHeartbeat) with librdkafka's
group.protocol=consumer: server-side assignment, no global barrier."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.consumer_group_heartbeat_request import ConsumerGroupHeartbeatRequest
from eventyard.protocol.messages.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from eventyard.testing import BrokerProcess
from eventyard.wire_client import WireClient

PARTITIONS = 6
PER_PARTITION = 50


def consumer(broker: BrokerProcess, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )


def setup_topic(broker: BrokerProcess, topic: str) -> AdminClient:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(PARTITIONS * PER_PARTITION):
        producer.produce(topic, b"%d" % i, partition=i % PARTITIONS)
    assert producer.flush(10) == 0
    return admin


def partitions_of(c: Consumer) -> set[int]:
    return {tp.partition for tp in c.assignment()}


def test_server_side_assignment_with_two_members(broker: BrokerProcess, topic_name: str) -> None:
    admin = setup_topic(broker, topic_name)
    group = f"kip848-{topic_name}"
    first = consumer(broker, group)
    start = time.monotonic()
    first.subscribe([topic_name])
    message = None
    while message is None or message.error():
        message = first.poll(0.1)
        assert time.monotonic() - start < 5, "no first record within 5 s"
    print(f"KIP-848 subscribe to first record: {(time.monotonic() - start) * 1000:.0f} ms")
    second = consumer(broker, group)
    second.subscribe([topic_name])
    seen: dict[tuple[int, int], str] = {(message.partition(), message.offset()): "first"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for name, c in (("first", first), ("second", second)):
            for m in c.consume(100, 0.05):
                assert m.error() is None, m.error()
                seen.setdefault((m.partition(), m.offset()), name)
            # No partition is ever owned by both members at once.
            assert not partitions_of(first) & partitions_of(second)
        if len(seen) == PARTITIONS * PER_PARTITION and len(partitions_of(second)) == PARTITIONS // 2:
            break
    assert set(seen) == {(p, o) for p in range(PARTITIONS) for o in range(PER_PARTITION)}
    assert len(partitions_of(first)) == len(partitions_of(second)) == PARTITIONS // 2
    for c in (first, second):  # each member commits the partitions it owns now
        c.commit(
            offsets=[TopicPartition(topic_name, p, PER_PARTITION) for p in partitions_of(c)],
            asynchronous=False,
        )
    committed = first.committed([TopicPartition(topic_name, p) for p in range(PARTITIONS)], timeout=10)
    assert [tp.offset for tp in committed] == [PER_PARTITION] * PARTITIONS

    description = admin.describe_consumer_groups([group])[group].result(10)
    assert description.state == ConsumerGroupState.STABLE
    assert sorted(len(m.assignment.topic_partitions) for m in description.members) == [3, 3]

    # One member leaves: the other gets every partition, without a global barrier.
    second.close()
    deadline = time.monotonic() + 20
    while len(partitions_of(first)) < PARTITIONS and time.monotonic() < deadline:
        first.poll(0.1)
    assert partitions_of(first) == set(range(PARTITIONS))
    first.close()

    listed = {g.group_id: g.state for g in admin.list_consumer_groups().result(10).valid}
    assert listed[group] == ConsumerGroupState.EMPTY
    admin.delete_consumer_groups([group])[group].result(10)
    assert group not in {g.group_id for g in admin.list_consumer_groups().result(10).valid}


def test_commit_with_a_stale_member_epoch_is_refused(broker: BrokerProcess, topic_name: str) -> None:
    setup_topic(broker, topic_name)
    with WireClient(broker.host, broker.port) as c:
        joined = c.request(
            ConsumerGroupHeartbeatRequest(
                group_id=f"raw-{topic_name}",
                member_id="member-1",
                member_epoch=0,
                rebalance_timeout_ms=30000,
                subscribed_topic_names=[topic_name],
                topic_partitions=[],
            ),
            1,
        )
        assert joined.error_code == ErrorCode.NONE and joined.member_epoch > 0
        assert sum(len(tp.partitions) for tp in joined.assignment.topic_partitions) == PARTITIONS

        def commit(epoch: int) -> int:
            request = OffsetCommitRequest(
                group_id=f"raw-{topic_name}",
                generation_id_or_member_epoch=epoch,
                member_id="member-1",
                topics=[
                    OffsetCommitRequestTopic(
                        name=topic_name,
                        partitions=[OffsetCommitRequestPartition(partition_index=0, committed_offset=7)],
                    )
                ],
            )
            return int(c.request(request, 9).topics[0].partitions[0].error_code)

        assert commit(joined.member_epoch) == ErrorCode.NONE
        assert commit(joined.member_epoch + 5) == ErrorCode.STALE_MEMBER_EPOCH
