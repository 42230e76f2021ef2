"""Classic consumer groups with librdkafka (confluent-kafka) against a real broker process over TCP.

Consumers commit explicitly after processing each batch (and the offsets they still owe when a
partition is revoked), so a record is read twice only if a commit failed: the tests count exactly.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_INVALID,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from eventyard.testing import BrokerProcess

# (partition, offset): where a record was acknowledged or read.
Position = tuple[int, int]

SESSION_TIMEOUT_MS = 6000  # the broker's minimum, Kafka's default
GROUP_SETTINGS: dict[str, Any] = {
    "session.timeout.ms": SESSION_TIMEOUT_MS,
    "heartbeat.interval.ms": 500,
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "fetch.wait.max.ms": 100,
    "reconnect.backoff.ms": 20,
    "reconnect.backoff.max.ms": 250,
    "retry.backoff.ms": 20,
}


def create_topic(broker: BrokerProcess, name: str, partitions: int) -> None:
    client = AdminClient({"bootstrap.servers": broker.bootstrap})
    client.create_topics([NewTopic(name, partitions, 1)], operation_timeout=10)[name].result(10)


def produce(broker: BrokerProcess, topic: str, count: int, partitions: int, tag: str = "") -> list[Position]:
    """`count` records round-robin over the partitions; their acknowledged positions."""
    acked: list[Position] = []
    failed: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failed.append(err)
        else:
            acked.append(position(msg))

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(count):
        producer.produce(topic, value=f"{tag}{i}".encode(), partition=i % partitions, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failed == []
    assert len(acked) == count
    return acked


def position(msg: Message) -> Position:
    partition, offset = msg.partition(), msg.offset()
    assert partition is not None and offset is not None
    return partition, offset


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: Callable[[], object]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        step()


def admin(broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def committed_offsets(broker: BrokerProcess, group: str, topic: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets in `topic`, read by a consumer of the group that does not join.

    Not AdminClient.list_consumer_group_offsets: librdkafka 2.16 crashes (SIGSEGV in
    rd_kafka_cgrp_op from rd_kafka_handle_OffsetFetch) when that call meets a retriable coordinator
    error, which a just-restarted Apache Kafka answers while it loads its offsets."""
    reader = KafkaConsumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        count = len(reader.list_topics(topic, timeout=10).topics[topic].partitions)
        wanted = [TopicPartition(topic, p) for p in range(count)]
        found = reader.committed(wanted, timeout=30)
    finally:
        reader.close()
    assert all(tp.error is None for tp in found), found
    return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}


# ---------------------------------------------------------------------------------------------
# Consumers in child processes, so that one can be SIGKILLed (no LeaveGroup, no last commit).

WORKER = r"""
import json, sys, threading, time
from confluent_kafka import Consumer, KafkaException, TopicPartition

conf, topic = json.loads(sys.argv[1]), sys.argv[2]
lock = threading.Lock()

def emit(event, **fields):
    line = json.dumps({"event": event, "t": time.monotonic(), **fields})
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

owned = set()
pending = {}  # partition -> next offset: processed, not committed yet

def commit(partitions):
    offsets = {p: pending[p] for p in partitions if p in pending}
    if not offsets:
        return
    try:
        result = consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in sorted(offsets.items())], asynchronous=False
        )
        errors = [str(tp.error) for tp in result if tp.error is not None]
    except KafkaException as e:
        errors = [str(e)]
    emit("commit", offsets=sorted(offsets.items()), errors=errors)
    if not errors:
        for p, o in offsets.items():
            if pending.get(p) == o:
                del pending[p]

def on_assign(c, partitions):
    owned.update(tp.partition for tp in partitions)
    emit("assign", partitions=sorted(tp.partition for tp in partitions))

def on_revoke(c, partitions):
    revoked = {tp.partition for tp in partitions}
    commit(revoked)
    owned.difference_update(revoked)
    emit("revoke", partitions=sorted(revoked))

def on_lost(c, partitions):
    lost = {tp.partition for tp in partitions}
    owned.difference_update(lost)
    for p in lost:
        pending.pop(p, None)
    emit("lost", partitions=sorted(lost))

consumer = Consumer(conf)
consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
emit("subscribed", member=consumer.memberid())
while not stop.is_set():
    batch = []
    for msg in consumer.consume(500, 0.1):
        if msg.error() is not None:
            emit("error", error=str(msg.error()))
        elif msg.partition() in owned:  # fetched before a revocation: the next owner reads it
            batch.append((msg.partition(), msg.offset()))
    if batch:
        emit("records", records=batch)  # "processing"
        for p, o in batch:
            pending[p] = max(pending.get(p, 0), o + 1)
        commit(list(pending))
consumer.close()
emit("closed")
"""


