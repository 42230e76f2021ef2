"""A pytest plugin for testing event-driven code against a real broker (registered as `eventyard`).

Fixtures:
    eventyard_broker      a session-wide EmbeddedBroker, in memory, in this process
    eventyard_bootstrap   its "host:port"
    eventyard_topic       a fresh topic name for each test
    eventyard_records     read_records(topic) -> every record produced to the topic so far
    wait_for              wait_for(condition, timeout=10.0): poll until condition() is truthy
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

import pytest

from eventyard.testing.embedded import EmbeddedBroker

if TYPE_CHECKING:
    from eventyard.toolkit.kafka import Record

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Call `condition` until it returns something truthy, and return that; TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{getattr(condition, '__name__', condition)!s} still false after {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="session")
def eventyard_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(data_dir=None) as broker:
        yield broker


@pytest.fixture(scope="session")
def eventyard_bootstrap(eventyard_broker: EmbeddedBroker) -> str:
    return eventyard_broker.bootstrap


@pytest.fixture
def eventyard_topic() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def eventyard_records(eventyard_bootstrap: str) -> Callable[[str], list[Record]]:
    from eventyard.toolkit.kafka import read_topic  # the Kafka client loads only when needed

    def read_records(topic: str, timeout: float = 15.0) -> list[Record]:
        return read_topic(eventyard_bootstrap, topic, timeout)

    return read_records


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., object]:
    return wait_for
