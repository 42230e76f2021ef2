"""Clients in other languages against a real broker process: the Apache Kafka Java client, franz-go, KafkaJS.

Each is a small program under clients/, built by scripts/build-clients.sh with its own toolchain (cached
under .cache/), that runs one scenario (admin, produce or consume) and prints a JSON summary line.
A language whose toolchain is not on this machine is skipped; one that is there must build and pass.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from eventyard.testing import BrokerProcess

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "scripts" / "build-clients.sh"
RECORDS = 1000
PARTITIONS = 3

# The tools each client needs, to build and to run (as scripts/build-clients.sh checks them too).
TOOLS = {"java": ("mvn", "java"), "go": ("go",), "kafkajs": ("npm", "node")}
EXPECTED_CLIENT = {"java": "kafka-clients", "go": "franz-go", "kafkajs": "kafkajs"}


def command(language: str) -> list[str]:
    if language == "java":
        target = ROOT / "clients" / "java" / "target"
        return ["java", "-cp", f"{target / 'classes'}:{target / 'lib'}/*", "eventyard.clients.Scenario"]
    if language == "go":
        return [str(ROOT / ".cache" / "go" / "bin" / "eventyard-franz")]
    return ["node", str(ROOT / "clients" / "kafkajs" / "index.js")]


@pytest.fixture(scope="module", params=sorted(TOOLS))
def language(request: pytest.FixtureRequest) -> str:
    """A language whose client program is built (skipped if its toolchain is not on this machine)."""
    name: str = request.param
    missing = [tool for tool in TOOLS[name] if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{name} client: toolchain not installed ({', '.join(missing)} not on PATH)")
    done = subprocess.run(["bash", str(BUILD), name], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"building the {name} client failed:\n{done.stdout}\n{done.stderr}"
    return name


def run(language: str, broker: BrokerProcess, scenario: str, topic: str) -> dict[str, object]:
    """Run one scenario; its JSON summary. A non-zero exit fails the test with the program's output."""
    done = subprocess.run(
        [*command(language), broker.bootstrap, scenario, topic],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, f"{language} {scenario} exited {done.returncode}:\n{output}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, f"expected one JSON summary line, got:\n{done.stdout}"
    summary: dict[str, object] = json.loads(lines[0])
    assert summary["client"] == EXPECTED_CLIENT[language]
    assert summary["scenario"] == scenario
    assert summary["topic"] == topic
    return summary


def new_topic(language: str) -> str:
    return f"{language}-{uuid.uuid4().hex[:10]}"


def test_admin(language: str, broker: BrokerProcess) -> None:
    """Create a 3-partition topic, describe it, find it in the listing, delete it."""
    topic = new_topic(language)
    summary = run(language, broker, "admin", topic)
    assert summary["partitions"] == PARTITIONS
    assert summary["listed"] is True
    assert summary["deleted"] is True


def test_produce_then_group_consume(language: str, broker: BrokerProcess) -> None:
    """1000 keyed records in (idempotent, acks=all, lz4 for Java and Go), all read once by a group that
    commits them, then a second member of the same group gets nothing new."""
    topic = new_topic(language)
    produced = run(language, broker, "produce", topic)
    assert produced["produced"] == RECORDS
    assert produced["partitions_used"] == PARTITIONS  # keys spread over every partition

    consumed = run(language, broker, "consume", topic)
    assert consumed["consumed"] == RECORDS
    assert consumed["unique_keys"] == RECORDS
    assert consumed["mismatched"] == 0
    assert consumed["committed"] == RECORDS  # the committed offsets add up to every record
    assert consumed["second_assigned"] == PARTITIONS
    assert consumed["second_consumed"] == 0
