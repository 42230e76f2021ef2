"""Add-ons end to end with real clients: provisioning, the config an app gets, isolation between
tenants, read-only attachments, deprovisioning."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError
from fastapi.testclient import TestClient

from eventyard.platform.service import PlatformService
from tests.platform.clients import authenticates, consume, consumer_error, produce
from tests.platform.conftest import provision, unique_app, wait_available


def test_provisioning_is_fast_and_gives_working_config(api: TestClient) -> None:
    app = unique_app("shop")
    started = time.monotonic()
    created = api.post("/v1/addons", json={"app": app, "plan": "basic-0"})
    assert created.status_code == 202
    body = created.json()
    assert body["state"] == "provisioning" and body["app"] == app and body["prefix"].endswith(".")
    addon = wait_available(api, body["name"])
    elapsed = time.monotonic() - started
    print(f"provisioned {addon['name']} in {elapsed:.3f}s")
    assert addon["state"] == "available", addon
    assert elapsed < 30

    env = api.get(f"/v1/addons/{addon['name']}/config").json()
    assert env["KAFKA_PREFIX"] == addon["prefix"]
    assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert "KAFKA_TRUSTED_CERT" not in env
    assert api.get(f"/v1/addons/{addon['name']}/config", params={"app": app}).json() == env

    assert (
        api.post(f"/v1/addons/{addon['name']}/topics", json={"name": "orders", "partitions": 2}).status_code
        == 201
    )
    assert api.post(f"/v1/addons/{addon['name']}/groups", json={"name": "billing"}).status_code == 201
    topic = env["KAFKA_PREFIX"] + "orders"
    assert produce(env, topic, [b"order-%d" % i for i in range(10)]) == [None] * 10
    got = consume(env, topic, env["KAFKA_PREFIX"] + "billing", 10)
    assert sorted(got) == sorted(b"order-%d" % i for i in range(10))

    detail = api.get(f"/v1/addons/{addon['name']}").json()
    assert detail["usage"]["partitions"] == 2 and detail["usage"]["stored_bytes"] > 0
    groups = api.get(f"/v1/addons/{addon['name']}/groups").json()
    assert [(g["name"], g["managed"]) for g in groups] == [("billing", True)]
    assert groups[0]["state"] != "unused"


def test_tenants_are_isolated(api: TestClient) -> None:
    first, second = provision(api), provision(api)
    assert first["prefix"] != second["prefix"]
    env_a = api.get(f"/v1/addons/{first['name']}/config").json()
    env_b = api.get(f"/v1/addons/{second['name']}/config").json()
    for addon in (first, second):
        assert api.post(f"/v1/addons/{addon['name']}/topics", json={"name": "events"}).status_code == 201
    topic_a, topic_b = env_a["KAFKA_PREFIX"] + "events", env_b["KAFKA_PREFIX"] + "events"
    assert produce(env_b, topic_b, [b"b's own"]) == [None]

    outcomes = produce(env_a, topic_b, [b"intrusion"])
    assert [e.code() if e else None for e in outcomes] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    error = consumer_error(env_a, group=env_a["KAFKA_PREFIX"] + "spy", topic=topic_b)
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    error = consumer_error(env_a, group=env_b["KAFKA_PREFIX"] + "billing", topic=topic_a)
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    # No CREATE: topics come from the control plane only, even under one's own prefix.
    outcomes = produce(env_a, env_a["KAFKA_PREFIX"] + "auto-created", [b"x"])
    assert outcomes[0] is not None
    # B still works, untouched.
    assert consume(env_b, topic_b, env_b["KAFKA_PREFIX"] + "reader", 1) == [b"b's own"]


def test_read_only_attachment(api: TestClient) -> None:
    addon = provision(api)
    name = addon["name"]
    owner = api.get(f"/v1/addons/{name}/config").json()
    assert api.post(f"/v1/addons/{name}/topics", json={"name": "feed"}).status_code == 201
    topic = owner["KAFKA_PREFIX"] + "feed"
    assert produce(owner, topic, [b"one", b"two"]) == [None, None]

    reader_app = unique_app("reader")
    attached = api.post(f"/v1/addons/{name}/attachments", json={"app": reader_app, "access": "read-only"})
    assert attached.status_code == 201, attached.text
    reader = attached.json()["config"]
    assert reader["KAFKA_USERNAME"] != owner["KAFKA_USERNAME"]
    assert api.get(f"/v1/addons/{name}/config", params={"app": reader_app}).json() == reader
    assert consume(reader, topic, reader["KAFKA_PREFIX"] + "ro", 2) == [b"one", b"two"]
    outcomes = produce(reader, topic, [b"forbidden"])
    assert [e.code() if e else None for e in outcomes] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

    again = api.post(f"/v1/addons/{name}/attachments", json={"app": reader_app, "access": "read-write"})
    assert again.status_code == 409
    listed = {a["app"]: a["access"] for a in api.get(f"/v1/addons/{name}").json()["attachments"]}
    assert listed == {addon["app"]: "read-write", reader_app: "read-only"}
    assert [a["name"] for a in api.get("/v1/addons", params={"app": reader_app}).json()] == [name]

    assert api.delete(f"/v1/addons/{name}/attachments/{addon['app']}").status_code == 409  # the owner
    assert api.delete(f"/v1/addons/{name}/attachments/{reader_app}").status_code == 200
    assert not authenticates(reader)
    assert api.get(f"/v1/addons/{name}/config", params={"app": reader_app}).status_code == 404
    assert authenticates(owner)


def test_delete_removes_users_acls_and_topics(api: TestClient, service: PlatformService) -> None:
    addon = provision(api)
    name, prefix = addon["name"], addon["prefix"]
    env = api.get(f"/v1/addons/{name}/config").json()
    assert api.post(f"/v1/addons/{name}/topics", json={"name": "doomed", "partitions": 2}).status_code == 201
    assert produce(env, prefix + "doomed", [b"x"]) == [None]
    consume(env, prefix + "doomed", prefix + "g", 1)
    other_app = unique_app("other")
    other = api.post(f"/v1/addons/{name}/attachments", json={"app": other_app}).json()["config"]

    response = api.delete(f"/v1/addons/{name}")
    assert response.status_code == 200, response.text
    assert api.get(f"/v1/addons/{name}").status_code == 404
    assert service.cluster.topics(prefix) == {}
    assert service.cluster.groups(prefix) == {}
    assert not authenticates(env) and not authenticates(other)
    assert service.cluster.user_quota(env["KAFKA_USERNAME"]) == {}
    acls = service.cluster.admin.describe_acls(_acls_of(env["KAFKA_USERNAME"])).result(10)
    assert acls == []


def _acls_of(username: str):  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        f"User:{username}",
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
