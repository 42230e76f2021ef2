"""Workers against a real broker: retries, dead letters, fail-stop, graceful stop, order per key with
concurrency, and at-least-once across a SIGKILL (run as `python -m tests.toolkit.test_worker`)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from eventyard.testing.pytest_plugin import wait_for
from eventyard.toolkit import (
    Event,
    EventRegistry,
    HandlerFailed,
    PoisonEvent,
    RecordedEvent,
    UnknownEventType,
    Worker,
    ensure_topic,
    partition_for,
    read_topic,
)
from eventyard.toolkit.kafka import client_config

ROOT = Path(__file__).resolve().parents[2]
FAST = (0.01, 0.05)  # backoff for tests


class Ticked(Event, name="test.ticked"):
    key: str
    seq: int


registry = EventRegistry(Ticked)


def produce(bootstrap: str, topic: str, partitions: int, items: list[tuple[str, object]]) -> None:
    """Each (key, event or (raw value, headers)) to the key's partition, in order."""
    producer = Producer(client_config(bootstrap, enable_idempotence=True))
    for key, item in items:
        value, headers = registry.encode(item) if isinstance(item, Event) else item  # type: ignore[misc]
        producer.produce(topic, value, key.encode(), partition_for(key, partitions), headers=headers)
    assert producer.flush(30) == 0


def ticks(keys: int, per_key: int) -> list[tuple[str, object]]:
    return [(f"k{k}", Ticked(key=f"k{k}", seq=s)) for s in range(per_key) for k in range(keys)]


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer(client_config(bootstrap, group_id=group, enable_auto_commit=False))
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


def test_a_failing_handler_is_retried_until_it_succeeds(
    eventyard_bootstrap: str, eventyard_topic: str
) -> None:
    ensure_topic(eventyard_bootstrap, eventyard_topic)
    produce(eventyard_bootstrap, eventyard_topic, 1, ticks(1, 2))
    calls: list[tuple[int, float]] = []

    def flaky(recorded: RecordedEvent) -> None:
        calls.append((recorded.offset, time.monotonic()))
        if recorded.offset == 0 and len(calls) <= 2:
            raise ConnectionError("the mail server is down")

    worker = Worker(
        eventyard_bootstrap, eventyard_topic, "g", flaky, registry, retries=3, backoff=(0.05, 1.0)
    )
    with worker:
        wait_for(lambda: worker.handled == 2)
    assert [offset for offset, _ in calls] == [0, 0, 0, 1]
    assert calls[1][1] - calls[0][1] >= 0.05 and calls[2][1] - calls[1][1] >= 0.1  # exponential backoff
    assert worker.error is None and worker.dead_lettered == 0
    assert committed(eventyard_bootstrap, "g", eventyard_topic, 1) == {0: 2}


