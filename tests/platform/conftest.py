"""Fixtures: a real Eventyard broker with SASL, the authorizer and a SCRAM super user (the control
plane's admin), and the control plane's API in-process (FastAPI TestClient) against it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from fastapi.testclient import TestClient

from eventyard.platform.api import build_service, create_app
from eventyard.platform.plans import DAY_MS, HOUR_MS, PLANS, Plan
from eventyard.platform.service import PlatformService
from eventyard.platform.settings import Settings
from eventyard.security.credentials import CredentialStore, Mechanism
from eventyard.testing import BrokerProcess

ADMIN_PASSWORD = "admin-pa55-for-tests"
TOKEN = "operator-token-for-tests"
# A small plan, so that tests can reach its limits with few partitions.
TINY = Plan(
    "tiny",
    produce_byte_rate=1024 * 1024,
    consume_byte_rate=1024 * 1024,
    capacity_bytes=1024 * 1024,
    max_partitions=4,
    max_topics=3,
    retention_ms_min=HOUR_MS,
    retention_ms_max=2 * DAY_MS,
    compaction_allowed=True,
    max_partitions_per_topic=3,
    default_partitions=1,
)


def start_secure_broker(data_dir: Path) -> BrokerProcess:
    """A broker whose only super user is `admin` (SCRAM-SHA-512, seeded in its credential file)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    CredentialStore(data_dir / "users.json").set_password("admin", Mechanism.SCRAM_SHA_512, ADMIN_PASSWORD)
    args = (
        "--authorizer", "--super-user", "User:admin", "--no-auto-create",
        "--listener", "SASL_PLAINTEXT://127.0.0.1:0", "--housekeeping-interval", "0.5",
    )  # fmt: skip
    return BrokerProcess(data_dir, *args).start()


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    broker = start_secure_broker(tmp_path_factory.mktemp("platform-broker") / "data")
    try:
        yield broker
    finally:
        broker.stop()


def sasl_bootstrap(broker: BrokerProcess) -> str:
    return f"127.0.0.1:{broker.listener_ports['SASL_PLAINTEXT']}"


def make_settings(broker: BrokerProcess, db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "token": TOKEN,
        "db_url": db_url,
        "admin_security_protocol": "SASL_PLAINTEXT",
        "admin_user": "admin",
        "admin_password": ADMIN_PASSWORD,
        "reap_interval_s": 3600.0,  # tests reap explicitly
        "plans": {**PLANS, "tiny": TINY},
    }
    values.update(overrides)
    if "bootstrap" not in values:
        values["bootstrap"] = sasl_bootstrap(broker)
    return Settings(**values)


@pytest.fixture(scope="session")
def platform_settings(secure_broker: BrokerProcess, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(secure_broker, f"sqlite:///{tmp_path_factory.mktemp('platform') / 'platform.db'}")


@pytest.fixture(scope="session")
def service(platform_settings: Settings) -> Iterator[PlatformService]:
    platform = build_service(platform_settings)
    yield platform
    platform.close()


@pytest.fixture(scope="session")
def api(platform_settings: Settings, service: PlatformService) -> Iterator[TestClient]:
    with TestClient(create_app(platform_settings, service)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client


def unique_app(stem: str = "app") -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def wait_available(api: TestClient, name: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = api.get(f"/v1/addons/{name}").json()
        if body["state"] != "provisioning" or time.monotonic() > deadline:
            return dict(body)
        time.sleep(0.05)


def provision(api: TestClient, plan: str = "tiny", app: str | None = None) -> dict[str, Any]:
    response = api.post("/v1/addons", json={"app": app or unique_app(), "plan": plan})
    assert response.status_code == 202, response.text
    body = wait_available(api, response.json()["name"])
    assert body["state"] == "available", body
    return body


def client_conf(env: dict[str, str]) -> dict[str, Any]:
    """librdkafka settings from the config vars an app gets."""
    conf = {
        "bootstrap.servers": env["KAFKA_URL"],
        "security.protocol": env["KAFKA_SECURITY_PROTOCOL"],
        "sasl.mechanism": env["KAFKA_SASL_MECHANISM"],
        "sasl.username": env["KAFKA_USERNAME"],
        "sasl.password": env["KAFKA_PASSWORD"],
    }
    if "KAFKA_TRUSTED_CERT" in env:
        conf["ssl.ca.pem"] = env["KAFKA_TRUSTED_CERT"]
    return conf


@contextmanager
def sasl_ssl_platform(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """A broker with only a SASL_SSL listener (a throwaway CA's certificate) and a control plane whose
    admin connection and apps use it: the API client and the CA file apps are told to trust."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert, key = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server-key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    data = tmp_path / "data"
    data.mkdir()
    CredentialStore(data / "users.json").set_password("admin", Mechanism.SCRAM_SHA_512, ADMIN_PASSWORD)
    args = (
        "--authorizer", "--super-user", "User:admin", "--no-auto-create",
        "--listener", "SASL_SSL://127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key),
    )  # fmt: skip
    with BrokerProcess(data, *args) as broker:
        settings = make_settings(
            broker,
            f"sqlite:///{tmp_path / 'p.db'}",
            bootstrap=f"127.0.0.1:{broker.listener_ports['SASL_SSL']}",
            admin_security_protocol="SASL_SSL",
            app_security_protocol="SASL_SSL",
            ca_file=ca_file,
        )
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            yield api, ca_file
