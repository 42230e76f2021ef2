"""Shared fixtures: real broker processes on free ports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventyard.testing import BrokerProcess


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker process, on disk, shared by the session's tests (each uses its own topics)."""
    with BrokerProcess(tmp_path_factory.mktemp("broker-data"), "--partitions", "3") as process:
        yield process


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker of the test's own, for tests that kill or restart it."""
    with BrokerProcess(tmp_path / "data") as process:
        yield process


@pytest.fixture
def topic_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"