@dataclass
class Worker:
    """A consumer in a child process and what it reported, each event with its monotonic time
    (CLOCK_MONOTONIC is shared by the processes of one machine)."""

    name: str
    process: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    killed_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, name: str, conf: dict[str, Any], topic: str) -> Worker:
        process = subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(conf), topic],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        worker = cls(name, process)
        threading.Thread(target=worker._read, daemon=True).start()
        return worker

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            with self.lock:
                self.events.append(event)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)

    def owned(self) -> set[int]:
        owned: set[int] = set()
        for e in self.snapshot():
            if e["event"] == "assign":
                owned |= set(e["partitions"])
            elif e["event"] in ("revoke", "lost"):
                owned -= set(e["partitions"])
        return set() if self.killed_at is not None else owned

    def consumed(self) -> list[Position]:
        return [(p, o) for e in self.snapshot() if e["event"] == "records" for p, o in e["records"]]

    def committed(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for e in self.snapshot():
            if e["event"] == "commit" and not e["errors"]:
                for p, o in e["offsets"]:
                    out[p] = max(out.get(p, 0), o)
        return out

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.snapshot() if e["event"] == kind]

    def kill(self) -> None:
        self.killed_at = time.monotonic()
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        """Close stdin: the worker closes its consumer (LeaveGroup) and exits."""
        if self.process.poll() is None and self.process.stdin is not None:
            self.process.stdin.close()

    def wait(self, timeout: float = 15) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def ownership_intervals(workers: list[Worker]) -> dict[int, list[tuple[float, float, str]]]:
    """For each partition, the (start, end, worker) intervals during which a worker owned it."""
    intervals: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    end_of_time = time.monotonic()
    for w in workers:
        since: dict[int, float] = {}
        for e in w.snapshot():
            if e["event"] == "assign":
                for p in e["partitions"]:
                    since.setdefault(p, e["t"])
            elif e["event"] in ("revoke", "lost"):
                for p in e["partitions"]:
                    if p in since:
                        intervals[p].append((since.pop(p), e["t"], w.name))
        for p, start in since.items():
            intervals[p].append((start, w.killed_at or end_of_time, w.name))
    return intervals


def assert_no_double_ownership(workers: list[Worker]) -> None:
    for p, spans in ownership_intervals(workers).items():
        spans.sort()
        for (_, end, who), (start, _, next_who) in itertools.pairwise(spans):
            assert end <= start, f"partition {p} owned by {who} and {next_who} at once"


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()
    for w in started:
        w.wait()