def test_poison_events_go_to_the_dead_letter_topic_and_the_partition_moves_on(
    eventyard_bootstrap: str, eventyard_topic: str
) -> None:
    ensure_topic(eventyard_bootstrap, eventyard_topic)
    json = [("content-type", b"application/json")]
    items: list[tuple[str, object]] = [
        ("a", Ticked(key="a", seq=0)),
        ("a", (b"{}", [("event-type", b"test.unheard_of"), *json])),  # unknown type
        ("a", (b'{"key": "a"}', [("event-type", b"test.ticked"), *json])),  # invalid payload
        ("a", Ticked(key="a", seq=3)),
        ("a", Ticked(key="a", seq=666)),  # the handler always fails on it
        ("a", Ticked(key="a", seq=5)),
    ]
    produce(eventyard_bootstrap, eventyard_topic, 1, items)
    seen: list[int] = []

    def handle(recorded: RecordedEvent) -> None:
        assert isinstance(recorded.event, Ticked)
        if recorded.event.seq == 666:
            raise ValueError("cannot handle 666")
        seen.append(recorded.event.seq)

    dlt = f"{eventyard_topic}.dlt"
    worker = Worker(
        eventyard_bootstrap,
        eventyard_topic,
        "g",
        handle,
        registry,
        retries=2,
        backoff=FAST,
        dead_letter_topic=dlt,
    )
    with worker:
        wait_for(lambda: committed(eventyard_bootstrap, "g", eventyard_topic, 1) == {0: 6})
    assert seen == [0, 3, 5]
    assert worker.handled == 3 and worker.dead_lettered == 3 and worker.error is None
    letters = read_topic(eventyard_bootstrap, dlt)
    assert [(r.key, r.value) for r in letters] == [
        (b"a", v) for v in [b"{}", b'{"key": "a"}', b'{"key":"a","seq":666}']
    ]
    headers = [dict(r.headers) for r in letters]
    assert [h["dead-letter-offset"] for h in headers] == [b"1", b"2", b"4"]
    assert all(h["dead-letter-topic"] == eventyard_topic.encode() for h in headers)
    assert all(h["dead-letter-partition"] == b"0" and h["dead-letter-group"] == b"g" for h in headers)
    assert [h["dead-letter-exception"] for h in headers] == [
        b"eventyard.toolkit.errors.UnknownEventType",
        b"eventyard.toolkit.errors.InvalidEventPayload",
        b"builtins.ValueError",
    ]
    assert headers[0]["dead-letter-reason"] == b"unknown event type 'test.unheard_of' version 1"
    assert b"seq" in (headers[1]["dead-letter-reason"] or b"")
    assert headers[2]["dead-letter-reason"] == b"cannot handle 666"
    assert [h["dead-letter-attempts"] for h in headers] == [b"0", b"0", b"3"]
    assert headers[2]["event-type"] == b"test.ticked"  # the original headers stay: it can be replayed


@pytest.mark.parametrize("poison", [True, False])
def test_without_a_dead_letter_topic_the_worker_stops_before_the_bad_record(
    eventyard_bootstrap: str, eventyard_topic: str, poison: bool
) -> None:
    ensure_topic(eventyard_bootstrap, eventyard_topic)
    bad = (b"{}", [("event-type", b"test.unheard_of")]) if poison else Ticked(key="a", seq=666)
    produce(
        eventyard_bootstrap, eventyard_topic, 1, [("a", Ticked(key="a", seq=0)), ("a", bad), *ticks(1, 3)]
    )

    def handle(recorded: RecordedEvent) -> None:
        assert isinstance(recorded.event, Ticked)
        if recorded.event.seq == 666:
            raise ValueError("cannot handle 666")

    worker = Worker(eventyard_bootstrap, eventyard_topic, "g", handle, registry, retries=1, backoff=FAST)
    with pytest.raises(PoisonEvent if poison else HandlerFailed) as raised:
        worker.run()
    assert (raised.value.topic, raised.value.partition, raised.value.offset) == (eventyard_topic, 0, 1)
    assert isinstance(raised.value.__cause__, UnknownEventType if poison else ValueError)
    assert worker.handled == 1
    assert committed(eventyard_bootstrap, "g", eventyard_topic, 1) == {0: 1}  # not past the bad record


def test_a_graceful_stop_commits_what_was_handled(eventyard_bootstrap: str, eventyard_topic: str) -> None:
    ensure_topic(eventyard_bootstrap, eventyard_topic, partitions=2)
    produce(eventyard_bootstrap, eventyard_topic, 2, ticks(6, 40))
    handled: dict[str, list[tuple[int, int]]] = defaultdict(list)

    def handler(name: str, delay: float) -> Callable[[RecordedEvent], None]:
        def handle(recorded: RecordedEvent) -> None:
            time.sleep(delay)
            handled[name].append((recorded.partition, recorded.offset))

        return handle

    first = Worker(
        eventyard_bootstrap, eventyard_topic, "g", handler("first", 0.005), registry, concurrency=2
    )
    with first:
        wait_for(lambda: len(handled["first"]) >= 40)
    done = set(handled["first"])
    assert len(done) == len(handled["first"]) < 240
    offsets = committed(eventyard_bootstrap, "g", eventyard_topic, 2)
    for partition, offset in offsets.items():  # exactly what was handled, a prefix of each partition
        assert {o for p, o in done if p == partition} == set(range(max(offset, 0)))

    second = Worker(eventyard_bootstrap, eventyard_topic, "g", handler("second", 0), registry)
    with second:
        wait_for(lambda: len(done) + len(handled["second"]) >= 240)
    assert done.isdisjoint(handled["second"]) and len(done | set(handled["second"])) == 240


