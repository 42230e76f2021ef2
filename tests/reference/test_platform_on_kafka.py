"""The control plane (eventyard.platform) driving Apache Kafka: the provisioning tests, against the
reference harness with a SASL_PLAINTEXT listener and the StandardAuthorizer.

Apps use the config the API hands out, with confluent-kafka over SASL/SCRAM-SHA-512. Where Kafka
differs from Eventyard by design, the documented Kafka behaviour is asserted: no `tenant` quota
entity (the control plane enforces the partition caps itself and bounds storage with per-topic
retention.bytes), and a failed broker is a real stopped node whose partitions move to the other
replicas.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from fastapi.testclient import TestClient

from eventyard.platform.api import create_app
from eventyard.platform.cluster import ClusterAdmin
from eventyard.platform.kafka_failures import KafkaFailureInjector
from eventyard.platform.plans import PLANS, Plan
from eventyard.platform.service import PlatformService
from eventyard.platform.settings import Settings
from eventyard.platform.store import Store
from eventyard.platform.wire_admin import Connection
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages import alter_client_quotas_request as alter_quotas
from eventyard.protocol.messages import describe_client_quotas_request as describe_quotas
from eventyard.testing.kafka_cluster import KafkaCluster
from eventyard.testing.kafka_reference import KafkaReference
from eventyard.wire_client import WireClient

pytestmark = [pytest.mark.reference, pytest.mark.timeout(600)]

TOKEN = "operator-token"
HOUR_MS = 3600 * 1000
# A plan small enough to reach its caps in a test: four partitions in all, three per topic.
TINY = Plan(
    "tiny",
    produce_byte_rate=100_000,
    consume_byte_rate=200_000,
    capacity_bytes=4_000_000,
    max_partitions=4,
    max_topics=3,
    retention_ms_min=HOUR_MS,
    retention_ms_max=24 * HOUR_MS,
    compaction_allowed=False,
    max_partitions_per_topic=3,
    default_partitions=1,
    default_retention_ms=HOUR_MS,
)


@dataclass
class Platform:
    http: TestClient
    service: PlatformService
    cluster: KafkaReference | KafkaCluster
    injector: KafkaFailureInjector

    def call(self, method: str, path: str, expect: int | None = None, **kwargs: Any) -> Any:
        response = self.http.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"}, **kwargs)
        if expect is not None:
            assert response.status_code == expect, (response.status_code, response.text)
        return response.json()

    def provision(self, plan: str = "basic-0", app: str | None = None) -> dict[str, Any]:
        app = app or f"app-{uuid.uuid4().hex[:6]}"
        created = self.call("POST", "/v1/addons", 202, json={"app": app, "plan": plan})
        assert created["state"] == "provisioning"
        deadline = time.monotonic() + 120
        while True:
            addon = self.call("GET", f"/v1/addons/{created['name']}", 200)
            if addon["state"] != "provisioning":
                break
            assert time.monotonic() < deadline, addon
            time.sleep(0.2)
        assert addon["state"] == "available", addon
        return addon

    def config(self, addon: str, app: str | None = None) -> dict[str, str]:
        query = f"?app={app}" if app else ""
        config: dict[str, str] = self.call("GET", f"/v1/addons/{addon}/config{query}", 200)
        return config

    def topic(self, addon: str, name: str, partitions: int = 1, **extra: Any) -> dict[str, Any]:
        body = {"name": name, "partitions": partitions, **extra}
        topic: dict[str, Any] = self.call("POST", f"/v1/addons/{addon}/topics", 201, json=body)
        return topic

    def admin(self) -> AdminClient:
        return AdminClient(dict(self.cluster.client_config()))


@contextmanager
def make_platform(
    cluster: KafkaReference | KafkaCluster, db: Path, injector: bool = True
) -> Iterator[Platform]:
    admin_user = cluster.admin_user
    assert admin_user is not None
    settings = Settings(
        token=TOKEN,
        db_url=f"sqlite:///{db}",
        bootstrap=cluster.bootstrap,
        admin_security_protocol="SASL_PLAINTEXT",
        admin_user=admin_user,
        admin_password=cluster.sasl_users[admin_user],
        app_security_protocol="SASL_PLAINTEXT",
        reap_interval_s=0.5,
        plans={**PLANS, TINY.name: TINY},
    )
    connection = Connection(
        cluster.bootstrap, "SASL_PLAINTEXT", "SCRAM-SHA-512", admin_user, settings.admin_password
    )
    kafka_injector = KafkaFailureInjector(cluster)
    admin = ClusterAdmin(connection, kafka_injector if injector else None)
    service = PlatformService(settings, Store(settings.db_url), admin)
    try:
        with TestClient(create_app(settings, service)) as http:
            yield Platform(http, service, cluster, kafka_injector)
    finally:
        kafka_injector.wait(300)
        service.close()
        service.store.close()


@pytest.fixture(scope="module")
def platform(kafka_sasl: KafkaReference, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with make_platform(kafka_sasl, tmp_path_factory.mktemp("platform") / "platform.db") as platform:
        yield platform


# -- clients with the handed-out config


def client_conf(config: dict[str, str]) -> dict[str, Any]:
    return {
        "bootstrap.servers": config["KAFKA_URL"],
        "security.protocol": config["KAFKA_SECURITY_PROTOCOL"],
        "sasl.mechanism": config["KAFKA_SASL_MECHANISM"],
        "sasl.username": config["KAFKA_USERNAME"],
        "sasl.password": config["KAFKA_PASSWORD"],
    }


@dataclass
class Outcome:
    delivered: int
    errors: list[int]  # delivery error codes
    client_errors: list[int]  # error_cb codes (authentication and the like)


def produce(config: dict[str, str], topic: str, count: int = 5, timeout: float = 20, **extra: Any) -> Outcome:
    outcome = Outcome(0, [], [])

    def report(err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            outcome.delivered += 1
        else:
            outcome.errors.append(err.code())

    producer = Producer(
        {
            **client_conf(config),
            "message.timeout.ms": int(timeout * 1000),
            "error_cb": lambda e: outcome.client_errors.append(e.code()),
            **extra,
        }
    )
    for i in range(count):
        producer.produce(topic, key=b"%d" % i, value=b"value-%d" % i, on_delivery=report)
    producer.flush(timeout + 10)
    return outcome


def eventually(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """ACLs and SCRAM users reach the broker through the metadata log: allow for the lag."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def produces(config: dict[str, str], topic: str, count: int = 5) -> None:
    eventually(lambda: produce(config, topic, count, timeout=10).delivered == count, f"produce to {topic}")


