"""The control plane's admin connection rides out a broker restart or a short outage without being
restarted itself, and deleting an add-on while the cluster is down finishes in the background.

Each test runs its own broker, on a SASL port fixed across restarts (BrokerProcess keeps only the
plain port), and the control plane in-process against it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from fastapi.testclient import TestClient

from eventyard.platform import wire_admin
from eventyard.platform.api import admin_connection, create_app
from eventyard.platform.cluster import ClusterAdmin
from eventyard.platform.service import PlatformService
from eventyard.platform.settings import Settings
from eventyard.platform.store import Store
from eventyard.security.credentials import CredentialStore, Mechanism
from eventyard.testing import BrokerProcess
from tests.platform.clients import authenticates, consume, produce
from tests.platform.conftest import ADMIN_PASSWORD, TOKEN, make_settings, provision

pytestmark = pytest.mark.timeout(300)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker like conftest's secure one, its SASL listener on a port that survives restarts."""
    data = tmp_path / "data"
    data.mkdir()
    CredentialStore(data / "users.json").set_password("admin", Mechanism.SCRAM_SHA_512, ADMIN_PASSWORD)
    args = (
        "--authorizer", "--super-user", "User:admin", "--no-auto-create",
        "--listener", f"SASL_PLAINTEXT://127.0.0.1:{free_port()}", "--housekeeping-interval", "0.5",
    )  # fmt: skip
    process = BrokerProcess(data, *args).start()
    try:
        yield process
    finally:
        process.stop()


def platform(settings: Settings, retry_deadline_s: float = 20.0) -> tuple[PlatformService, TestClient]:
    cluster = ClusterAdmin(admin_connection(settings), retry_deadline_s=retry_deadline_s)
    service = PlatformService(settings, Store(settings.db_url), cluster)
    return service, TestClient(create_app(settings, service), headers={"Authorization": f"Bearer {TOKEN}"})


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_api_calls_succeed_right_after_a_broker_restart(
    broker: BrokerProcess, tmp_path: Path, kill: bool
) -> None:
    settings = make_settings(broker, f"sqlite:///{tmp_path / 'p.db'}")
    service, client = platform(settings)
    with client as api:
        addon = provision(api)
        name, prefix = addon["name"], addon["prefix"]
        ok(api.post(f"/v1/addons/{name}/topics", json={"name": "before"}), 201)
        env = ok(api.get(f"/v1/addons/{name}/config"))
        assert produce(env, prefix + "before", [b"one"]) == [None]
        # Every kind of admin connection is open and idle now: librdkafka's, and a pooled wire one.
        assert service.cluster.user_quota(env["KAFKA_USERNAME"])
        ok(api.get(f"/v1/addons/{name}/topics/before"))

        broker.restart(kill=kill)
        started = time.monotonic()
        # Right away, with no pause: each of these needs the cluster.
        assert len(service.cluster.brokers()) == 1
        assert ok(api.get(f"/v1/addons/{name}/topics/before"))["stored_bytes"] > 0  # DescribeLogDirs
        ok(api.post(f"/v1/addons/{name}/topics", json={"name": "after", "partitions": 2}), 201)
        ok(api.patch(f"/v1/addons/{name}/topics/after", json={"partitions": 3}))
        ok(api.get(f"/v1/addons/{name}/groups"))
        other = ok(api.post(f"/v1/addons/{name}/attachments", json={"app": "reporting"}), 201)["config"]
        rotated = ok(api.post(f"/v1/addons/{name}/credentials/rotate", json={"grace_period_s": 0}))
        elapsed = time.monotonic() - started
        print(f"after the restart ({'SIGKILL' if kill else 'SIGTERM'}): 7 calls in {elapsed:.2f}s")
        assert produce(rotated, prefix + "after", [b"two"]) == [None]
        assert consume(other, prefix + "after", prefix + "g", 1) == [b"two"]
        assert service.cluster.user_quota(rotated["KAFKA_USERNAME"])["producer_byte_rate"] > 0
        assert ok(api.delete(f"/v1/addons/{name}"))["state"] == "deleted"
    service.close()


