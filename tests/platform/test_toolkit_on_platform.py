"""The toolkit as a tenant of the platform, end to end: the control plane over a SASL Eventyard
broker provisions an add-on and its topics, and the demos run unchanged as the add-on's apps,
configured by the add-on's config vars only (eventyard.toolkit.config_from_env), every name under
the add-on's prefix."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError
from fastapi.testclient import TestClient

from eventyard.platform.service import PlatformService
from eventyard.toolkit import (
    EventPublisher,
    MissingTopic,
    PublishError,
    RecordedEvent,
    Worker,
    config_from_env,
    ensure_topic,
    read_topic,
)
from eventyard.toolkit.kafka import PREFIX, client_config
from examples.cart.app import SCRIPT, CartService, format_table, run
from examples.orders.domain import OrderPlaced
from examples.orders.domain import events as order_events
from tests.platform.conftest import (
    provision,
    sasl_ssl_platform,
    unique_app,
)
from tests.toolkit.demo_scenarios import CART_ITEMS_TABLE, ROOT

pytestmark = pytest.mark.timeout(300)

ORDER_SERVICES = ("inventory", "shipping", "email", "analytics")


def run_as_app(module: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`python -m <module>` as the add-on's app: its config vars are its only Kafka settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def create_topic(api: TestClient, addon: str, topic: str, partitions: int) -> None:
    response = api.post(f"/v1/addons/{addon}/topics", json={"name": topic, "partitions": partitions})
    assert response.status_code == 201, response.text


def config_of(api: TestClient, addon: str) -> dict[str, str]:
    env: dict[str, str] = api.get(f"/v1/addons/{addon}/config").json()
    return env


def test_config_from_env_maps_the_config_vars() -> None:
    env = {
        "KAFKA_URL": "kafka+ssl://a.example:9096, kafka+ssl://b.example:9096",
        "KAFKA_PREFIX": "misty-otter-4821.",
        "KAFKA_USERNAME": "u",
        "KAFKA_PASSWORD": "p",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_TRUSTED_CERT": "-----BEGIN CERTIFICATE-----\n...",
    }
    config = config_from_env(env)
    assert config == {
        "bootstrap.servers": "a.example:9096,b.example:9096",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.pem": env["KAFKA_TRUSTED_CERT"],
        PREFIX: "misty-otter-4821.",
    }
    assert PREFIX not in client_config(config)  # librdkafka never sees it


def test_the_cart_demo_runs_as_a_tenant_and_tenants_are_isolated(api: TestClient) -> None:
    first, second = provision(api, plan="basic-0"), provision(api, plan="basic-0")
    for addon in (first, second):
        create_topic(api, addon["name"], "carts", 3)
    env_a, env_b = config_of(api, first["name"]), config_of(api, second["name"])

    result = run_as_app("examples.cart", env_a)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"broker {env_a['KAFKA_URL']}, topic carts" in out
    assert env_a["KAFKA_PASSWORD"] not in out
    assert f"Added Item To Cart at {first['prefix']}carts[" in out  # the name on the cluster
    assert "  rejected: shirt is not in the cart" in out
    assert "alice after her first two events: {'socks': 2, 'shirt': 1} (version 2)" in out
    assert out.rstrip().endswith(CART_ITEMS_TABLE)

    # The events are in the first tenant's topic, and the projector's group is under its prefix.
    config_a, config_b = config_from_env(env_a), config_from_env(env_b)
    assert len(read_topic(config_a, "carts")) == 5
    assert read_topic(config_b, "carts") == []
    groups = api.get(f"/v1/addons/{first['name']}/groups").json()
    assert "cart-items" in [g["name"] for g in groups]

    # The second tenant's app sees its own events only: the same demo, the same table, five events.
    result = run_as_app("examples.cart", env_b)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith(CART_ITEMS_TABLE)
    assert len(read_topic(config_a, "carts")) == len(read_topic(config_b, "carts")) == 5

    # ...and cannot read the first tenant's topic, even naming it in full on a raw client.
    consumer = Consumer({**client_config(config_b), "group.id": second["prefix"] + "spy"})
    try:
        consumer.subscribe([first["prefix"] + "carts"])
        error = _first_error(consumer)
    finally:
        consumer.close()
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


def _first_error(consumer: Consumer, timeout: float = 30) -> KafkaError:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        error = message.error() if message is not None else None
        if error is not None:
            return error
    raise AssertionError("the consumer met no error")


def test_missing_topics_get_a_clear_error_not_a_hang(api: TestClient) -> None:
    addon = provision(api, plan="basic-0")
    env = config_of(api, addon["name"])
    config = config_from_env(env)
    started = time.monotonic()
    with pytest.raises(MissingTopic, match=r"eventyard kafka topics create carts --partitions 3") as caught:
        ensure_topic(config, "carts", partitions=3)  # a tenant has no CREATE: only the platform makes topics
    assert caught.value.topic == addon["prefix"] + "carts"
    with pytest.raises(MissingTopic, match=r"eventyard kafka topics create orders"):
        Worker(config, "orders", "email", lambda _: None, order_events)
    with (
        EventPublisher(config, order_events, transactions=False) as publisher,
        pytest.raises(MissingTopic, match=r"eventyard kafka topics create orders"),
    ):
        publisher.partition("orders", "o-1")
    assert time.monotonic() - started < 60

    result = run_as_app("examples.cart", env, timeout=120)
    assert result.returncode != 0
    assert "eventyard kafka topics create carts --partitions 3" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr  # one line saying what to do


def test_orders_fan_out_with_a_read_only_app_subscribed(api: TestClient, service: PlatformService) -> None:
    addon = provision(api, plan="basic-0")
    name, prefix = addon["name"], addon["prefix"]
    create_topic(api, name, "orders", 3)
    for group in ORDER_SERVICES:
        create_topic(api, name, f"orders.{group}.dead-letter", 1)
    owner = config_of(api, name)
    attached = api.post(
        f"/v1/addons/{name}/attachments", json={"app": unique_app("audit"), "access": "read-only"}
    )
    assert attached.status_code == 201, attached.text
    reader = config_from_env(attached.json()["config"])

    # The read-only app can subscribe in a group of its own, but not publish.
    seen: list[str] = []
    lock = threading.Lock()

    def audit(recorded: RecordedEvent) -> None:
        assert isinstance(recorded.event, OrderPlaced)
        assert recorded.topic == prefix + "orders"
        with lock:
            seen.append(recorded.event.order_id)

    with (
        EventPublisher(reader, order_events, transactions=False) as publisher,
        pytest.raises(PublishError, match=r"(?i)authoriz"),
    ):
        publisher.publish("orders", "o-0", [_order("o-0")])
    worker = Worker(reader, "orders", "audit", audit, order_events).start()
    try:
        result = run_as_app("examples.orders", owner)
        assert result.returncode == 0, result.stderr
        out = result.stdout
        for order in ["o-1001", "o-1002", "o-1003", "o-1004"]:
            for group in ORDER_SERVICES:
                assert f"{group}: {order} " in out, (group, order)
        assert "email: o-1002 sent the confirmation to bob@example.com (attempt 2)" in out
        assert "units per sku since the first order: {'hat': 6, 'scarf': 1, 'socks': 5}" in out
        assert out.rstrip().endswith("Dead letters: 0")
        _wait(lambda: len(seen) >= 4, "the read-only app got every order", worker)
    finally:
        worker.stop()
    assert worker.error is None, worker.error
    assert sorted(seen) == ["o-1001", "o-1002", "o-1003", "o-1004"]

    groups = {g["name"] for g in api.get(f"/v1/addons/{name}/groups").json()}
    assert {*ORDER_SERVICES, "audit"} <= groups  # every group the toolkit used is under the prefix
    assert all(g.startswith(prefix) for g in service.cluster.groups(prefix))


def test_read_write_credentials_get_transactional_id_acls(api: TestClient, service: PlatformService) -> None:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    addon = provision(api, plan="basic-0")
    owner = config_of(api, addon["name"])
    attached = api.post(
        f"/v1/addons/{addon['name']}/attachments", json={"app": unique_app("ro"), "access": "read-only"}
    )
    reader = attached.json()["config"]

    def transactional_acls(username: str) -> set[tuple[str, Any]]:
        wanted = AclBindingFilter(
            ResourceType.TRANSACTIONAL_ID,
            None,  # type: ignore[arg-type]  # any name
            ResourcePatternType.ANY,
            f"User:{username}",
            None,  # type: ignore[arg-type]  # any host
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        found = service.cluster.admin.describe_acls(wanted).result(10)
        assert all(b.resource_pattern_type == ResourcePatternType.PREFIXED for b in found)
        return {(b.name, b.operation) for b in found}

    assert transactional_acls(owner["KAFKA_USERNAME"]) == {
        (addon["prefix"], AclOperation.WRITE),
        (addon["prefix"], AclOperation.DESCRIBE),
    }
    assert transactional_acls(reader["KAFKA_USERNAME"]) == set()


def _order(order_id: str) -> OrderPlaced:
    return OrderPlaced(order_id=order_id, customer="c", email="c@example.com", address="a", items={"hat": 1})


def _wait(done: Any, what: str, worker: Worker, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert worker.error is None, worker.error
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_the_cart_over_tls_trusts_the_add_ons_ca(tmp_path: Path) -> None:
    """SASL_SSL: config_from_env hands KAFKA_TRUSTED_CERT to librdkafka as ssl.ca.pem."""
    with sasl_ssl_platform(tmp_path) as (api, ca_file):
        addon = provision(api, plan="basic-0")
        create_topic(api, addon["name"], "carts", 3)
        config = config_from_env(config_of(api, addon["name"]))
        assert config["security.protocol"] == "SASL_SSL"
        assert config["ssl.ca.pem"] == ca_file.read_text()
        service = CartService(config, "carts")
        try:
            run(service, SCRIPT.splitlines(), io.StringIO(), echo=False)
            assert format_table(service.table()) == CART_ITEMS_TABLE
        finally:
            service.close()
