"""Real Kafka clients driven with the config an app gets from the control plane."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, Producer

from eventyard.wire_client import SaslError, WireClient
from tests.platform.conftest import client_conf


def produce(env: dict[str, str], topic: str, values: list[bytes]) -> list[KafkaError | None]:
    """One delivery outcome per value (None: written), the topic named in full."""
    producer = Producer({**client_conf(env), "message.timeout.ms": 8000})
    outcomes: list[KafkaError | None] = []
    for value in values:
        producer.produce(topic, value, on_delivery=lambda err, msg: outcomes.append(err))
    producer.flush(20)
    return outcomes


def consume(env: dict[str, str], topic: str, group: str, count: int, timeout: float = 30) -> list[bytes]:
    """Subscribe in a group, read `count` records, commit them."""
    consumer = Consumer({**client_conf(env), "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            got.append(message.value())
        if got:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


def consumer_error(env: dict[str, str], *, group: str, topic: str) -> KafkaError:
    """The first error a subscribed consumer meets."""
    consumer = Consumer({**client_conf(env), "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is not None:
                return message.error()
        raise AssertionError("the consumer met no error")
    finally:
        consumer.close()


def authenticates(env: dict[str, str]) -> bool:
    """Whether a new connection authenticates with these credentials (SCRAM over the wire)."""
    host, _, port = env["KAFKA_URL"].split(",")[0].rpartition(":")
    try:
        with WireClient(
            host, int(port), sasl=(env["KAFKA_SASL_MECHANISM"], env["KAFKA_USERNAME"], env["KAFKA_PASSWORD"])
        ):
            return True
    except SaslError:
        return False