def test_a_call_during_a_short_outage_waits_for_the_broker(broker: BrokerProcess, tmp_path: Path) -> None:
    settings = make_settings(broker, f"sqlite:///{tmp_path / 'p.db'}")
    service, client = platform(settings)
    with client as api:
        addon = provision(api)
        broker.stop()
        threading.Timer(2.0, broker.start).start()  # back within the retry deadline
        started = time.monotonic()
        created = api.post(f"/v1/addons/{addon['name']}/topics", json={"name": "patient"})
        waited = time.monotonic() - started
        print(f"topic created {waited:.2f}s into a 2s outage")
        assert created.status_code == 201, created.text
        assert waited >= 1.5
        env = ok(api.get(f"/v1/addons/{addon['name']}/config"))
        assert produce(env, addon["prefix"] + "patient", [b"x"]) == [None]
    service.close()


def test_create_topic_retried_after_a_lost_answer_is_done(broker: BrokerProcess) -> None:
    """CreateTopics is not idempotent; TOPIC_ALREADY_EXISTS on a retry means the first one worked."""
    connection = wire_admin.Connection(
        f"127.0.0.1:{_sasl_port(broker)}", "SASL_PLAINTEXT", "SCRAM-SHA-512", "admin", ADMIN_PASSWORD
    )
    cluster = ClusterAdmin(connection)
    real = cluster.admin.create_topics
    calls = []

    def answer_lost_once(*args: Any, **kwargs: Any) -> Any:
        futures = real(*args, **kwargs)
        calls.append(futures)
        if len(calls) > 1:
            return futures
        for future in futures.values():  # it went through on the broker...
            future.result(20)
        lost: Future[None] = Future()  # ...but the answer never came back
        lost.set_exception(KafkaException(KafkaError(KafkaError._TRANSPORT)))
        return {name: lost for name in futures}

    cluster.admin.create_topics = answer_lost_once  # type: ignore[method-assign]
    cluster.create_topic("lost-answer", 1, 1, {})
    assert len(calls) == 2 and cluster.topics("lost-answer") == {"lost-answer": 1}


def _sasl_port(broker: BrokerProcess) -> int:
    return broker.listener_ports["SASL_PLAINTEXT"]


def test_delete_while_the_cluster_is_down_finishes_in_the_background(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    settings = make_settings(broker, f"sqlite:///{tmp_path / 'p.db'}", reap_interval_s=0.5)
    service, client = platform(settings, retry_deadline_s=2.0)  # answer fast while it is down
    with client as api:
        addon = provision(api)
        name, prefix = addon["name"], addon["prefix"]
        ok(api.post(f"/v1/addons/{name}/topics", json={"name": "doomed"}), 201)
        env = ok(api.get(f"/v1/addons/{name}/config"))
        assert authenticates(env)

        broker.stop()
        deleted = api.delete(f"/v1/addons/{name}")
        assert deleted.status_code == 202, deleted.text
        assert deleted.json()["state"] == "deprovisioning" and deleted.json()["reason"]
        shown = ok(api.get(f"/v1/addons/{name}"))
        assert shown["state"] == "deprovisioning" and "cluster" in shown["reason"], shown
        assert api.get(f"/v1/addons/{name}/config").status_code == 409  # no longer usable
        time.sleep(1.5)  # a few reaper rounds with the cluster still down: it stays pending
        assert ok(api.get(f"/v1/addons/{name}"))["state"] == "deprovisioning"

        broker.start()
        deadline = time.monotonic() + 60
        while api.get(f"/v1/addons/{name}").status_code != 404:
            assert time.monotonic() < deadline, api.get(f"/v1/addons/{name}").json()
            time.sleep(0.2)
        print(f"deprovisioned {60 - (deadline - time.monotonic()):.2f}s after the broker came back")
        # Gone from the cluster: topic, credential, its quota, the tenant limits.
        admin = AdminClient(
            {
                "bootstrap.servers": f"127.0.0.1:{_sasl_port(broker)}",
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "admin",
                "sasl.password": ADMIN_PASSWORD,
            }
        )
        assert not [t for t in admin.list_topics(timeout=20).topics if t.startswith(prefix)]
        assert not authenticates(env)
        assert service.cluster.user_quota(env["KAFKA_USERNAME"]) == {}
        assert wire_admin.get_quotas(service.cluster.connection, "tenant", prefix) == {}
        assert api.get("/v1/addons").json() == []
    service.close()