def test_sigkilled_member_partitions_move_after_session_timeout(
    broker: BrokerProcess, topic_name: str, workers: list[Worker]
) -> None:
    partitions = 6
    create_topic(broker, topic_name, partitions)
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": f"g-{topic_name}", **GROUP_SETTINGS}
    workers += [Worker.start(f"w{i}", {**conf, "client.id": f"w{i}"}, topic_name) for i in range(3)]

    def balanced(members: list[Worker], each: int) -> bool:
        owned = [w.owned() for w in members]
        union = set().union(*owned)
        return all(len(o) == each for o in owned) and union == set(range(partitions))

    wait_for(
        lambda: balanced(workers, 2), 30, "three consumers with two partitions each", lambda: time.sleep(0.05)
    )
    first = produce(broker, topic_name, 600, partitions, "first-")
    wait_for(
        lambda: {pos for w in workers for pos in w.consumed()} == set(first),
        30,
        "every record of the first batch",
        lambda: time.sleep(0.05),
    )
    ends = {p: max(o for q, o in first if q == p) + 1 for p in range(partitions)}
    victim, survivors = workers[1], [workers[0], workers[2]]
    wait_for(
        lambda: all(victim.committed().get(p) == ends[p] for p in victim.owned()),
        10,
        "the victim's commits",
        lambda: time.sleep(0.05),
    )
    stable_owned = {w.name: w.owned() for w in workers}
    assert sum(len(o) for o in stable_owned.values()) == partitions  # disjoint: 2 + 2 + 2 = 6
    victim_partitions = stable_owned[victim.name]
    assigns_before = {w.name: len(w.events_of("assign")) for w in workers}

    victim.kill()
    second = produce(broker, topic_name, 600, partitions, "second-")
    wait_for(lambda: balanced(survivors, 3), 30, "the survivors to take over", lambda: time.sleep(0.05))
    wait_for(
        lambda: {pos for w in workers for pos in w.consumed()} == set(first) | set(second),
        30,
        "every record of the second batch",
        lambda: time.sleep(0.05),
    )

    # The victim said nothing after the kill; the group noticed only when its session expired.
    moved_at = min(
        e["t"]
        for w in survivors
        for e in w.events_of("assign")[assigns_before[w.name] :]
        if set(e["partitions"]) & victim_partitions
    )
    waited = moved_at - (victim.killed_at or 0)
    print(f"partitions of the killed member reassigned {waited:.2f} s after SIGKILL")
    assert SESSION_TIMEOUT_MS / 1000 - 1.0 <= waited <= SESSION_TIMEOUT_MS / 1000 + 10
    assert set().union(*(w.owned() for w in survivors)) == set(range(partitions))
    assert_no_double_ownership(workers)
    # Exactly once: nothing skipped, and nothing read twice (every processed record was committed).
    counts = Counter(pos for w in workers for pos in w.consumed())
    assert set(counts) == set(first) | set(second)
    assert [pos for pos, n in counts.items() if n > 1] == []
    # Records of the victim's partitions after the kill went to the survivors.
    assert {(p, o) for p, o in second if p in victim_partitions} <= {
        pos for w in survivors for pos in w.consumed()
    }
    assert [e for w in workers for e in w.snapshot() if e["event"] == "error" or e.get("errors")] == []
    for w in survivors:
        w.stop()
    assert [w.wait() for w in survivors] == [0, 0]
    final = committed_offsets(broker, f"g-{topic_name}", topic_name)
    assert final == {(topic_name, p): 200 for p in range(partitions)}


# ---------------------------------------------------------------------------------------------
# In-process consumers


def group_consumer(broker: BrokerProcess, group: str, **conf: Any) -> KafkaConsumer:
    return KafkaConsumer({"bootstrap.servers": broker.bootstrap, "group.id": group, **GROUP_SETTINGS, **conf})


def consume_committing(
    consumer: KafkaConsumer, want: int, timeout: float = 30, exact: bool = True
) -> list[Position]:
    """Read until `want` records were processed, committing each (synchronously) after it."""
    got: list[Position] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        msg = consumer.poll(0.1)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append(position(msg))
        consumer.commit(message=msg, asynchronous=False)
    assert len(got) == want or not exact, f"processed {len(got)} of {want} records"
    return got


def drain(consumer: KafkaConsumer, seconds: float) -> list[Position]:
    """Whatever else arrives within `seconds` (there should be nothing)."""
    extra: list[Position] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None:
            extra.append(position(msg))
    return extra


def test_group_resumes_from_committed_offsets_after_broker_restart(
    fresh_broker: BrokerProcess, topic_name: str
) -> None:
    create_topic(fresh_broker, topic_name, 3)
    group = f"g-{topic_name}"
    first = produce(fresh_broker, topic_name, 300, 3, "first-")
    consumer = group_consumer(fresh_broker, group)
    consumer.subscribe([topic_name])
    processed = consume_committing(consumer, 130)  # part of the first batch only
    consumer.close()
    by_partition: dict[int, list[int]] = defaultdict(list)
    for p, o in processed:
        by_partition[p].append(o)
    # Each partition was read in order from 0, and its commit is the next offset to read.
    committed = {(topic_name, p): len(offsets) for p, offsets in by_partition.items()}
    assert all(offsets == list(range(len(offsets))) for offsets in by_partition.values())
    assert committed_offsets(fresh_broker, group, topic_name) == committed

    fresh_broker.restart(kill=True)
    assert committed_offsets(fresh_broker, group, topic_name) == committed
    second = produce(fresh_broker, topic_name, 90, 3, "second-")
    remaining = set(first) - set(processed) | set(second)
    consumer = group_consumer(fresh_broker, group)
    consumer.subscribe([topic_name])
    try:
        resumed = consume_committing(consumer, len(remaining))
        resumed += drain(consumer, 1.0)
    finally:
        consumer.close()
    assert sorted(resumed) == sorted(remaining)  # not re-read from 0, nothing skipped, no duplicates
    assert committed_offsets(fresh_broker, group, topic_name) == {(topic_name, p): 130 for p in range(3)}


