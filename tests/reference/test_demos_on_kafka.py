"""The toolkit's demos on Apache Kafka: the scenarios of tests/toolkit/test_demo.py and
test_orders_demo.py, run by the same functions against the single-node reference Kafka. Only the
bootstrap address differs; the demos and the toolkit are the code users run."""

from __future__ import annotations

import uuid

import pytest

from eventyard.testing.kafka_reference import KafkaReference
from tests.toolkit.demo_scenarios import (
    cart_demo_prints_cart_items,
    interactive_cart_demo_reads_commands,
    late_subscriber_gets_every_order,
    orders_demo_reaches_every_service,
)

pytestmark = [pytest.mark.reference, pytest.mark.timeout(300)]


def test_cart_demo_prints_the_talks_table_on_kafka(kafka: KafkaReference) -> None:
    cart_demo_prints_cart_items(kafka.bootstrap)


def test_interactive_cart_demo_on_kafka(kafka: KafkaReference) -> None:
    interactive_cart_demo_reads_commands(kafka.bootstrap)


def test_orders_demo_fans_out_on_kafka(kafka: KafkaReference) -> None:
    orders_demo_reaches_every_service(kafka.bootstrap)


def test_a_late_subscriber_on_kafka_gets_every_order(kafka: KafkaReference) -> None:
    # Kafka is slower than the embedded broker to form a new group (a JoinGroup round per group)
    late_subscriber_gets_every_order(kafka.bootstrap, f"orders-{uuid.uuid4().hex[:10]}", timeout=60)
