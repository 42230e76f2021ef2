"""The brokers under test: Eventyard in a child process, Apache Kafka (reference harness), or any
running broker given its bootstrap address; plus startup time and idle memory of the first two."""

from __future__ import annotations

import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from eventyard.protocol.messages.api_versions_request import ApiVersionsRequest
from eventyard.testing import BrokerProcess
from eventyard.wire_client import WireClient

EVENTYARD = "eventyard"
KAFKA = "apache kafka"


@dataclass(frozen=True)
class Target:
    name: str
    bootstrap: str
    pid: int | None  # None for a broker we did not start: no CPU figures for it


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) a process has used so far: shows whether the broker is the bottleneck.

    NaN for a broker we did not start (no pid): every share computed from it is NaN, printed '-'."""
    if pid is None:
        return math.nan
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]) / 1024


def kafka_version() -> str:
    from eventyard.testing.kafka_reference import DEFAULT_VERSION

    return DEFAULT_VERSION


@contextmanager
def eventyard(broker_args: list[str]) -> Iterator[Target]:
    data = Path(tempfile.mkdtemp(prefix="eventyard-bench-"))
    broker = BrokerProcess(data, *broker_args).start()
    try:
        yield Target(EVENTYARD, broker.bootstrap, broker.process.pid if broker.process else None)
    finally:
        broker.stop()
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def kafka() -> Iterator[Target]:
    from eventyard.testing.kafka_reference import KafkaReference

    with KafkaReference(heap="1g") as node:
        yield Target(KAFKA, node.bootstrap, node.pid)


@contextmanager
def all_targets(
    with_kafka: bool, bootstrap: str | None, name: str | None, broker_args: list[str]
) -> Iterator[list[Target]]:
    """Every broker asked for, all running at once so that the runs can alternate between them
    (the machine is shared and noisy: alternating spreads the noise over all brokers alike)."""
    with ExitStack() as stack:
        targets = [stack.enter_context(eventyard(broker_args))]
        if with_kafka:
            targets.append(stack.enter_context(kafka()))
        if bootstrap:
            targets.append(Target(name or bootstrap, bootstrap, None))
        yield targets


def first_answer(port: int, start: float) -> float:
    """Seconds from `start` until the broker on `port` answers an ApiVersions request."""
    while True:
        try:
            with WireClient("127.0.0.1", port) as client:
                client.request(ApiVersionsRequest(), 0)
                return time.perf_counter() - start
        except OSError:
            time.sleep(0.002)


def eventyard_startup_and_memory(runs: int) -> tuple[float, float]:
    """Median seconds from process start to the first answered request, and idle RSS in MB."""
    times, rss = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as data, socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            probe.close()
            start = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, "-m", "eventyard", "serve", "--port", str(port), "--data-dir", data],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            times.append(first_answer(port, start))
            time.sleep(1.0)
            rss.append(rss_mb(process.pid))
            process.terminate()
            process.wait()
    return statistics.median(times), statistics.median(rss)


def kafka_startup_and_memory(runs: int) -> tuple[float, float]:
    """Apache Kafka's time to a ready single node (storage format included) and its idle RSS in MB."""
    from eventyard.testing.kafka_reference import KafkaReference

    times, rss = [], []
    for _ in range(runs):
        node = KafkaReference()
        start = time.perf_counter()
        node.start()
        times.append(time.perf_counter() - start)
        time.sleep(1.0)
        rss.append((node.rss_bytes() or 0) / 2**20)
        node.close()
    return statistics.median(times), statistics.median(rss)