def test_live_consumer_rejoins_and_resumes_after_broker_restart(
    fresh_broker: BrokerProcess, topic_name: str
) -> None:
    """The consumer stays up while the broker is SIGKILLed: the restarted coordinator does not know
    its member id, so it rejoins, and carries on from the committed offsets."""
    create_topic(fresh_broker, topic_name, 3)
    group = f"g-{topic_name}"
    first = produce(fresh_broker, topic_name, 150, 3, "first-")
    # The connection errors while the broker is down go to logging, not to stderr.
    consumer = group_consumer(fresh_broker, group, logger=logging.getLogger("librdkafka"))
    assigned: list[list[int]] = []
    consumer.subscribe(
        [topic_name], on_assign=lambda c, ps: assigned.append(sorted(tp.partition for tp in ps))
    )
    try:
        got = consume_committing(consumer, len(first))
        assert sorted(got) == sorted(first)
        member_before = consumer.memberid()
        fresh_broker.restart(kill=True)
        second = produce(fresh_broker, topic_name, 150, 3, "second-")
        got = []
        wait_for(
            lambda: consumer.memberid() != member_before and len(got) >= len(second),
            20,
            "a rejoin and the second batch",
            lambda: got.extend(consume_committing(consumer, 1, timeout=0.2, exact=False)),
        )
        got += drain(consumer, 1.0)
        assert sorted(got) == sorted(second)  # from the committed offsets: neither 0 nor past them
        assert assigned[-1] == [0, 1, 2]
    finally:
        consumer.close()
    assert committed_offsets(fresh_broker, group, topic_name) == {(topic_name, p): 100 for p in range(3)}


