"""The pytest plugin's fixtures, as a user of the plugin sees them."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from eventyard.testing import EmbeddedBroker
from eventyard.toolkit import Record


def test_fixtures_give_a_broker_and_read_back_records(
    eventyard_broker: EmbeddedBroker,
    eventyard_bootstrap: str,
    eventyard_topic: str,
    eventyard_records: Callable[[str], list[Record]],
) -> None:
    assert eventyard_bootstrap == eventyard_broker.bootstrap
    producer = Producer({"bootstrap.servers": eventyard_bootstrap})
    for i in range(3):
        producer.produce(eventyard_topic, f"v{i}".encode(), b"k", headers=[("h", b"1")])
    producer.flush(10)
    records = eventyard_records(eventyard_topic)
    assert [(r.offset, r.key, r.value, r.headers) for r in records] == [
        (i, b"k", f"v{i}".encode(), [("h", b"1")]) for i in range(3)
    ]


def test_wait_for_returns_the_condition_or_times_out(wait_for: Callable[..., object]) -> None:
    start = time.monotonic()
    assert wait_for(lambda: time.monotonic() - start > 0.05 and "ready", timeout=5) == "ready"
    with pytest.raises(TimeoutError):
        wait_for(lambda: False, timeout=0.1)


def test_the_embedded_broker_starts_fast() -> None:
    start = time.monotonic()
    with EmbeddedBroker(data_dir=None):
        assert time.monotonic() - start < 1.0
