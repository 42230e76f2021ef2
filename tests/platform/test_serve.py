"""`eventyard platform serve`: the real server (uvicorn) in a child process, its state kept across a
restart; and the whole control plane on a PostgreSQL store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from eventyard.platform.api import create_app
from eventyard.platform.store import Addon, Attachment, Credential, Store
from eventyard.testing import BrokerProcess
from tests.platform.clients import authenticates, consume, produce
from tests.platform.conftest import (
    ADMIN_PASSWORD,
    TOKEN,
    make_settings,
    provision,
    sasl_bootstrap,
    wait_available,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def platform_server(broker: BrokerProcess, db: Path, port: int) -> Iterator[httpx.Client]:
    env = dict(
        os.environ,
        EVENTYARD_PLATFORM_TOKEN=TOKEN,
        EVENTYARD_PLATFORM_ADMIN_PASSWORD=ADMIN_PASSWORD,
        PYTHONUNBUFFERED="1",
    )
    args = [
        sys.executable, "-m", "eventyard", "platform", "serve", "--port", str(port),
        "--db", f"sqlite:///{db}", "--bootstrap", sasl_bootstrap(broker), "--admin-user", "admin",
    ]  # fmt: skip
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read() if process.stdout else ""
                    raise AssertionError(f"platform serve did not start:\n{output}")
                time.sleep(0.1)
            yield client
    finally:
        process.terminate()
        process.wait(15)


def test_serve_and_restart(secure_broker: BrokerProcess, tmp_path: Path) -> None:
    db, port = tmp_path / "platform.db", _free_port()
    with platform_server(secure_broker, db, port) as client:
        assert client.get("/v1/plans", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert {p["name"] for p in client.get("/v1/plans").json()} >= {"basic-0", "basic-1", "basic-2"}
        created = client.post("/v1/addons", json={"app": "served-app", "plan": "basic-0"})
        assert created.status_code == 202
        name = created.json()["name"]
        deadline = time.monotonic() + 30
        while (
            client.get(f"/v1/addons/{name}").json()["state"] == "provisioning" and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert client.get(f"/v1/addons/{name}").json()["state"] == "available"
        assert (
            client.post(f"/v1/addons/{name}/topics", json={"name": "kept", "partitions": 1}).status_code
            == 201
        )
        env = client.get(f"/v1/addons/{name}/config").json()
        assert client.get("/openapi.json").json()["info"]["title"] == "Eventyard control plane"
    with platform_server(secure_broker, db, port) as client:  # a restart: the store keeps it all
        assert client.get(f"/v1/addons/{name}/config").json() == env
        assert [t["name"] for t in client.get(f"/v1/addons/{name}/topics").json()] == ["kept"]
        assert produce(env, env["KAFKA_PREFIX"] + "kept", [b"still here"]) == [None]
        assert client.delete(f"/v1/addons/{name}").status_code == 200


def test_control_plane_on_postgresql(secure_broker: BrokerProcess) -> None:
    from eventyard.testing.postgres import PostgresNotFound, PostgresServer

    try:
        server = PostgresServer().start()
    except PostgresNotFound as missing:
        if os.environ.get("EVENTYARD_POSTGRES") == "1":
            pytest.fail(f"EVENTYARD_POSTGRES=1 but {missing}", pytrace=False)
        pytest.skip(f"needs PostgreSQL's server binaries: {missing}")
    try:
        settings = make_settings(secure_broker, server.create_database("platform_e2e"))
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            addon = provision(api)
            env = api.get(f"/v1/addons/{addon['name']}/config").json()
            assert api.post(f"/v1/addons/{addon['name']}/topics", json={"name": "pg"}).status_code == 201
            assert produce(env, addon["prefix"] + "pg", [b"via postgres"]) == [None]
            assert consume(env, addon["prefix"] + "pg", addon["prefix"] + "g", 1) == [b"via postgres"]
            rotated = api.post(f"/v1/addons/{addon['name']}/credentials/rotate", json={"grace_period_s": 0})
            assert rotated.status_code == 200
            assert api.delete(f"/v1/addons/{addon['name']}").status_code == 200
    finally:
        server.close()


def test_provisioning_resumes_after_a_crash(secure_broker: BrokerProcess, tmp_path: Path) -> None:
    """An add-on recorded but never provisioned (the control plane died in between) is finished
    when the control plane starts again."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = Store(url)
    store.insert_addon(
        Addon("kafka-orphan", "orphan-app", "tiny", "orphan-4242.", "provisioning", None, False, 1, 1),
        Attachment("kafka-orphan", "orphan-app", "read-write", 1),
    )
    store.insert_credential(
        Credential("orphan-user", "kafka-orphan", "orphan-app", "pw-orphan-1", "read-write", 1, None)
    )
    store.close()
    with TestClient(
        create_app(make_settings(secure_broker, url)), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as api:
        assert wait_available(api, "kafka-orphan")["state"] == "available"
        env = api.get("/v1/addons/kafka-orphan/config").json()
        assert env["KAFKA_USERNAME"] == "orphan-user" and authenticates(env)
        assert api.delete("/v1/addons/kafka-orphan").status_code == 200
        assert not authenticates(env)
