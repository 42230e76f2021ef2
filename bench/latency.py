"""End-to-end latency side by side: a librdkafka producer sends at a fixed, moderate rate and a
librdkafka consumer (a thread of the same process, already fetching) receives; each message carries
its send time (CLOCK_MONOTONIC, ns) in its first 8 bytes. Reported per broker: median, 99th and
99.9th percentile and maximum of send-to-receive time, and the broker's CPU at that rate; each
figure is the median over --runs runs, which alternate between the brokers (all running at once).

    python bench/latency.py [--kafka] [--rate 1000] [--seconds 15] [--runs 3]
    python bench/latency.py --bootstrap host:port --name tansu     # any other broker too
"""

from __future__ import annotations

import argparse
import statistics
import struct
import threading
import time
import uuid
from collections import defaultdict

from confluent_kafka import Consumer, Producer, TopicPartition
from sidebyside.report import median_fields, percent, progress, ratio, table
from sidebyside.targets import EVENTYARD, Target, all_targets, cpu_seconds
from sidebyside.workloads import create, delete

STAMP = struct.Struct(">q")


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def receive(consumer: Consumer, n: int, latencies: list[float], deadline: float) -> None:
    """Collect n latencies in ms (receive time minus the stamped send time)."""
    while len(latencies) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.1)
        if msg is None or msg.error() is not None:
            continue
        now = time.monotonic_ns()
        value = msg.value()
        assert value is not None
        latencies.append((now - STAMP.unpack_from(value)[0]) / 1e6)


def run_once(target: Target, args: argparse.Namespace, seconds: float) -> tuple[float, ...]:
    """(median, p99, p99.9, max in ms, broker CPU as a fraction of one core) of one run."""
    topic = f"latency-{uuid.uuid4().hex[:8]}"
    create(target.bootstrap, topic, 1)
    producer = Producer(
        {"bootstrap.servers": target.bootstrap, "acks": args.acks, "linger.ms": args.linger_ms}
    )
    consumer = Consumer(
        {"bootstrap.servers": target.bootstrap, "group.id": "latency", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    pad = b"x" * max(0, args.size - STAMP.size)
    # Warm-up: both clients connected, the consumer fetching at the end of the log, before the clock.
    producer.produce(topic, STAMP.pack(time.monotonic_ns()) + pad)
    producer.flush(30)
    warm: list[float] = []
    receive(consumer, 1, warm, time.monotonic() + 30)
    if not warm:
        raise RuntimeError(f"{target.name}: warm-up record not received")

    n = int(args.rate * seconds)
    latencies: list[float] = []
    receiver = threading.Thread(
        target=receive, args=(consumer, n, latencies, time.monotonic() + seconds + 60)
    )
    receiver.start()
    cpu = cpu_seconds(target.pid)
    start = time.monotonic()
    for i in range(n):
        # Fixed schedule: message i leaves at start + i / rate (no catching up by bursts).
        delay = start + i / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        producer.produce(topic, STAMP.pack(time.monotonic_ns()) + pad)
        producer.poll(0)
    producer.flush(30)
    receiver.join()
    busy = (cpu_seconds(target.pid) - cpu) / (time.monotonic() - start)
    consumer.close()
    delete(target.bootstrap, topic)
    if len(latencies) < n:
        raise RuntimeError(f"{target.name}: received {len(latencies)} of {n}")
    ordered = sorted(latencies)
    return (
        statistics.median(ordered),
        percentile(ordered, 0.99),
        percentile(ordered, 0.999),
        ordered[-1],
        busy,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of one run")
    parser.add_argument("--size", type=int, default=100, help="message size in bytes (at least 8)")
    parser.add_argument("--acks", default="all")
    parser.add_argument("--linger-ms", type=float, default=0.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds of a first, discarded run (0: none)"
    )
    parser.add_argument("--kafka", action="store_true", help="also measure Apache Kafka (reference harness)")
    parser.add_argument("--bootstrap", help="also measure this broker (any Kafka-compatible address)")
    parser.add_argument("--name", help="name of the --bootstrap broker in the tables")
    parser.add_argument("--broker-arg", action="append", default=[], help="extra `eventyard serve` argument")
    args = parser.parse_args()

    samples: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    with all_targets(args.kafka, args.bootstrap, args.name, args.broker_arg) as targets:
        if args.warmup > 0:  # one discarded run each: the JVM compiles Kafka's hot paths in its first seconds
            for target in targets:
                run_once(target, args, args.warmup)
        for i in range(args.runs):
            for target in targets:
                run = run_once(target, args, args.seconds)
                samples[target.name].append(run)
                progress(
                    f"{target.name:>14} run {i + 1}: median {run[0]:.2f} ms, p99 {run[1]:.2f} ms, "
                    f"max {run[3]:.1f} ms"
                )
    results = {name: median_fields(runs) for name, runs in samples.items()}
    print(
        f"# {args.rate:,.0f} msg/s for {args.seconds:g} s, {args.size} B, acks={args.acks}, "
        f"linger.ms={args.linger_ms:g}, one partition; median of {args.runs} runs"
        + (f" after a discarded {args.warmup:g} s warm-up run" if args.warmup > 0 else "")
    )
    rows = [
        [name, f"{m:.2f} ms", f"{p99:.2f} ms", f"{p999:.2f} ms", f"{top:.1f} ms", percent(cpu)]
        for name, (m, p99, p999, top, cpu) in results.items()
    ]
    table(["broker", "median", "p99", "p99.9", "max", "broker cpu"], rows)
    ours = results[EVENTYARD]
    for name, theirs in results.items():
        if name != EVENTYARD:
            print(
                f"# {EVENTYARD} / {name} (below 1: Eventyard faster): median {ratio(ours[0], theirs[0])}, "
                f"p99 {ratio(ours[1], theirs[1])}, p99.9 {ratio(ours[2], theirs[2])}, "
                f"max {ratio(ours[3], theirs[3])}"
            )


if __name__ == "__main__":
    main()