def consume(
    config: dict[str, str], topic: str, group: str, count: int, timeout: float = 60
) -> tuple[int, list[int]]:
    """Records read by the group (from the start), and the error codes met on the way."""
    consumer = Consumer(
        {
            **client_conf(config),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
        }
    )
    consumer.subscribe([topic])
    seen, errors = 0, []
    deadline = time.monotonic() + timeout
    try:
        while seen < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                errors.append(error.code())
                if not error.retriable() and error.code() != KafkaError._PARTITION_EOF:
                    break
                continue
            seen += 1
    finally:
        consumer.close()
    return seen, errors


def auth_fails(config: dict[str, str], topic: str) -> bool:
    outcome = produce(config, topic, 1, timeout=8)
    return outcome.delivered == 0 and KafkaError._AUTHENTICATION in outcome.client_errors


def user_quotas(cluster: KafkaReference, entity_type: str, name: str) -> tuple[int, dict[str, float]]:
    """DescribeClientQuotas on Kafka itself, as the admin (not through the control plane)."""
    request = describe_quotas.DescribeClientQuotasRequest(
        components=[describe_quotas.ComponentData(entity_type=entity_type, match_type=0, match=name)],
        strict=True,
    )
    admin = cluster.admin_user
    assert admin is not None
    with WireClient(
        cluster.host, cluster.port, sasl=("SCRAM-SHA-512", admin, cluster.sasl_users[admin])
    ) as client:
        response = client.request(request, 1)
    return response.error_code, {v.key: v.value for e in response.entries or [] for v in e.values}


def acls_of(platform: Platform, username: str) -> list[Any]:
    wanted = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, f"User:{username}", None,
        AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    admin = platform.admin()  # kept alive until its future is done
    return list(admin.describe_acls(wanted).result(30))


# -- the provisioning tests


