"""Consumer-group latency with librdkafka: time from subscribe to the first record for one
consumer and for a group of four, and the time a rebalance takes when a member leaves.

    python bench/group_latency.py [--runs 3] [--kafka]       # Eventyard, and Apache Kafka beside it
    python bench/group_latency.py --bootstrap host:port      # and any other broker
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from eventyard.testing import BrokerProcess

PARTITIONS = 8


def consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 500,
            "enable.auto.commit": False,
        }
    )


def prepare(bootstrap: str) -> str:
    topic = f"latency-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until its future is done
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap})
    for p in range(PARTITIONS):
        for i in range(10):
            producer.produce(topic, b"%d" % i, partition=p)
    producer.flush(30)
    return topic


def first_record_single(bootstrap: str, topic: str) -> float:
    c = consumer(bootstrap, f"single-{uuid.uuid4().hex[:8]}")
    start = time.perf_counter()
    c.subscribe([topic])
    while True:
        msg = c.poll(0.05)
        if msg is not None and msg.error() is None:
            elapsed = time.perf_counter() - start
            break
    c.close()
    return elapsed


def group_of_four(bootstrap: str, topic: str) -> tuple[float, float]:
    """(seconds until each of 4 members has a record, seconds to rebalance after one leaves)."""
    group = f"four-{uuid.uuid4().hex[:8]}"
    members = [consumer(bootstrap, group) for _ in range(4)]
    start = time.perf_counter()
    for c in members:
        c.subscribe([topic])
    got = [False] * 4
    while not all(got):
        for i, c in enumerate(members):
            msg = c.poll(0.01)
            if msg is not None and msg.error() is None:
                got[i] = True
    all_first = time.perf_counter() - start
    # Let the group settle, then one member leaves (LeaveGroup) and the others take its partitions.
    for _ in range(20):
        for c in members:
            c.poll(0.01)
    leaver, rest = members[0], members[1:]
    start = time.perf_counter()
    leaver.close()
    while sum(len(c.assignment()) for c in rest) < PARTITIONS:
        for c in rest:
            c.poll(0.01)
    rebalance = time.perf_counter() - start
    for c in rest:
        c.close()
    return all_first, rebalance


def measure(bootstrap: str, runs: int) -> tuple[float, float, float]:
    single, four, rebalance = [], [], []
    for _ in range(runs):
        topic = prepare(bootstrap)
        single.append(first_record_single(bootstrap, topic))
        f, r = group_of_four(bootstrap, topic)
        four.append(f)
        rebalance.append(r)
    return statistics.median(single), statistics.median(four), statistics.median(rebalance)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kafka", action="store_true", help="also measure Apache Kafka (reference harness)")
    parser.add_argument("--bootstrap", help="also measure this broker")
    args = parser.parse_args()
    results: dict[str, tuple[float, float, float]] = {}
    with BrokerProcess(Path(tempfile.mkdtemp(prefix="eventyard-groups-"))) as broker:
        results["eventyard"] = measure(broker.bootstrap, args.runs)
    if args.kafka:
        from eventyard.testing.kafka_reference import KafkaReference

        # Kafka's default initial rebalance delay is 3 s; the harness sets it to 0 like ours.
        with KafkaReference() as kafka:
            results["apache kafka"] = measure(kafka.bootstrap, args.runs)
    if args.bootstrap:
        results[args.bootstrap] = measure(args.bootstrap, args.runs)
    print(f"# median of {args.runs} runs, {PARTITIONS} partitions, librdkafka consumers (classic protocol)")
    print(f"{'broker':<16} {'first record, 1':>16} {'first record, 4':>16} {'rebalance on leave':>19}")
    for name, (single, four, rebalance) in results.items():
        print(f"{name:<16} {single * 1000:>13.0f} ms {four * 1000:>13.0f} ms {rebalance * 1000:>16.0f} ms")


if __name__ == "__main__":
    main()
