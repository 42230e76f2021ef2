"""Storage caps enforced by the cluster, failure injection through the API, and a failed
provisioning that says why."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from fastapi.testclient import TestClient

from eventyard.platform.api import admin_connection, create_app
from eventyard.platform.cluster import ClusterAdmin
from eventyard.platform.service import PlatformService
from eventyard.platform.store import Store
from eventyard.testing import BrokerProcess
from tests.platform.clients import client_conf, produce
from tests.platform.conftest import TINY, TOKEN, make_settings, provision, unique_app, wait_available


def test_stored_bytes_cap_refuses_produce_for_that_tenant_only(api: TestClient) -> None:
    full, other = provision(api), provision(api)  # tiny plan: 1 MiB of storage
    assert full["tenant_limits_on_cluster"]  # Eventyard enforces them (Kafka gets retention.bytes)
    env, other_env = (api.get(f"/v1/addons/{a['name']}/config").json() for a in (full, other))
    for addon in (full, other):
        assert api.post(f"/v1/addons/{addon['name']}/topics", json={"name": "bulk"}).status_code == 201
    chunk = b"x" * 100_000
    assert produce(env, full["prefix"] + "bulk", [chunk] * 12) == [None] * 12  # 1.2 MB > 1 MiB
    deadline = time.monotonic() + 30
    refused: KafkaError | None = None
    while refused is None and time.monotonic() < deadline:  # the broker refreshes stored bytes
        refused = produce(env, full["prefix"] + "bulk", [b"one more"])[0]
        time.sleep(0.3)
    assert refused is not None and refused.code() == KafkaError.POLICY_VIOLATION, refused
    usage = api.get(f"/v1/addons/{full['name']}").json()["usage"]
    assert usage["stored_bytes"] >= 1_200_000
    assert produce(other_env, other["prefix"] + "bulk", [chunk]) == [None]


def test_fail_a_partition_leader(api: TestClient) -> None:
    addon = provision(api)
    name, prefix = addon["name"], addon["prefix"]
    env = api.get(f"/v1/addons/{name}/config").json()
    assert api.post(f"/v1/addons/{name}/topics", json={"name": "shaky", "partitions": 2}).status_code == 201
    response = api.post(
        f"/v1/addons/{name}/fail",
        json={"target": "leader", "topic": "shaky", "partition": 1, "duration_s": 2},
    )
    assert response.status_code == 200, response.text
    admin = AdminClient(client_conf(env))
    partitions = admin.list_topics(prefix + "shaky", timeout=10).topics[prefix + "shaky"].partitions
    assert partitions[1].leader == -1 and partitions[0].leader >= 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        partitions = admin.list_topics(prefix + "shaky", timeout=10).topics[prefix + "shaky"].partitions
        if partitions[1].leader >= 0:
            break
        time.sleep(0.2)
    assert partitions[1].leader >= 0, "the leader did not come back"
    assert (
        api.post(
            f"/v1/addons/{name}/fail", json={"target": "leader", "topic": "nope", "duration_s": 1}
        ).status_code
        == 404
    )
    assert api.post(f"/v1/addons/{name}/fail", json={"target": "leader", "duration_s": 1}).status_code == 400
    assert (
        api.post(
            f"/v1/addons/{name}/fail",
            json={"target": "leader", "topic": "shaky", "partition": 5, "duration_s": 1},
        ).status_code
        == 400
    )
    assert api.post(f"/v1/addons/{name}/fail", json={"target": "disk", "duration_s": 1}).status_code == 400
    assert api.post(f"/v1/addons/{name}/fail", json={"target": "broker", "duration_s": 0}).status_code == 400


def test_fail_the_broker(tmp_path: Path) -> None:
    from tests.platform.conftest import start_secure_broker

    broker = start_secure_broker(tmp_path / "data")
    try:
        settings = make_settings(broker, f"sqlite:///{tmp_path / 'p.db'}")
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            addon = provision(api)
            env = api.get(f"/v1/addons/{addon['name']}/config").json()
            assert api.post(f"/v1/addons/{addon['name']}/topics", json={"name": "t"}).status_code == 201
            response = api.post(
                f"/v1/addons/{addon['name']}/fail", json={"target": "broker", "duration_s": 1.5}
            )
            assert response.status_code == 200, response.text
            started = time.monotonic()
            # librdkafka retries through the outage: the record is delivered once the broker is back.
            assert produce(env, addon["prefix"] + "t", [b"after the outage"]) == [None]
            print(f"produce delivered {time.monotonic() - started:.2f}s after the broker failure")
    finally:
        broker.stop()


def test_provisioning_failure_is_reported(tmp_path: Path, secure_broker: BrokerProcess) -> None:
    settings = make_settings(secure_broker, f"sqlite:///{tmp_path / 'p.db'}", admin_password="wrong")
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        created = api.post("/v1/addons", json={"app": unique_app(), "plan": "tiny"})
        assert created.status_code == 202
        addon = wait_available(api, created.json()["name"], timeout=60)
        assert addon["state"] == "failed" and addon["reason"], addon
        assert api.get(f"/v1/addons/{addon['name']}/config").status_code == 409
        assert api.post(f"/v1/addons/{addon['name']}/topics", json={"name": "t"}).status_code == 409


class _KafkaLike(ClusterAdmin):
    """The real broker, as a cluster that refuses the tenant entity (as Apache Kafka does) looks."""

    def set_tenant_limits(
        self, prefix: str, max_partitions: int | None, max_stored_bytes: int | None
    ) -> bool:
        return False


def test_without_tenant_limits_topics_get_retention_bytes(
    secure_broker: BrokerProcess, tmp_path: Path
) -> None:
    settings = make_settings(secure_broker, f"sqlite:///{tmp_path / 'p.db'}")
    service = PlatformService(settings, Store(settings.db_url), _KafkaLike(admin_connection(settings)))
    with TestClient(create_app(settings, service), headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        addon = provision(api)
        assert addon["tenant_limits_on_cluster"] is False
        assert api.post(f"/v1/addons/{addon['name']}/topics", json={"name": "bounded"}).status_code == 201
        resource = ConfigResource(ResourceType.TOPIC, addon["prefix"] + "bounded")
        configs = service.cluster.admin.describe_configs([resource])[resource].result(10)
        assert configs["retention.bytes"].value == str(TINY.capacity_bytes // TINY.max_partitions)
        # No Eventyard failure configs on a cluster that is not known to be Eventyard.
        fail = {"target": "leader", "topic": "bounded", "duration_s": 1}
        response = api.post(f"/v1/addons/{addon['name']}/fail", json=fail)
        assert response.status_code == 409 and "injector" in response.json()["message"]
    service.close()
