"""Fixtures for the reference-broker tests: a real Apache Kafka, fetched by scripts/fetch-kafka.sh.

These tests run when a JDK 17+ and Maven (or already fetched jars) are at hand, and skip otherwise.
EVENTYARD_REFERENCE=0 skips them; EVENTYARD_REFERENCE=1 makes a missing Kafka an error, not a skip.
Select them alone with `pytest -m reference`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventyard.testing.kafka_reference import (
    DEFAULT_VERSION,
    KafkaReference,
    KafkaReferenceUnavailable,
    fetch_kafka,
    java_executable,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reference: runs against a real Apache Kafka (tests/reference)")


@pytest.fixture(scope="session")
def kafka_libs() -> Path:
    """Kafka's jars, fetched on first use (a no-op once cached in .cache/kafka)."""
    mode = os.environ.get("EVENTYARD_REFERENCE", "")
    if mode == "0":
        pytest.skip("EVENTYARD_REFERENCE=0")
    try:
        java_executable()
        return fetch_kafka(DEFAULT_VERSION)
    except KafkaReferenceUnavailable as exc:
        if mode == "1":
            pytest.fail(str(exc))
        pytest.skip(f"reference Kafka unavailable: {exc}")


@pytest.fixture(scope="session")
def kafka(kafka_libs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaReference]:
    """One single-node Kafka shared by the session's tests (each uses its own topics)."""
    with KafkaReference(tmp_path_factory.mktemp("kafka"), partitions=3, libs=kafka_libs) as node:
        yield node


SASL_USERS = {"admin": "admin-secret", "bob": "bob-secret"}


@pytest.fixture(scope="session")
def kafka_sasl(kafka_libs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaReference]:
    """One single-node Kafka with only a SASL_PLAINTEXT client listener and the StandardAuthorizer:
    `admin` is the super user, `bob` a user with no ACLs (tests grant what they need)."""
    work_dir = tmp_path_factory.mktemp("kafka-sasl")
    with KafkaReference(work_dir, partitions=1, libs=kafka_libs, sasl_users=SASL_USERS) as node:
        yield node
