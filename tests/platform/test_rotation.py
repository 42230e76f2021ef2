"""Credential rotation with a grace period: the old credential keeps working until it ends, then the
reaper deletes it and it no longer authenticates."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from eventyard.platform.api import create_app
from eventyard.platform.service import PlatformService
from eventyard.testing import BrokerProcess
from tests.platform.clients import authenticates, consume, produce
from tests.platform.conftest import TOKEN, make_settings, provision


def test_rotation_with_grace_then_reap(api: TestClient, service: PlatformService) -> None:
    addon = provision(api)
    name = addon["name"]
    old = api.get(f"/v1/addons/{name}/config").json()
    assert api.post(f"/v1/addons/{name}/topics", json={"name": "t"}).status_code == 201
    topic = old["KAFKA_PREFIX"] + "t"

    rotated = api.post(f"/v1/addons/{name}/credentials/rotate", json={"grace_period_s": 120})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["KAFKA_USERNAME"] != old["KAFKA_USERNAME"] and new["KAFKA_PASSWORD"] != old["KAFKA_PASSWORD"]
    assert api.get(f"/v1/addons/{name}/config").json() == new

    # During the grace period both work, for authentication and for real traffic.
    assert authenticates(old) and authenticates(new)
    assert produce(old, topic, [b"from-old"]) == [None]
    assert produce(new, topic, [b"from-new"]) == [None]
    # The store is shared with other tests of the session: look only at this add-on's credentials.
    assert old["KAFKA_USERNAME"] not in service.reap(time.time() + 60)  # not yet due
    assert authenticates(old)

    reaped = service.reap(time.time() + 121)
    assert old["KAFKA_USERNAME"] in reaped and new["KAFKA_USERNAME"] not in reaped
    assert not authenticates(old)
    assert authenticates(new)
    got = consume(new, topic, new["KAFKA_PREFIX"] + "after-rotation", 2)
    assert sorted(got) == [b"from-new", b"from-old"]
    assert service.cluster.user_quota(old["KAFKA_USERNAME"]) == {}
    assert service.cluster.user_quota(new["KAFKA_USERNAME"])["producer_byte_rate"] > 0


def test_rotation_without_grace_and_of_an_attached_app(api: TestClient) -> None:
    addon = provision(api)
    name = addon["name"]
    owner = api.get(f"/v1/addons/{name}/config").json()
    attached = api.post(f"/v1/addons/{name}/attachments", json={"app": "second-app", "access": "read-only"})
    second = attached.json()["config"]
    rotated = api.post(
        f"/v1/addons/{name}/credentials/rotate", json={"app": "second-app", "grace_period_s": 0}
    )
    assert rotated.status_code == 200
    assert not authenticates(second)  # no grace: gone at once
    assert authenticates(rotated.json()) and authenticates(owner)  # the owner is untouched
    bad = api.post(f"/v1/addons/{name}/credentials/rotate", json={"app": "not-attached"})
    assert bad.status_code == 404
    bad = api.post(f"/v1/addons/{name}/credentials/rotate", json={"grace_period_s": -1})
    assert bad.status_code == 400


def test_the_apps_reaper_ends_the_grace_period(secure_broker: BrokerProcess, tmp_path: Path) -> None:
    settings = make_settings(secure_broker, f"sqlite:///{tmp_path / 'p.db'}", reap_interval_s=0.2)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        addon = provision(api)
        old = api.get(f"/v1/addons/{addon['name']}/config").json()
        new = api.post(f"/v1/addons/{addon['name']}/credentials/rotate", json={"grace_period_s": 2}).json()
        rotated_at = time.monotonic()
        assert authenticates(old)
        deadline = rotated_at + 30
        while authenticates(old) and time.monotonic() < deadline:
            time.sleep(0.2)
        ended = time.monotonic() - rotated_at
        print(f"old credential refused {ended:.2f}s after a rotation with a 2 s grace period")
        assert not authenticates(old) and ended >= 1.5
        assert authenticates(new)