class TrackedMember:
    """A consumer that tracks what it owns from its rebalance callbacks, and checks at each callback
    that no other member owns the partitions it is given. Cooperative (incremental) by default."""

    def __init__(
        self,
        name: str,
        broker: BrokerProcess,
        group: str,
        topic: str,
        log: list[str],
        cooperative: bool = True,
        **conf: Any,
    ) -> None:
        self.name = name
        self.topic = topic
        self.log = log  # shared between the members: violations, in order
        self.cooperative = cooperative
        self.owned: set[int] = set()
        self.peers: list[TrackedMember] = []
        self.assigned: list[set[int]] = []
        self.revoked: list[set[int]] = []
        self.lost: list[set[int]] = []
        self.consumed: list[Position] = []
        self.pending: dict[int, int] = {}
        self.commit_errors: list[str] = []
        strategy = "cooperative-sticky" if cooperative else "range"
        self.consumer = group_consumer(
            broker, group, **{"partition.assignment.strategy": strategy, "client.id": name, **conf}
        )
        self.consumer.subscribe(
            [topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost
        )
        self.closed = False

    def on_assign(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        given = {tp.partition for tp in partitions}
        for peer in self.peers:
            if given & peer.owned:
                self.log.append(f"{self.name} given {sorted(given & peer.owned)} still owned by {peer.name}")
        if given & self.owned:
            self.log.append(f"{self.name} given {sorted(given & self.owned)} it already owns")
        self.owned |= given
        if given:  # librdkafka also reports the empty increments of a cooperative rebalance
            self.assigned.append(given)
        if self.cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    def on_revoke(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        taken = {tp.partition for tp in partitions}
        if not taken <= self.owned:
            self.log.append(f"{self.name} revoked {sorted(taken - self.owned)} it does not own")
        self.commit(taken)  # what it processed from them, before another member may start
        self.owned -= taken
        if taken:
            self.revoked.append(taken)
        if self.cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    def on_lost(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self.owned -= gone
        if gone:
            self.lost.append(gone)
        for p in gone:
            self.pending.pop(p, None)
        if self.cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    def commit(self, partitions: set[int]) -> None:
        offsets = {p: o for p, o in self.pending.items() if p in partitions}
        if not offsets:
            return
        try:
            result = self.consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()], asynchronous=False
            )
            errors = [str(tp.error) for tp in result if tp.error is not None]
        except KafkaException as e:
            errors = [str(e)]
        if errors:
            self.commit_errors += errors
            return
        for p, o in offsets.items():
            if self.pending.get(p) == o:
                del self.pending[p]

    def poll(self) -> None:
        if self.closed:
            return
        batch = []
        for msg in self.consumer.consume(500, 0.02):
            assert msg.error() is None, msg.error()
            if msg.partition() in self.owned:
                batch.append(position(msg))
        self.consumed += batch
        for p, o in batch:
            self.pending[p] = max(self.pending.get(p, 0), o + 1)
        self.commit(set(self.pending))

    def close(self) -> None:
        """Revoke what it owns (committing), then LeaveGroup (none for a static member)."""
        if not self.closed:
            self.closed = True
            self.consumer.close()
            self.owned = set()


def test_cooperative_sticky_incremental_rebalances(broker: BrokerProcess, topic_name: str) -> None:
    partitions = 6
    create_topic(broker, topic_name, partitions)
    group = f"g-{topic_name}"
    violations: list[str] = []
    members: list[TrackedMember] = []

    def join(name: str) -> TrackedMember:
        member = TrackedMember(name, broker, group, topic_name, violations)
        members.append(member)
        for m in members:
            m.peers = [other for other in members if other is not m]
        return member

    def poll_all() -> None:
        for m in members:
            m.poll()

    def owns(expected: dict[TrackedMember, int]) -> Callable[[], bool]:
        def check() -> bool:
            owned = [m.owned for m in expected]
            return [len(o) for o in owned] == list(expected.values()) and set().union(*owned) == set(
                range(partitions)
            )

        return check

    def consumed() -> list[Position]:
        return [pos for m in members for pos in m.consumed]

    produced: list[Position] = []

    def produce_and_consume(count: int) -> None:
        produced.extend(produce(broker, topic_name, count, partitions, f"{len(produced)}-"))
        wait_for(lambda: set(consumed()) >= set(produced), 30, "every record", poll_all)

    try:
        a = join("a")
        wait_for(owns({a: 6}), 20, "a to own everything", poll_all)
        produce_and_consume(60)

        b = join("b")
        wait_for(owns({a: 3, b: 3}), 20, "a and b to share", poll_all)
        assert len(a.revoked) == 1 and len(a.revoked[0]) == 3  # gave up only what b got
        assert a.assigned == [set(range(6))]
        assert b.assigned == [a.revoked[0]]
        produce_and_consume(60)

        c = join("c")
        wait_for(owns({a: 2, b: 2, c: 2}), 20, "a, b and c to share", poll_all)
        assert [len(r) for r in a.revoked] == [3, 1] and [len(r) for r in b.revoked] == [1]
        assert set().union(*c.assigned) == a.revoked[1] | b.revoked[0]
        assert len(a.assigned) == 1 and len(b.assigned) == 1  # the others kept what they had
        produce_and_consume(60)

        c.close()
        wait_for(owns({a: 3, b: 3}), 20, "a and b to take c's partitions", poll_all)
        assert c.revoked and set().union(*c.revoked) == set().union(*c.assigned)
        assert [len(r) for r in a.revoked] == [3, 1] and [len(r) for r in b.revoked] == [1]  # no new ones
        assert [len(s) for s in a.assigned[1:]] == [1] and [len(s) for s in b.assigned[1:]] == [1]
        produce_and_consume(60)
        poll_all()
    finally:
        for m in members:
            m.close()

    assert violations == []
    assert [m.lost for m in members] == [[], [], []]
    assert [m.commit_errors for m in members] == [[], [], []]
    counts = Counter(consumed())
    assert set(counts) == set(produced)
    assert [pos for pos, n in counts.items() if n > 1] == []


def test_static_member_restart_keeps_its_partitions_without_a_rebalance(
    broker: BrokerProcess, topic_name: str
) -> None:
    """KIP-345: a static member (group.instance.id) that closes sends no LeaveGroup; when it comes
    back within the session timeout it takes over its old partitions, and the others see nothing."""
    partitions = 6
    create_topic(broker, topic_name, partitions)
    group = f"g-{topic_name}"
    client = admin(broker)
    violations: list[str] = []
    members: list[TrackedMember] = []

    def start(name: str, instance: str) -> TrackedMember:
        member = TrackedMember(
            name, broker, group, topic_name, violations, cooperative=False, **{"group.instance.id": instance}
        )
        members.append(member)
        for m in members:
            m.peers = [other for other in members if other is not m and not other.closed]
        return member

    def poll_all() -> None:
        for m in members:
            m.poll()

    def consumed() -> list[Position]:
        return [pos for m in members for pos in m.consumed]

    def described_members() -> list[str]:
        return [m.member_id for m in client.describe_consumer_groups([group])[group].result(10).members]

    try:
        a, b = start("a", "instance-a"), start("b", "instance-b")
        wait_for(
            lambda: len(a.owned) == len(b.owned) == 3 and not a.owned & b.owned,
            20,
            "a and b to share",
            poll_all,
        )
        first = produce(broker, topic_name, 60, partitions, "first-")
        wait_for(
            lambda: set(consumed()) >= set(first) and not a.pending and not b.pending, 20, "all", poll_all
        )
        b_partitions, b_member = set(b.owned), b.consumer.memberid()
        a_history = (list(a.assigned), list(a.revoked))
        b.close()
        # Still a member as far as the coordinator knows: its session has not expired.
        assert sorted(described_members()) == sorted([a.consumer.memberid(), b_member])
        second = produce(broker, topic_name, 60, partitions, "second-")
        b2 = start("b2", "instance-b")
        wait_for(lambda: b2.owned == b_partitions, 20, "the restarted static member", poll_all)
        wait_for(lambda: set(consumed()) >= set(first) | set(second), 20, "every record", poll_all)
        assert b2.consumer.memberid() != b_member
        assert sorted(described_members()) == sorted([a.consumer.memberid(), b2.consumer.memberid()])
        assert (a.assigned, a.revoked) == a_history  # no rebalance reached a
        assert b2.assigned == [b_partitions]
    finally:
        for m in members:
            m.close()
    assert violations == []
    assert [m.commit_errors for m in members] == [[], [], []]
    counts = Counter(consumed())
    assert set(counts) == set(first) | set(second)
    assert [pos for pos, n in counts.items() if n > 1] == []  # b2 resumed from b's commits


def test_subscribe_to_first_record_is_fast(broker: BrokerProcess, topic_name: str) -> None:
    create_topic(broker, topic_name, 3)
    produce(broker, topic_name, 30, 3)
    consumer = group_consumer(broker, f"g-{topic_name}")
    try:
        started = time.monotonic()
        consumer.subscribe([topic_name])
        msg = None
        while msg is None and time.monotonic() - started < 10:
            msg = consumer.poll(0.05)
        elapsed = time.monotonic() - started
        assert msg is not None and msg.error() is None
    finally:
        consumer.close()
    print(f"subscribe to first record: {elapsed * 1000:.0f} ms")
    assert elapsed < 3.0


def test_admin_client_consumer_group_operations(broker: BrokerProcess, topic_name: str) -> None:
    create_topic(broker, topic_name, 3)
    produce(broker, topic_name, 30, 3)
    group = f"g-{topic_name}"
    simple = f"simple-{topic_name}"
    client = admin(broker)

    def listed(*states: ConsumerGroupState) -> dict[str, Any]:
        result = client.list_consumer_groups(states=set(states), request_timeout=10).result(10)
        assert result.errors == []
        return {g.group_id: g for g in result.valid}

    def describe(group_id: str) -> Any:
        return client.describe_consumer_groups([group_id], request_timeout=10)[group_id].result(10)

    def offsets_of(group_id: str, wanted: list[TopicPartition] | None = None) -> dict[int, int]:
        request = [ConsumerGroupTopicPartitions(group_id, wanted)]
        result = client.list_consumer_group_offsets(request, request_timeout=10)[group_id].result(10)
        assert all(tp.error is None for tp in result.topic_partitions)
        return {tp.partition: tp.offset for tp in result.topic_partitions}

    def alter(group_id: str, offsets: dict[int, int]) -> Any:
        request = [
            ConsumerGroupTopicPartitions(
                group_id, [TopicPartition(topic_name, p, o) for p, o in offsets.items()]
            )
        ]
        return client.alter_consumer_group_offsets(request, request_timeout=10)[group_id].result(10)

    def delete(group_id: str) -> None:
        client.delete_consumer_groups([group_id], request_timeout=10)[group_id].result(10)

    consumer = group_consumer(broker, group, **{"client.id": "admin-test-client"})
    consumer.subscribe([topic_name])
    try:
        consume_committing(consumer, 12)
        wait_for(lambda: len(consumer.assignment()) == 3, 10, "the assignment", lambda: drain(consumer, 0.1))
        stable = listed(ConsumerGroupState.STABLE)
        assert group in stable
        assert stable[group].state == ConsumerGroupState.STABLE
        assert not stable[group].is_simple_consumer_group
        assert group not in listed(ConsumerGroupState.EMPTY)
        assert group in listed()  # no filter: every state

        described = describe(group)
        assert described.group_id == group
        assert described.state == ConsumerGroupState.STABLE
        assert described.partition_assignor == "range"
        assert not described.is_simple_consumer_group
        assert [m.member_id for m in described.members] == [consumer.memberid()]
        [member] = described.members
        assert member.client_id == "admin-test-client"
        assert "127.0.0.1" in member.host
        assert sorted((tp.topic, tp.partition) for tp in member.assignment.topic_partitions) == [
            (topic_name, p) for p in range(3)
        ]

        committed = offsets_of(group)
        assert sum(committed.values()) == 12
        seen_by_consumer = consumer.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=10)
        assert committed == {tp.partition: tp.offset for tp in seen_by_consumer if tp.offset >= 0}
        assert offsets_of(group, [TopicPartition(topic_name, 0), TopicPartition("no-such-topic", 5)]) == {
            0: committed.get(0, OFFSET_INVALID),
            5: OFFSET_INVALID,
        }

        # While the group has members, admin changes are refused.
        with pytest.raises(KafkaException) as refused:
            result = alter(group, {0: 1, 1: 1, 2: 1})
            for tp in result.topic_partitions:
                if tp.error is not None:
                    raise KafkaException(tp.error)
        assert refused.value.args[0].code() == KafkaError.UNKNOWN_MEMBER_ID
        with pytest.raises(KafkaException) as non_empty:
            delete(group)
        assert non_empty.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
        assert offsets_of(group) == committed
    finally:
        consumer.close()

    # Empty now: offsets can be altered, and a new member starts from them.
    empty = listed(ConsumerGroupState.EMPTY)
    assert group in empty and group not in listed(ConsumerGroupState.STABLE)
    described = describe(group)
    assert described.state == ConsumerGroupState.EMPTY and described.members == []
    altered = alter(group, {0: 8, 1: 9, 2: 10})
    assert sorted((tp.partition, tp.offset, tp.error) for tp in altered.topic_partitions) == [
        (0, 8, None),
        (1, 9, None),
        (2, 10, None),
    ]
    assert offsets_of(group) == {0: 8, 1: 9, 2: 10}
    consumer = group_consumer(broker, group)
    consumer.subscribe([topic_name])
    try:
        resumed = consume_committing(consumer, 3)
        resumed += drain(consumer, 0.5)
    finally:
        consumer.close()
    assert sorted(resumed) == [(0, 8), (0, 9), (1, 9)]  # each partition holds offsets 0..9

    # A group made only by committing offsets (no members ever): a "simple" group.
    alter(simple, {0: 1})
    assert {group, simple} <= set(listed(ConsumerGroupState.EMPTY))
    assert describe(simple).is_simple_consumer_group

    with pytest.raises(KafkaException) as missing:
        delete(f"no-such-group-{topic_name}")
    assert missing.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND
    delete(group)
    delete(simple)
    assert not {group, simple} & set(listed())
    assert offsets_of(group) == {}
    gone = describe(group)
    assert (gone.state, gone.members) == (ConsumerGroupState.DEAD, [])
