"""Broker benchmark: librdkafka (confluent-kafka) producer and consumer against a broker process.

Prints, for each message size: the producer's own ceiling (enqueue rate with no broker at all),
produce throughput with acks=all, the ratio of the two, and consume throughput; then broker
startup time (process start to first answered request) and idle resident memory.

    python bench/broker_throughput.py [--messages N] [--sizes 100,1024] [--runs 3]
    python bench/broker_throughput.py --bootstrap host:port   # any other broker, for comparison
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from eventyard.protocol.messages.api_versions_request import ApiVersionsRequest
from eventyard.testing import BrokerProcess
from eventyard.wire_client import WireClient


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) a process has used so far: shows whether the broker is the bottleneck."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PRODUCER_CONF = {
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 2_000_000,
    "queue.buffering.max.kbytes": 4_000_000,
    "compression.type": "none",
}


def ceiling(n: int, payload: bytes) -> float:
    """Messages per second the producer reaches into its own queue, with no broker behind it."""
    producer = Producer(
        {
            "bootstrap.servers": "127.0.0.1:1",
            "socket.connection.setup.timeout.ms": 1000,
            "log_level": 0,
            **PRODUCER_CONF,
        }
    )
    start = time.perf_counter()
    for _ in range(n):
        producer.produce("ceiling", payload)
    elapsed = time.perf_counter() - start
    producer.purge()
    producer.flush(0)
    return n / elapsed


def produce(bootstrap: str, topic: str, n: int, payload: bytes) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **PRODUCER_CONF})
    producer.produce(topic, payload)  # connect and fetch metadata before the clock starts
    producer.flush(30)
    start = time.perf_counter()
    for _ in range(n):
        try:
            producer.produce(topic, payload)
        except BufferError:
            producer.poll(0.001)
            producer.produce(topic, payload)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - start
    if remaining:
        raise RuntimeError(f"{remaining} messages not delivered")
    return n / elapsed


def consume(bootstrap: str, topic: str, partitions: int, n: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
            # librdkafka stops fetching once this many messages wait in its queue
            # (default 100,000): with a Python loop draining it, that caps throughput.
            "queued.min.messages": 1_000_000,
            "queued.max.messages.kbytes": 1_048_576,
        }
    )
    consumer.assign([TopicPartition(topic, p, 1) for p in range(partitions)])  # skip the warm-up record
    got = 0
    start = time.perf_counter()
    while got < n:
        got += sum(1 for m in consumer.consume(100_000, 1.0) if m.error() is None)
        if time.perf_counter() - start > 300:
            raise RuntimeError(f"consumed only {got} of {n}")
    elapsed = time.perf_counter() - start
    consumer.close()
    return n / elapsed


def create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def first_answer(port: int, start: float) -> float:
    """Seconds from `start` until the broker on `port` answers an ApiVersions request."""
    while True:
        try:
            with WireClient("127.0.0.1", port) as client:
                client.request(ApiVersionsRequest(), 0)
                return time.perf_counter() - start
        except OSError:
            time.sleep(0.002)


def startup_and_memory(runs: int) -> tuple[float, float]:
    times, rss = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as data, socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            probe.close()
            start = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, "-m", "eventyard", "serve", "--port", str(port), "--data-dir", data],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            times.append(first_answer(port, start))
            time.sleep(1.0)
            status = Path(f"/proc/{process.pid}/status").read_text()
            rss.append(int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]) / 1024)
            process.terminate()
            process.wait()
    return statistics.median(times), statistics.median(rss)


def measure(bootstrap: str, pid: int | None, args: argparse.Namespace) -> dict[int, tuple[float, ...]]:
    """Median (ceiling, produce, consume, produce cpu, consume cpu) per message size."""
    results = {}
    for size in (int(s) for s in args.sizes.split(",")):
        payload = b"x" * size
        runs: list[tuple[float, ...]] = []
        for _ in range(args.runs):
            topic = f"bench-{size}-{uuid.uuid4().hex[:6]}"
            create(bootstrap, topic, args.partitions)
            ceiling_rate = ceiling(args.messages, payload)
            cpu = cpu_seconds(pid)
            produced = produce(bootstrap, topic, args.messages, payload)
            produce_cpu = (cpu_seconds(pid) - cpu) * produced / args.messages
            cpu = cpu_seconds(pid)
            consumed = consume(bootstrap, topic, args.partitions, args.messages)
            consume_cpu = (cpu_seconds(pid) - cpu) * consumed / args.messages
            runs.append((ceiling_rate, produced, consumed, produce_cpu, consume_cpu))
        results[size] = tuple(statistics.median(run[i] for run in runs) for i in range(5))
    return results


def print_table(name: str, results: dict[int, tuple[float, ...]]) -> None:
    print(f"## {name}")
    print(
        f"{'size':>6} {'ceiling msg/s':>14} {'produce msg/s':>14} {'MB/s':>7} {'ratio':>6} {'cpu':>5} "
        f"{'consume msg/s':>14} {'MB/s':>7} {'cpu':>5}"
    )
    for size, (c, p, r, pc, rc) in results.items():
        print(
            f"{size:>6} {c:>14,.0f} {p:>14,.0f} {p * size / 1e6:>7.1f} {p / c:>6.2f} {pc:>5.0%} "
            f"{r:>14,.0f} {r * size / 1e6:>7.1f} {rc:>5.0%}",
            flush=True,
        )


def kafka_startup_and_memory(runs: int) -> tuple[float, float]:
    """Apache Kafka's time to a ready single node (storage format included) and its idle RSS."""
    from eventyard.testing.kafka_reference import KafkaReference

    times, rss = [], []
    for _ in range(runs):
        kafka = KafkaReference()
        start = time.perf_counter()
        kafka.start()
        times.append(time.perf_counter() - start)
        time.sleep(1.0)
        rss.append((kafka.rss_bytes() or 0) / 2**20)
        kafka.close()
    return statistics.median(times), statistics.median(rss)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--sizes", default="100,1024")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bootstrap", help="also measure this broker (any Kafka-compatible address)")
    parser.add_argument("--kafka", action="store_true", help="also measure Apache Kafka (reference harness)")
    parser.add_argument("--broker-arg", action="append", default=[], help="extra `eventyard serve` argument")
    args = parser.parse_args()

    print(f"# {args.messages:,} messages per run, {args.partitions} partition(s), median of {args.runs} runs")
    print("# ceiling: the same producer into its own queue, no broker; ratio: produce / ceiling")
    print("# cpu: the broker process's CPU use during the phase (100% = one core busy)")
    tables: dict[str, dict[int, tuple[float, ...]]] = {}
    broker = BrokerProcess(Path(tempfile.mkdtemp(prefix="eventyard-bench-")), *args.broker_arg).start()
    try:
        tables["eventyard"] = measure(broker.bootstrap, broker.process.pid if broker.process else None, args)
        print_table("eventyard", tables["eventyard"])
    finally:
        broker.stop()
    if args.kafka:
        from eventyard.testing.kafka_reference import KafkaReference

        with KafkaReference(heap="1g") as kafka:
            tables["kafka"] = measure(kafka.bootstrap, kafka.pid, args)
        print_table("apache kafka 4.4 (reference harness)", tables["kafka"])
    if args.bootstrap:
        tables[args.bootstrap] = measure(args.bootstrap, None, args)
        print_table(args.bootstrap, tables[args.bootstrap])
    for name, table in tables.items():
        if name == "eventyard":
            continue
        print(f"## eventyard / {name}")
        for size, row in table.items():
            ours = tables["eventyard"][size]
            print(f"{size:>6}  produce {ours[1] / row[1]:.2f}x  consume {ours[2] / row[2]:.2f}x")
    startup, rss = startup_and_memory(args.runs)
    print(
        f"eventyard: startup to first answered request {startup * 1000:.0f} ms (median); "
        f"idle RSS {rss:.1f} MB"
    )
    if args.kafka:
        startup, rss = kafka_startup_and_memory(args.runs)
        print(
            f"apache kafka: format + start to ready {startup * 1000:.0f} ms (median); idle RSS {rss:.1f} MB"
        )


if __name__ == "__main__":
    sys.exit(main())