def test_provision_gives_a_working_sasl_credential(platform: Platform) -> None:
    addon = platform.provision()
    config = platform.config(addon["name"])
    assert config["KAFKA_URL"] == platform.cluster.bootstrap
    assert config["KAFKA_PREFIX"] == addon["prefix"]
    assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert config["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert addon["tenant_limits_on_cluster"] is False  # Kafka has no tenant entity

    topic = platform.topic(addon["name"], "orders", partitions=2)
    assert topic["full_name"] == addon["prefix"] + "orders" and topic["replication"] == 1
    produces(config, topic["full_name"], 20)
    seen, errors = consume(config, topic["full_name"], addon["prefix"] + "billing", 20)
    assert seen >= 20, errors

    # Kafka bounds a tenant's storage per partition: retention.bytes = capacity / max partitions.
    resource = ConfigResource(ResourceType.TOPIC, topic["full_name"])
    admin = platform.admin()  # kept alive until its futures are done
    entries = admin.describe_configs([resource])[resource].result(30)
    assert entries["retention.bytes"].value == str(PLANS["basic-0"].partition_retention_bytes())
    assert entries["retention.ms"].value == str(PLANS["basic-0"].default_retention_ms)

    described = platform.call("GET", f"/v1/addons/{addon['name']}", 200)
    assert described["usage"]["partitions"] == 2
    assert described["usage"]["stored_bytes"] > 0  # DescribeLogDirs on Kafka


def test_no_topic_creation_outside_the_control_plane(platform: Platform) -> None:
    addon = platform.provision()
    config = platform.config(addon["name"])
    platform.topic(addon["name"], "known")
    produces(config, addon["prefix"] + "known", 1)
    outcome = produce(config, addon["prefix"] + "made-up", 1, timeout=8)  # no CREATE ACL
    assert outcome.delivered == 0
    admin = platform.admin()
    assert addon["prefix"] + "made-up" not in admin.list_topics(timeout=30).topics
    tenant_admin = AdminClient(client_conf(config))  # CreateTopics around the control plane
    future = tenant_admin.create_topics([NewTopic(addon["prefix"] + "sneaky", 1, 1)])[
        addon["prefix"] + "sneaky"
    ]
    with pytest.raises(KafkaException) as refused:
        future.result(30)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_without_a_kafka_injector_failures_are_refused(kafka_sasl: KafkaReference, tmp_path: Path) -> None:
    """`eventyard platform serve` against Kafka: no injector for it, so POST .../fail is a 409."""
    with make_platform(kafka_sasl, tmp_path / "platform.db", injector=False) as platform:
        addon = platform.provision()
        refused = platform.call(
            "POST", f"/v1/addons/{addon['name']}/fail", 409, json={"target": "broker", "duration_s": 1}
        )
        assert refused["error"] == "conflict"
        assert kafka_sasl.metadata_brokers() == {1}  # still up


def test_tenants_are_isolated(platform: Platform) -> None:
    one, two = platform.provision(), platform.provision()
    first, second = platform.config(one["name"]), platform.config(two["name"])
    platform.topic(one["name"], "events")
    platform.topic(two["name"], "events")
    produces(first, one["prefix"] + "events", 3)
    produces(second, two["prefix"] + "events", 3)

    across = produce(first, two["prefix"] + "events", 1, timeout=10)
    assert across.delivered == 0 and across.errors == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    seen, errors = consume(first, two["prefix"] + "events", one["prefix"] + "spy", 1, timeout=20)
    assert seen == 0 and KafkaError.TOPIC_AUTHORIZATION_FAILED in errors, errors
    seen, errors = consume(first, one["prefix"] + "events", two["prefix"] + "spy", 1, timeout=20)
    assert seen == 0 and KafkaError.GROUP_AUTHORIZATION_FAILED in errors, errors


def test_read_only_attachment_consumes_but_cannot_produce(platform: Platform) -> None:
    addon = platform.provision()
    name, prefix = addon["name"], addon["prefix"]
    platform.topic(name, "feed")
    produces(platform.config(name), prefix + "feed", 5)

    attached = platform.call(
        "POST", f"/v1/addons/{name}/attachments", 201, json={"app": "reader", "access": "read-only"}
    )
    reader = attached["config"]
    assert reader["KAFKA_USERNAME"] != platform.config(name)["KAFKA_USERNAME"]
    assert platform.config(name, "reader") == reader
    eventually(
        lambda: consume(reader, prefix + "feed", prefix + "readers", 5, timeout=15)[0] >= 5,
        "read-only consume",
    )
    outcome = produce(reader, prefix + "feed", 1, timeout=10)
    assert outcome.delivered == 0 and outcome.errors == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

    platform.call("DELETE", f"/v1/addons/{name}/attachments/reader", 200)
    assert acls_of(platform, reader["KAFKA_USERNAME"]) == []
    eventually(lambda: auth_fails(reader, prefix + "feed"), "detached credential refused")


def test_rotation_keeps_the_old_credential_for_the_grace_period(platform: Platform) -> None:
    addon = platform.provision()
    name, topic = addon["name"], addon["prefix"] + "rotated"
    platform.topic(name, "rotated")
    old = platform.config(name)
    produces(old, topic, 1)

    grace = 15  # long enough to check "still works" on a loaded machine
    new = platform.call("POST", f"/v1/addons/{name}/credentials/rotate", 200, json={"grace_period_s": grace})
    rotated_at = time.monotonic()
    assert new["KAFKA_USERNAME"] != old["KAFKA_USERNAME"] and platform.config(name) == new
    produces(new, topic, 2)
    during = produce(old, topic, 1, timeout=5)  # a new connection with the old password
    assert time.monotonic() - rotated_at < grace, "the machine was too slow to check the grace period"
    assert during.delivered == 1, during

    eventually(lambda: auth_fails(old, topic), "old credential refused after the grace period", timeout=90)
    assert time.monotonic() - rotated_at >= grace
    assert acls_of(platform, old["KAFKA_USERNAME"]) == []
    assert user_quotas(platform.cluster, "user", old["KAFKA_USERNAME"])[1] == {}  # type: ignore[arg-type]
    produces(new, topic, 1)


def test_plan_limits_are_enforced_by_the_control_plane(platform: Platform) -> None:
    addon = platform.provision("tiny")
    name, prefix = addon["name"], addon["prefix"]
    refused = platform.call("POST", f"/v1/addons/{name}/topics", 422, json={"name": "wide", "partitions": 4})
    assert refused["error"] == "plan_limit"
    platform.topic(name, "first", partitions=3)
    refused = platform.call(
        "POST", f"/v1/addons/{name}/topics", 422, json={"name": "second", "partitions": 2}
    )
    assert "partitions" in refused["message"]
    platform.topic(name, "second", partitions=1)  # exactly at the cap
    platform.call("PATCH", f"/v1/addons/{name}/topics/second", 422, json={"partitions": 2})
    platform.call(
        "POST", f"/v1/addons/{name}/topics", 422, json={"name": "old", "retention_ms": 48 * HOUR_MS}
    )

    on_kafka = {
        n: len(t.partitions)
        for n, t in platform.admin().list_topics(timeout=30).topics.items()
        if n.startswith(prefix)
    }
    assert on_kafka == {prefix + "first": 3, prefix + "second": 1}


def test_quotas_are_set_on_kafka(platform: Platform) -> None:
    addon = platform.provision("basic-1")
    config = platform.config(addon["name"])
    code, quotas = user_quotas(platform.cluster, "user", config["KAFKA_USERNAME"])  # type: ignore[arg-type]
    assert code == 0
    assert quotas == {
        "producer_byte_rate": PLANS["basic-1"].produce_byte_rate,
        "consumer_byte_rate": PLANS["basic-1"].consume_byte_rate,
    }


def test_kafka_refuses_the_tenant_quota_entity(kafka_sasl: KafkaReference) -> None:
    """Why the control plane enforces tenant caps itself on Kafka: the entity type is unknown."""
    entry = alter_quotas.EntryData(
        entity=[alter_quotas.EntityData(entity_type="tenant", entity_name="acme.")],
        ops=[alter_quotas.OpData(key="max_partitions", value=10.0, remove=False)],
    )
    admin = kafka_sasl.admin_user
    assert admin is not None
    with WireClient(
        kafka_sasl.host, kafka_sasl.port, sasl=("SCRAM-SHA-512", admin, kafka_sasl.sasl_users[admin])
    ) as client:
        response = client.request(alter_quotas.AlterClientQuotasRequest(entries=[entry]), 1)
    assert [e.error_code for e in response.entries] == [ErrorCode.INVALID_REQUEST]


def test_destroy_removes_users_acls_quotas_and_topics(platform: Platform) -> None:
    addon = platform.provision()
    name, prefix = addon["name"], addon["prefix"]
    platform.topic(name, "doomed", partitions=2)
    config = platform.config(name)
    reader = platform.call(
        "POST", f"/v1/addons/{name}/attachments", 201, json={"app": "auditor", "access": "read-only"}
    )["config"]
    produces(config, prefix + "doomed", 3)
    assert consume(config, prefix + "doomed", prefix + "g", 3)[0] >= 3
    users = [config["KAFKA_USERNAME"], reader["KAFKA_USERNAME"]]
    assert all(acls_of(platform, user) for user in users)

    platform.call("DELETE", f"/v1/addons/{name}", 200)
    platform.call("GET", f"/v1/addons/{name}", 404)
    admin = platform.admin()
    described = admin.describe_user_scram_credentials(users)
    for user in users:
        with pytest.raises(Exception, match=r"RESOURCE_NOT_FOUND|not found|does not exist"):
            described[user].result(30)
        assert acls_of(platform, user) == []
        assert user_quotas(platform.cluster, "user", user)[1] == {}  # type: ignore[arg-type]
    eventually(
        lambda: not [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)],
        "topics deleted",
    )
    groups = admin.list_consumer_groups().result(30).valid
    assert not [g for g in groups if g.group_id.startswith(prefix)]
    eventually(lambda: auth_fails(config, prefix + "doomed"), "credential refused after destroy")


