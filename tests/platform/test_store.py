"""The control plane's store, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventyard.platform.store import Addon, Attachment, Credential, Group, Store, Topic

_databases = itertools.count(1)


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[object]:
    from eventyard.testing.postgres import PostgresNotFound, PostgresServer

    try:
        server = PostgresServer().start()
    except PostgresNotFound as missing:
        if os.environ.get("EVENTYARD_POSTGRES") == "1":
            pytest.fail(f"EVENTYARD_POSTGRES=1 but {missing}", pytrace=False)
        pytest.skip(f"PostgreSQL tests need PostgreSQL's server binaries: {missing}")
    yield server
    server.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'platform.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.create_database(f"platform_{os.getpid()}_{next(_databases)}")  # type: ignore[attr-defined]
    opened = Store(url)
    yield opened
    opened.close()


def _addon(name: str, prefix: str) -> Addon:
    return Addon(name, "shop", "basic-0", prefix, "provisioning", None, False, 1_000, 1_000)


def test_addons_and_attachments(store: Store) -> None:
    assert store.insert_addon(_addon("kafka-a", "pa."), Attachment("kafka-a", "shop", "read-write", 1_000))
    assert not store.insert_addon(
        _addon("kafka-a", "pb."), Attachment("kafka-a", "shop", "read-write", 1_000)
    )
    assert not store.insert_addon(
        _addon("kafka-b", "pa."), Attachment("kafka-b", "shop", "read-write", 1_000)
    )
    assert store.insert_addon(_addon("kafka-b", "pb."), Attachment("kafka-b", "shop", "read-write", 1_000))
    store.set_state("kafka-a", "available", 2_000, tenant_limits=True)
    addon = store.addon("kafka-a")
    assert (
        addon is not None and addon.state == "available" and addon.tenant_limits and addon.updated_ms == 2_000
    )
    store.set_state("kafka-b", "failed", 2_000, reason="it's 50% broken")  # quotes and % survive
    failed = store.addon("kafka-b")
    assert failed is not None and failed.reason == "it's 50% broken"
    assert store.insert_attachment(Attachment("kafka-a", "reader", "read-only", 3_000))
    assert not store.insert_attachment(Attachment("kafka-a", "reader", "read-write", 3_000))
    assert [a.app for a in store.attachments("kafka-a")] == ["shop", "reader"]
    assert [a.name for a in store.addons("reader")] == ["kafka-a"]
    assert [a.name for a in store.addons()] == ["kafka-a", "kafka-b"]
    store.delete_attachment("kafka-a", "reader")
    assert store.attachment("kafka-a", "reader") is None
    store.delete_addon("kafka-a")
    assert store.addon("kafka-a") is None and store.attachments("kafka-a") == []


def test_credentials_expire_and_are_found_for_reaping(store: Store) -> None:
    store.insert_addon(_addon("kafka-c", "pc."), Attachment("kafka-c", "shop", "read-write", 1_000))
    store.insert_credential(Credential("u1", "kafka-c", "shop", "pw1", "read-write", 1_000, None))
    store.insert_credential(Credential("u2", "kafka-c", "shop", "pw2", "read-write", 2_000, None))
    current = store.current_credential("kafka-c", "shop")
    assert current is not None and current.username == "u2"
    store.expire_credentials("kafka-c", "shop", 10_000, keep="u2")
    assert [c.username for c in store.expired_credentials(9_999)] == []
    assert [(c.username, c.expires_ms) for c in store.expired_credentials(10_000)] == [("u1", 10_000)]
    store.delete_credential("u1")
    assert [c.username for c in store.credentials("kafka-c")] == ["u2"]


def test_topics_and_groups(store: Store) -> None:
    store.insert_addon(_addon("kafka-d", "pd."), Attachment("kafka-d", "shop", "read-write", 1_000))
    store.save_topic(Topic("kafka-d", "orders", 3, 1, 86_400_000, False, 1_000))
    store.save_topic(Topic("kafka-d", "orders", 6, 1, 3_600_000, True, 1_000))  # a retune
    assert store.topics("kafka-d") == [Topic("kafka-d", "orders", 6, 1, 3_600_000, True, 1_000)]
    assert store.insert_group(Group("kafka-d", "workers", 1_000))
    assert not store.insert_group(Group("kafka-d", "workers", 2_000))
    assert [g.name for g in store.groups("kafka-d")] == ["workers"]
    assert store.delete_group("kafka-d", "workers") and not store.delete_group("kafka-d", "workers")
    store.delete_topic("kafka-d", "orders")
    assert store.topic("kafka-d", "orders") is None