def test_concurrency_keeps_the_order_of_each_key(eventyard_bootstrap: str, eventyard_topic: str) -> None:
    ensure_topic(eventyard_bootstrap, eventyard_topic, partitions=4)
    produce(eventyard_bootstrap, eventyard_topic, 4, ticks(12, 20))
    sequences: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()
    busy = peak = 0

    def handle(recorded: RecordedEvent) -> None:
        nonlocal busy, peak
        assert isinstance(recorded.event, Ticked)
        with lock:
            busy += 1
            peak = max(peak, busy)
        time.sleep(random.uniform(0, 0.003))
        with lock:
            busy -= 1
            sequences[recorded.event.key].append(recorded.event.seq)

    worker = Worker(eventyard_bootstrap, eventyard_topic, "g", handle, registry, concurrency=4)
    with worker:
        wait_for(lambda: sum(map(len, sequences.values())) == 240)
    assert all(seqs == list(range(20)) for seqs in sequences.values()) and len(sequences) == 12
    assert peak > 1  # partitions were handled at the same time


def test_at_least_once_across_a_sigkill(
    eventyard_bootstrap: str, eventyard_topic: str, tmp_path: Path
) -> None:
    ensure_topic(eventyard_bootstrap, eventyard_topic, partitions=3)
    produce(eventyard_bootstrap, eventyard_topic, 3, ticks(9, 50))
    ends = Counter(partition_for(f"k{k}", 3) for k in range(9) for _ in range(50))
    journal = tmp_path / "handled.txt"
    journal.touch()

    def handled() -> list[tuple[int, int]]:
        lines = journal.read_text().splitlines()
        return [(int(p), int(o)) for p, o in (line.split() for line in lines if line.count(" ") == 1)]

    def worker(delay: str) -> subprocess.Popen[str]:
        args = [eventyard_bootstrap, eventyard_topic, "g", str(journal), delay]
        return subprocess.Popen(
            [sys.executable, "-m", "tests.toolkit.test_worker", *args], cwd=ROOT, text=True
        )

    first = worker("0.01")
    try:
        wait_for(lambda: len(handled()) >= 60, timeout=30)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    before = handled()
    assert 60 <= len(before) < 450

    second = worker("0")
    try:
        wait_for(lambda: len(set(handled())) == 450, timeout=40)
    finally:
        second.send_signal(signal.SIGTERM)  # graceful: commits and leaves
        assert second.wait(20) == 0
    everything = {(p, o) for p in range(3) for o in range(ends[p])}
    assert set(handled()) == everything  # none skipped
    assert len(handled()) >= 450  # some handled twice: those after the last commit before the kill
    assert committed(eventyard_bootstrap, "g", eventyard_topic, 3) == {
        p: ends.get(p, -1001) for p in range(3)
    }


def _child(bootstrap: str, topic: str, group: str, journal: str, delay: str) -> None:
    """A worker appending "partition offset" per handled event to the journal, until SIGTERM."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.instance.id": "worker-1",  # static member: a restart takes over at once (KIP-345)
        "session.timeout.ms": 6000,
    }
    with open(journal, "a") as out:

        def handle(recorded: RecordedEvent) -> None:
            time.sleep(float(delay))
            out.write(f"{recorded.partition} {recorded.offset}\n")
            out.flush()  # in the OS's hands: a SIGKILL cannot lose it

        Worker(config, topic, group, handle, registry, concurrency=3).run(signals=[signal.SIGTERM])


if __name__ == "__main__":
    _child(*sys.argv[1:])
