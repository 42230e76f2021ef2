"""Topics and groups through the control plane, within the plan; refusals leave other tenants alone."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import ConfigResource, ResourceType
from fastapi.testclient import TestClient

from eventyard.platform.errors import PlanLimit
from eventyard.platform.plans import DAY_MS, HOUR_MS
from eventyard.platform.service import PlatformService
from tests.platform.clients import consume, produce
from tests.platform.conftest import provision


def _topic_configs(service: PlatformService, full_name: str) -> dict[str, str]:
    resource = ConfigResource(ResourceType.TOPIC, full_name)
    entries = service.cluster.admin.describe_configs([resource])[resource].result(10)
    return {name: entry.value for name, entry in entries.items()}


def test_plan_limits_are_refused_with_422(api: TestClient, service: PlatformService) -> None:
    addon = provision(api)  # the tiny plan: 3 partitions per topic, 4 in all, 3 topics
    topics = f"/v1/addons/{addon['name']}/topics"
    cases = [
        ({"name": "wide", "partitions": 4}, "partitions per topic"),
        ({"name": "brief", "retention_ms": HOUR_MS - 1}, "retention_ms"),
        ({"name": "long", "retention_ms": 2 * DAY_MS + 1}, "retention_ms"),
    ]
    for body, words in cases:
        response = api.post(topics, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"] == "plan_limit" and words in response.json()["message"]
    assert api.post(topics, json={"name": "a", "partitions": 3}).status_code == 201
    response = api.post(topics, json={"name": "b", "partitions": 2})
    assert response.status_code == 422 and "in all" in response.json()["message"]
    assert api.post(topics, json={"name": "b", "partitions": 1}).status_code == 201
    assert api.post(topics, json={"name": "a", "partitions": 1}).status_code == 409
    assert api.post(topics, json={"name": "bad/name"}).status_code == 400
    assert api.post(topics, json={"name": "c", "partitions": 0}).status_code == 400
    assert api.post(topics, json={"name": "c", "replication": 2}).status_code == 400  # one broker
    assert service.cluster.topics(addon["prefix"]) == {addon["prefix"] + "a": 3, addon["prefix"] + "b": 1}


def test_compaction_needs_a_plan_that_allows_it(api: TestClient) -> None:
    basic0 = provision(api, plan="basic-0")
    response = api.post(
        f"/v1/addons/{basic0['name']}/topics", json={"name": "kv", "compaction": True, "partitions": 1}
    )
    assert response.status_code == 422 and "compact" in response.json()["message"]
    assert (
        api.post(f"/v1/addons/{basic0['name']}/topics", json={"name": "kv", "partitions": 1}).status_code
        == 201
    )
    patched = api.patch(f"/v1/addons/{basic0['name']}/topics/kv", json={"compaction": True})
    assert patched.status_code == 422
    tiny = provision(api)
    created = api.post(f"/v1/addons/{tiny['name']}/topics", json={"name": "kv", "compaction": True})
    assert created.status_code == 201 and created.json()["compaction"] is True


def test_topic_count_limit(api: TestClient) -> None:
    addon = provision(api)
    topics = f"/v1/addons/{addon['name']}/topics"
    for name in ("t1", "t2", "t3"):
        assert api.post(topics, json={"name": name, "partitions": 1}).status_code == 201
    response = api.post(topics, json={"name": "t4", "partitions": 1})
    assert response.status_code == 422 and "topics" in response.json()["message"]
    assert [t["name"] for t in api.get(topics).json()] == ["t1", "t2", "t3"]


def test_retune_a_topic(api: TestClient, service: PlatformService) -> None:
    addon = provision(api)
    base = f"/v1/addons/{addon['name']}/topics"
    full = addon["prefix"] + "tuned"
    created = api.post(base, json={"name": "tuned", "partitions": 1, "retention_ms": 2 * HOUR_MS})
    assert created.status_code == 201 and created.json()["full_name"] == full
    configs = _topic_configs(service, full)
    assert configs["retention.ms"] == str(2 * HOUR_MS) and configs["cleanup.policy"] == "delete"

    patched = api.patch(f"{base}/tuned", json={"retention_ms": DAY_MS, "partitions": 3, "compaction": True})
    assert patched.status_code == 200, patched.text
    assert patched.json()["partitions"] == 3 and patched.json()["retention_ms"] == DAY_MS
    configs = _topic_configs(service, full)
    assert configs["retention.ms"] == str(DAY_MS) and configs["cleanup.policy"] == "compact,delete"
    assert service.cluster.topics(full) == {full: 3}

    assert api.patch(f"{base}/tuned", json={"partitions": 2}).status_code == 400  # only up
    assert api.patch(f"{base}/tuned", json={"partitions": 4}).status_code == 422  # per-topic cap
    assert api.patch(f"{base}/tuned", json={"retention_ms": 1}).status_code == 422
    assert api.patch(f"{base}/missing", json={"retention_ms": DAY_MS}).status_code == 404
    got = api.get(f"{base}/tuned").json()
    assert got["partitions"] == 3 and got["compaction"] is True and got["stored_bytes"] == 0

    assert api.delete(f"{base}/tuned").status_code == 200
    assert service.cluster.topics(full) == {}
    assert api.get(f"{base}/tuned").status_code == 404


def test_groups(api: TestClient) -> None:
    addon = provision(api)
    name, prefix = addon["name"], addon["prefix"]
    env = api.get(f"/v1/addons/{name}/config").json()
    groups = f"/v1/addons/{name}/groups"
    assert api.post(groups, json={"name": "workers"}).status_code == 201
    assert api.post(groups, json={"name": "workers"}).status_code == 409
    assert api.post(groups, json={"name": "no spaces"}).status_code == 400
    # Regression (found by fuzzing): a trailing newline passed the name check; "." and ".." never do.
    for bad in ("workers\n", ".", ".."):
        assert api.post(groups, json={"name": bad}).status_code == 400, bad
        assert api.post(f"/v1/addons/{name}/topics", json={"name": bad}).status_code == 400, bad
    listed = api.get(groups).json()
    assert listed == [
        {"name": "workers", "full_name": prefix + "workers", "state": "unused", "managed": True}
    ]

    assert api.post(f"/v1/addons/{name}/topics", json={"name": "jobs"}).status_code == 201
    assert produce(env, prefix + "jobs", [b"j"]) == [None]
    assert consume(env, prefix + "jobs", prefix + "workers", 1) == [b"j"]
    states = {g["name"]: g["state"] for g in api.get(groups).json()}
    assert states["workers"] != "unused"

    assert api.delete(f"{groups}/workers").status_code == 200
    assert api.get(groups).json() == []
    assert api.delete(f"{groups}/workers").status_code == 404


def test_a_tenant_over_its_limits_leaves_others_alone(api: TestClient, service: PlatformService) -> None:
    greedy, quiet = provision(api), provision(api)
    quiet_env = api.get(f"/v1/addons/{quiet['name']}/config").json()
    assert api.post(f"/v1/addons/{quiet['name']}/topics", json={"name": "calm"}).status_code == 201
    base = f"/v1/addons/{greedy['name']}/topics"
    assert api.post(base, json={"name": "x", "partitions": 3}).status_code == 201
    assert api.post(base, json={"name": "y", "partitions": 1}).status_code == 201
    for _ in range(3):
        assert api.post(base, json={"name": "z", "partitions": 1}).status_code == 422
    # The cluster holds the tenant-wide cap too (Eventyard's tenant limits): a create that skipped
    # the control plane's own check is still refused there.
    assert greedy["tenant_limits_on_cluster"]
    with pytest.raises(PlanLimit):
        service.cluster.create_topic(greedy["prefix"] + "sneaky", 1, 1, {})
    assert produce(quiet_env, quiet["prefix"] + "calm", [b"fine"]) == [None]
    assert (
        api.post(f"/v1/addons/{quiet['name']}/topics", json={"name": "more", "partitions": 3}).status_code
        == 201
    )
