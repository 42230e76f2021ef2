"""Provisioning time: from POST /v1/addons to a working credential, on Eventyard and on Apache Kafka.

The control plane runs in this process behind a real HTTP server (uvicorn on a free port) and is
driven over HTTP with httpx, as an operator's tooling would. Each run, one add-on on plan basic-0:

    request    POST /v1/addons answered (202, state provisioning)
    available  GET /v1/addons/{name} says available (polled every 10 ms): SCRAM user, ACLs, quotas
    topic      POST /v1/addons/{name}/topics answered (an app cannot create topics itself)
    produce    the first record delivered with the config from GET /v1/addons/{name}/config,
               retried every 20 ms until the credential and its ACLs have reached the broker

"total" is request to produce: the time from asking for an add-on to a working credential.

    python bench/provisioning.py [--runs 5] [--no-kafka]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from confluent_kafka import KafkaError, Message, Producer

from eventyard.platform.api import create_app
from eventyard.platform.settings import Settings
from eventyard.security.credentials import CredentialStore, Mechanism
from eventyard.testing import BrokerProcess

TOKEN = "bench-token"
ADMIN_PASSWORD = "bench-admin-secret"
PHASES = ("request", "available", "topic", "produce")


@dataclass
class Target:
    name: str
    bootstrap: str  # the SASL_PLAINTEXT listener: the admin's and the apps'


@contextmanager
def eventyard_broker(work: Path) -> Iterator[Target]:
    """Eventyard with the authorizer and a SASL listener; `admin` (SCRAM-SHA-512) is the super user."""
    data = work / "eventyard"
    data.mkdir(parents=True)
    CredentialStore(data / "users.json").set_password("admin", Mechanism.SCRAM_SHA_512, ADMIN_PASSWORD)
    args = (
        "--authorizer",
        "--super-user",
        "User:admin",
        "--no-auto-create",
        "--listener",
        "SASL_PLAINTEXT://127.0.0.1:0",
    )
    broker = BrokerProcess(data, *args).start()
    try:
        yield Target("Eventyard", f"127.0.0.1:{broker.listener_ports['SASL_PLAINTEXT']}")
    finally:
        broker.stop()


@contextmanager
def kafka_broker(work: Path) -> Iterator[Target]:
    """Apache Kafka (reference harness) with only a SASL_PLAINTEXT listener and the StandardAuthorizer."""
    from eventyard.testing.kafka_reference import KafkaReference

    with KafkaReference(work / "kafka", sasl_users={"admin": ADMIN_PASSWORD}) as kafka:
        yield Target("Apache Kafka", kafka.bootstrap)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def control_plane(target: Target, db: Path) -> Iterator[httpx.Client]:
    settings = Settings(
        token=TOKEN,
        db_url=f"sqlite:///{db}",
        bootstrap=target.bootstrap,
        admin_security_protocol="SASL_PLAINTEXT",
        admin_user="admin",
        admin_password=ADMIN_PASSWORD,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the control plane did not start")
        time.sleep(0.01)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)


def client_conf(env: dict[str, str]) -> dict[str, Any]:
    return {
        "bootstrap.servers": env["KAFKA_URL"],
        "security.protocol": env["KAFKA_SECURITY_PROTOCOL"],
        "sasl.mechanism": env["KAFKA_SASL_MECHANISM"],
        "sasl.username": env["KAFKA_USERNAME"],
        "sasl.password": env["KAFKA_PASSWORD"],
    }


def produce_once(env: dict[str, str], topic: str) -> bool:
    """One record with a fresh producer: True when delivered."""
    delivered: list[bool] = []

    def report(err: KafkaError | None, _msg: Message) -> None:
        delivered.append(err is None)

    producer = Producer({**client_conf(env), "message.timeout.ms": 5000, "acks": "all", "log_level": 0})
    producer.produce(topic, value=b"first", on_delivery=report)
    producer.flush(10)
    return delivered == [True]


def check(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
        )
    return response.json()


def provision_once(client: httpx.Client) -> tuple[dict[str, float], int]:
    """Seconds from the request to the end of each phase, and how many produce attempts it took."""
    marks: dict[str, float] = {}
    start = time.perf_counter()
    created = check(
        client.post("/v1/addons", json={"app": f"bench-{uuid.uuid4().hex[:8]}", "plan": "basic-0"}), 202
    )
    marks["request"] = time.perf_counter() - start
    name = created["name"]
    while True:
        state = check(client.get(f"/v1/addons/{name}"), 200)["state"]
        if state == "available":
            break
        if state != "provisioning":
            raise RuntimeError(f"add-on {name} is {state}")
        time.sleep(0.01)
    marks["available"] = time.perf_counter() - start
    topic = check(client.post(f"/v1/addons/{name}/topics", json={"name": "first", "partitions": 1}), 201)
    marks["topic"] = time.perf_counter() - start
    env = check(client.get(f"/v1/addons/{name}/config"), 200)
    attempts = 1
    while not produce_once(env, topic["full_name"]):
        attempts += 1
        if time.perf_counter() - start > 120:
            raise RuntimeError(f"no record delivered with {name}'s credential in 120 s")
        time.sleep(0.02)
    marks["produce"] = time.perf_counter() - start
    check(client.delete(f"/v1/addons/{name}"), 200)
    return marks, attempts


def measure(target: Target, work: Path, runs: int) -> tuple[dict[str, float], list[int]]:
    samples: dict[str, list[float]] = {phase: [] for phase in PHASES}
    attempts: list[int] = []
    with control_plane(target, work / f"{target.name.replace(' ', '-').lower()}.db") as client:
        provision_once(client)  # warm-up: connections, the first topic's metadata
        for _ in range(runs):
            marks, tries = provision_once(client)
            for phase in PHASES:
                samples[phase].append(marks[phase])
            attempts.append(tries)
            print(
                f"  {target.name}: "
                + ", ".join(f"{p} {marks[p] * 1000:.0f} ms" for p in PHASES)
                + f" ({tries} tries)"
            )
    return {phase: statistics.median(values) for phase, values in samples.items()}, attempts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-kafka", action="store_true", help="measure Eventyard only")
    args = parser.parse_args()
    results: dict[str, tuple[dict[str, float], list[int]]] = {}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-provisioning-")))
        with eventyard_broker(work) as target:
            results[target.name] = measure(target, work, args.runs)
        if not args.no_kafka:
            with kafka_broker(work) as target:
                results[target.name] = measure(target, work, args.runs)
    print(f"\n# median of {args.runs} add-ons (plan basic-0), milliseconds from POST /v1/addons")
    names = list(results)
    print(f"{'phase':<28}" + "".join(f"{name:>16}" for name in names))
    labels = {
        "request": "202 answered",
        "available": "state available",
        "topic": "topic created",
        "produce": "first record delivered",
    }
    for phase in PHASES:
        print(f"{labels[phase]:<28}" + "".join(f"{results[n][0][phase] * 1000:>13.0f} ms" for n in names))
    print(f"{'produce attempts (each run)':<28}" + "".join(f"{results[n][1]!s:>16}" for n in names))


if __name__ == "__main__":
    main()
