"""Throughput workloads with the librdkafka (confluent-kafka) producer and consumer.

Every broker gets the same client configuration; only the bootstrap address differs."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # re-exported without __all__

from .targets import Target, cpu_seconds

PRODUCER_CONF = {
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 2_000_000,
    "queue.buffering.max.kbytes": 4_000_000,
    "compression.type": "none",
}

CONSUMER_CONF = {
    "enable.auto.commit": False,
    "fetch.max.bytes": 52_428_800,
    "max.partition.fetch.bytes": 10_485_760,
    # librdkafka stops fetching once this many messages wait in its queue
    # (default 100,000): with a Python loop draining it, that caps throughput.
    "queued.min.messages": 1_000_000,
    "queued.max.messages.kbytes": 1_048_576,
}


@dataclass(frozen=True)
class Cell:
    """One point of the matrix."""

    size: int
    acks: str
    partitions: int


def _send(producer: Producer, topic: str, payload: bytes, n: int, partitions: int) -> None:
    """n messages, spread round-robin over the partitions (so each request carries all of them)."""
    if partitions == 1:
        for _ in range(n):
            try:
                producer.produce(topic, payload)
            except BufferError:
                producer.poll(0.001)
                producer.produce(topic, payload)
        return
    for i in range(n):
        p = i % partitions
        try:
            producer.produce(topic, payload, partition=p)
        except BufferError:
            producer.poll(0.001)
            producer.produce(topic, payload, partition=p)


def ceiling(n: int, payload: bytes, partitions: int) -> float:
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
    _send(producer, "ceiling", payload, n, partitions)
    elapsed = time.perf_counter() - start
    producer.purge()
    producer.flush(0)
    return n / elapsed


def produce(bootstrap: str, topic: str, n: int, payload: bytes, acks: str, partitions: int) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, **PRODUCER_CONF})
    # One record per partition before the clock starts: connect, fetch metadata, find the leaders.
    for p in range(partitions):
        producer.produce(topic, payload, partition=p)
    producer.flush(30)
    start = time.perf_counter()
    _send(producer, topic, payload, n, partitions)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - start
    if remaining:
        raise RuntimeError(f"{remaining} messages not delivered")
    return n / elapsed


def consume(bootstrap: str, topic: str, partitions: int, n: int) -> float:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", **CONSUMER_CONF})
    consumer.assign([TopicPartition(topic, p, 1) for p in range(partitions)])  # skip the warm-up records
    got = 0
    start = time.perf_counter()
    while got < n:
        # Ask for no more than what is left: consume() waits its whole timeout for a short batch.
        batch = consumer.consume(min(100_000, n - got), 1.0)
        got += sum(1 for m in batch if m.error() is None)
        if time.perf_counter() - start > 300:
            raise RuntimeError(f"consumed only {got} of {n}")
    elapsed = time.perf_counter() - start
    consumer.close()
    return n / elapsed


def create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until its future is done
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def delete(bootstrap: str, topic: str) -> None:
    """Drop the run's topic so that later runs do not pay for earlier data (a failure is harmless)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        admin.delete_topics([topic])[topic].result(30)
    except Exception as error:  # the broker may lack DeleteTopics: keep the data, go on
        print(f"# could not delete {topic}: {error}")


@dataclass(frozen=True)
class Run:
    """One run of one cell on one broker: rates in msg/s, broker CPU as a fraction of one core."""

    ceiling: float
    produce: float
    consume: float
    produce_cpu: float
    consume_cpu: float


def run_cell(target: Target, cell: Cell, messages: int) -> Run:
    payload = b"x" * cell.size
    topic = f"bench-{cell.size}-{cell.acks}-{cell.partitions}-{uuid.uuid4().hex[:6]}"
    create(target.bootstrap, topic, cell.partitions)
    ceiling_rate = ceiling(messages, payload, cell.partitions)
    # Every run starts with no dirty page cache. Without this the kernel's writeback of earlier runs
    # lands in whichever run crosses its threshold: Kafka deletes a dropped topic's files 60 s later
    # (file.delete.delay.ms), so its gigabyte stays dirty and was written back during the next
    # Eventyard run, while Eventyard's own files are gone before they reach the disk.
    os.sync()
    # CPU seconds over the phase's measured seconds (messages / rate).
    cpu = cpu_seconds(target.pid)
    produced = produce(target.bootstrap, topic, messages, payload, cell.acks, cell.partitions)
    produce_cpu = (cpu_seconds(target.pid) - cpu) * produced / messages
    cpu = cpu_seconds(target.pid)
    consumed = consume(target.bootstrap, topic, cell.partitions, messages)
    consume_cpu = (cpu_seconds(target.pid) - cpu) * consumed / messages
    delete(target.bootstrap, topic)
    return Run(ceiling_rate, produced, consumed, produce_cpu, consume_cpu)
