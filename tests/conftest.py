"""Shared fixtures: real broker processes on free ports.

The interop tests run against a target: `eventyard` (the default) or `kafka`, a real Apache Kafka
(`eventyard.testing.kafka_reference.KafkaReference`, jars fetched by scripts/fetch-kafka.sh). Choose it
with `pytest --target kafka` or `EVENTYARD_TARGET=kafka` (the option wins). The `broker` and
`fresh_broker` fixtures then start that target. Tests of Eventyard's own machinery carry
`@pytest.mark.eventyard_only(reason=...)` and skip, with that reason, against Kafka; so do the tests
outside tests/interop that use those fixtures (they test Eventyard's own tools).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventyard.testing import BrokerProcess

TARGETS = ("eventyard", "kafka")
_BROKER_FIXTURES = {"broker", "fresh_broker"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--target",
        choices=TARGETS,
        default=None,
        help="broker the interop tests run against: eventyard (default) or kafka "
        "(a real Apache Kafka; env EVENTYARD_TARGET, the option wins)",
    )


def target_of(config: pytest.Config) -> str:
    chosen = config.getoption("--target") or os.environ.get("EVENTYARD_TARGET") or "eventyard"
    if chosen not in TARGETS:
        raise pytest.UsageError(f"EVENTYARD_TARGET={chosen!r}: choose one of {', '.join(TARGETS)}")
    return str(chosen)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "eventyard_only(reason): tests Eventyard's own machinery or a deliberate Eventyard choice; "
        "skipped, with the reason, when the target is kafka",
    )
    # The option wins over the environment; settle it there too, so that test modules can read
    # os.environ["EVENTYARD_TARGET"] when they are imported (xfail conditions on a Kafka difference).
    os.environ["EVENTYARD_TARGET"] = target_of(config)  # a bad value is a usage error up front


def pytest_report_header(config: pytest.Config) -> str:
    return f"broker target: {target_of(config)}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if target_of(config) != "kafka":
        return
    interop = Path(__file__).parent / "interop"
    for item in items:
        marker = item.get_closest_marker("eventyard_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"Eventyard only: {reason or 'no reason given'}"))
        elif interop not in item.path.parents and _BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(
                pytest.mark.skip(reason="Eventyard only: --target kafka applies to tests/interop")
            )


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config) -> str:
    """The broker the interop tests run against: "eventyard" or "kafka"."""
    return target_of(pytestconfig)


@pytest.fixture(scope="session")
def kafka_reference_libs(target: str) -> Path:
    """Kafka's jars (fetched on first use); a missing JDK or Maven fails the run, not skips it."""
    from eventyard.testing.kafka_reference import (
        DEFAULT_VERSION,
        KafkaReferenceUnavailable,
        fetch_kafka,
        java_executable,
    )

    try:
        java_executable()
        return fetch_kafka(DEFAULT_VERSION)
    except KafkaReferenceUnavailable as exc:
        pytest.fail(f"--target kafka: {exc}", pytrace=False)


def _kafka(work_dir: Path, libs: Path, partitions: int) -> Any:
    from eventyard.testing.kafka_reference import KafkaReference

    return KafkaReference(work_dir, partitions=partitions, libs=libs)


@pytest.fixture(scope="session")
def broker(
    target: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One broker process, on disk, shared by the session's tests (each uses its own topics)."""
    if target == "kafka":
        libs = request.getfixturevalue("kafka_reference_libs")
        with _kafka(tmp_path_factory.mktemp("kafka-broker"), libs, partitions=3) as node:
            yield node
        return
    with BrokerProcess(tmp_path_factory.mktemp("broker-data"), "--partitions", "3") as process:
        yield process


@pytest.fixture
def fresh_broker(target: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A broker of the test's own, for tests that kill or restart it."""
    if target == "kafka":
        libs = request.getfixturevalue("kafka_reference_libs")
        with _kafka(tmp_path / "kafka", libs, partitions=1) as node:
            yield node
        return
    with BrokerProcess(tmp_path / "data") as process:
        yield process


@pytest.fixture
def topic_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"
