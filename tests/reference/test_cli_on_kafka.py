"""The command line talks the Kafka protocol through librdkafka, so it works on Apache Kafka too:
the same topics, produce, tail and groups commands, against the reference broker."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer

from eventyard.cli import main
from eventyard.testing.kafka_reference import KafkaReference

pytestmark = pytest.mark.reference


def run(kafka: KafkaReference, *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "-b", kafka.bootstrap])
    assert result.exit_code == 0, result.output
    return result.output


def test_topics_produce_tail_and_groups_on_kafka(kafka: KafkaReference) -> None:
    run(kafka, "topics", "create", "cli-orders", "--partitions", "3")
    run(kafka, "produce", "cli-orders", "--partition", "0", "a", "b", "c", "d")
    assert "cli-orders" in run(kafka, "topics", "list")
    described = json.loads(run(kafka, "topics", "describe", "cli-orders", "--json"))
    assert [p["log_end_offset"] for p in described["partitions"]] == [4, 0, 0]
    assert described["partitions"][0]["size_bytes"] > 0  # DescribeLogDirs, answered by Kafka
    tailed = run(kafka, "tail", "cli-orders", "--from-beginning", "--max-messages", "4", "--timeout", "10")
    assert tailed.split() == ["a", "b", "c", "d"]

    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap, "group.id": "cli-billing", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe(["cli-orders"])
    read, deadline = 0, time.monotonic() + 30
    while read < 2 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            read += 1
    consumer.commit(asynchronous=False)
    group = json.loads(run(kafka, "groups", "describe", "cli-billing", "--json"))
    lags = {p["partition"]: p["lag"] for p in group["partitions"] if p["topic"] == "cli-orders"}
    assert lags[0] == 2 and group["total_lag"] == 2
    consumer.close()
    run(kafka, "groups", "reset-offsets", "cli-billing", "--topic", "cli-orders", "--to-earliest", "--yes")
    group = json.loads(run(kafka, "groups", "describe", "cli-billing", "--json"))
    assert {p["partition"]: p["committed_offset"] for p in group["partitions"]}[0] == 0
    run(kafka, "groups", "delete", "cli-billing", "--yes")
    assert "cli-billing" not in run(kafka, "groups", "list")
    run(kafka, "topics", "delete", "cli-orders", "--yes")