# -- a broker fails: a three-node SASL cluster


@pytest.fixture(scope="module")
def sasl_cluster(kafka_libs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    # A shorter broker session: a stopped node's partitions move on within seconds, not 9.
    quick = {"broker.session.timeout.ms": 4000, "broker.heartbeat.interval.ms": 500}
    with KafkaCluster(
        3, tmp_path_factory.mktemp("kafka-sasl-cluster"), libs=kafka_libs, heap="384m",
        sasl_users={"admin": "cluster-secret"}, properties=quick,
    ) as cluster:  # fmt: skip
        yield cluster


@pytest.mark.timeout(900)
def test_broker_failure_on_a_kafka_cluster(sasl_cluster: KafkaCluster, tmp_path: Path) -> None:
    with make_platform(sasl_cluster, tmp_path / "platform.db") as platform:
        addon = platform.provision()
        name, prefix = addon["name"], addon["prefix"]
        topic = platform.topic(name, "ledger", partitions=3)
        assert topic["replication"] == 3
        config = platform.config(name)
        produces(config, prefix + "ledger", 30)

        # A broker: the node stops, writes go on through the other two (acks=all, min ISR 2).
        answer = platform.call(
            "POST", f"/v1/addons/{name}/fail", 200, json={"target": "broker", "duration_s": 8}
        )
        assert answer["target"] == "broker"
        assert platform.injector.down() == [3]
        again = platform.call(
            "POST", f"/v1/addons/{name}/fail", 409, json={"target": "broker", "duration_s": 1}
        )
        assert "already down" in again["message"]
        during = produce(
            config, prefix + "ledger", 30, timeout=60, acks="all", **{"enable.idempotence": True}
        )
        assert during.delivered == 30, during
        platform.injector.wait(240)
        assert not platform.injector.errors and platform.injector.down() == []
        assert sasl_cluster.node(3).metadata_brokers() == {1, 2, 3}

        # A partition's leader: Kafka elects another in-sync replica rather than leaving it leaderless.
        metadata = platform.admin().list_topics(prefix + "ledger", timeout=30)
        leader = metadata.topics[prefix + "ledger"].partitions[0].leader
        assert leader in (1, 2, 3)
        platform.call(
            "POST",
            f"/v1/addons/{name}/fail",
            200,
            json={"target": "leader", "topic": "ledger", "partition": 0, "duration_s": 5},
        )
        assert platform.injector.down() == [leader]

        def moved() -> bool:
            partition = (
                platform.admin()
                .list_topics(prefix + "ledger", timeout=30)
                .topics[prefix + "ledger"]
                .partitions[0]
            )
            return partition.leader not in (-1, leader)

        eventually(moved, "a new leader for partition 0", timeout=60)
        produces(config, prefix + "ledger", 10)
        platform.injector.wait(240)
        assert not platform.injector.errors

        seen, errors = consume(config, prefix + "ledger", prefix + "audit", 70, timeout=120)
        assert seen >= 70, errors
        assert sum(consumer_ends(config, prefix + "ledger", 3)) == 70  # each record once


def consumer_ends(config: dict[str, str], topic: str, partitions: int) -> list[int]:
    consumer = Consumer({**client_conf(config), "group.id": "ends-" + uuid.uuid4().hex[:4]})
    try:
        return [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)
        ]
    finally:
        consumer.close()
