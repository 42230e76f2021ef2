"""Client quotas without a broker: sliding-window rate accounting, throttle times, Kafka's
precedence of quota entities, DescribeClientQuotas filters and the durable store."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from eventyard.broker.quotas import (
    CONSUMER_BYTE_RATE,
    MATCH_ANY,
    MATCH_DEFAULT,
    MATCH_EXACT,
    PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    ComponentFilter,
    QuotaError,
    QuotaManager,
    QuotaOp,
    QuotaStore,
    SampledRate,
    make_entity,
    user_name,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def store_with(
    *items: tuple[list[tuple[str, str | None]], str, float], path: Path | None = None
) -> QuotaStore:
    store = QuotaStore(path)
    store.alter([(make_entity(entity), [QuotaOp(key, value)]) for entity, key, value in items])
    return store


# --- rate accounting ---


def test_rate_over_the_window() -> None:
    rate = SampledRate()
    rate.record(1000, 0)
    assert rate.rate(0) == 1000  # a fresh window counts as one sample (1 s) long
    rate.record(1000, 500)
    assert rate.rate(500) == 2000
    rate.record(3000, 2000)
    assert rate.window_ms(2000) == 2000
    assert rate.rate(2000) == 2500
    # Samples older than the 11 s window expire.
    assert rate.total(11_000) == 3000
    assert rate.total(13_000) == 0


def test_throttle_time_brings_the_rate_back_to_the_quota() -> None:
    rate = SampledRate()
    rate.record(400, 0)
    assert rate.throttle_ms(500, 0) == 0  # within the quota
    rate.record(600, 0)
    # 1000 bytes in a 1 s window at 500 B/s: idle for 1 s more and the rate is the quota again.
    assert rate.throttle_ms(500, 0) == 1000
    later = 1000
    assert rate.total(later) / (rate.window_ms(later) / 1000) == 1000
    assert rate.throttle_ms(500, 2000) == 0


def test_throttle_time_is_capped_at_the_window() -> None:
    rate = SampledRate()
    rate.record(10**9, 0)
    assert rate.throttle_ms(1, 0) == 11_000


def test_sustained_rate_under_throttling_converges_on_the_quota() -> None:
    """A client that sends 64 KB whenever it is allowed to: over 20 s, the quota and no more."""
    quota = 500_000
    rate = SampledRate()
    now, sent = 0, 0
    while now < 20_000:
        rate.record(65536, now)
        sent += 65536
        now += max(rate.throttle_ms(quota, now), 1)
    assert sent / 20 == pytest.approx(quota, rel=0.05)


# --- precedence ---


def test_user_name_of_a_principal() -> None:
    assert user_name("User:alice") == "alice"
    assert user_name("User:CN=app,O=x") == "CN=app,O=x"


def test_precedence_follows_kafka_order() -> None:
    levels = [
        ([("user", "alice"), ("client-id", "app")], 1),
        ([("user", "alice"), ("client-id", None)], 2),
        ([("user", "alice")], 3),
        ([("user", None), ("client-id", "app")], 4),
        ([("user", None), ("client-id", None)], 5),
        ([("user", None)], 6),
        ([("client-id", "app")], 7),
        ([("client-id", None)], 8),
    ]
    store = store_with(*[(entity, PRODUCER_BYTE_RATE, value) for entity, value in levels])
    for entity, value in levels:
        resolved = store.resolve(PRODUCER_BYTE_RATE, "alice", "app")
        assert resolved is not None and resolved[1] == value
        store.alter([(make_entity(entity), [QuotaOp(PRODUCER_BYTE_RATE, remove=True)])])
    assert store.resolve(PRODUCER_BYTE_RATE, "alice", "app") is None


def test_each_key_resolves_on_its_own() -> None:
    store = store_with(
        ([("user", "alice"), ("client-id", "app")], CONSUMER_BYTE_RATE, 10),
        ([("client-id", None)], PRODUCER_BYTE_RATE, 20),
    )
    assert store.resolve(PRODUCER_BYTE_RATE, "alice", "app") == (("", "app"), 20)
    assert store.resolve(CONSUMER_BYTE_RATE, "alice", "app") == (("alice", "app"), 10)
    assert store.resolve(CONSUMER_BYTE_RATE, "alice", "other") is None


def test_sharing_follows_the_matched_entity() -> None:
    store = store_with(
        ([("user", "alice")], PRODUCER_BYTE_RATE, 1), ([("user", None)], PRODUCER_BYTE_RATE, 2)
    )
    # alice's clients share one quota; every other user has a default quota of their own.
    assert store.resolve(PRODUCER_BYTE_RATE, "alice", "a") == (("alice", ""), 1)
    assert store.resolve(PRODUCER_BYTE_RATE, "alice", "b") == (("alice", ""), 1)
    assert store.resolve(PRODUCER_BYTE_RATE, "bob", "a") == (("bob", ""), 2)
    assert store.resolve(PRODUCER_BYTE_RATE, "carol", "a") == (("carol", ""), 2)


def test_manager_throttles_only_the_entity_over_its_quota() -> None:
    clock = Clock()
    manager = QuotaManager(store_with(([("user", "alice")], PRODUCER_BYTE_RATE, 1000)), clock)
    assert manager.record(PRODUCER_BYTE_RATE, "User:alice", "app", 1000) == 0
    assert manager.record(PRODUCER_BYTE_RATE, "User:alice", "other-app", 1000) == 1000  # shared
    assert manager.record(PRODUCER_BYTE_RATE, "User:bob", "app", 10**9) == 0  # no quota
    assert manager.record(CONSUMER_BYTE_RATE, "User:alice", "app", 10**9) == 0  # another key
    clock.now += 2000
    assert manager.record(PRODUCER_BYTE_RATE, "User:alice", None, 0) == 0


def test_mute_delays_only_that_connection() -> None:
    manager = QuotaManager(QuotaStore())
    one, two = object(), object()
    manager.mute(one, 200)

    async def timed(session: object) -> float:
        start = time.monotonic()
        await manager.wait_unmuted(session)
        return time.monotonic() - start

    assert asyncio.run(timed(two)) < 0.05
    assert 0.15 < asyncio.run(timed(one)) < 0.5
    assert asyncio.run(timed(one)) < 0.05  # once


# --- validation, filters, persistence ---


@pytest.mark.parametrize(
    "components",
    [[], [("user", "a"), ("user", "b")], [("ip", "1.2.3.4")]],
)
def test_invalid_entities(components: list[tuple[str, str | None]]) -> None:
    with pytest.raises(QuotaError):
        make_entity(components)


@pytest.mark.parametrize(
    "op",
    [
        QuotaOp("no_such_quota", 1),
        QuotaOp(PRODUCER_BYTE_RATE, 0),
        QuotaOp(PRODUCER_BYTE_RATE, -5),
        QuotaOp(PRODUCER_BYTE_RATE, 1.5),
        QuotaOp(REQUEST_PERCENTAGE, float("nan")),
        QuotaOp("no_such_quota", remove=True),
    ],
)
def test_invalid_ops(op: QuotaOp) -> None:
    with pytest.raises(QuotaError):
        QuotaStore().check(make_entity([("user", "a")]), [op])


def test_request_percentage_may_be_fractional() -> None:
    QuotaStore().check(make_entity([("user", "a")]), [QuotaOp(REQUEST_PERCENTAGE, 12.5)])


def test_describe_filters() -> None:
    store = store_with(
        ([("user", "alice")], PRODUCER_BYTE_RATE, 1),
        ([("user", "alice"), ("client-id", "app")], PRODUCER_BYTE_RATE, 2),
        ([("user", None)], PRODUCER_BYTE_RATE, 3),
        ([("client-id", None)], PRODUCER_BYTE_RATE, 4),
    )

    def found(*components: tuple[str, int, str | None], strict: bool = False) -> list[int]:
        return [
            int(values[PRODUCER_BYTE_RATE])
            for _, values in store.describe([ComponentFilter(*c) for c in components], strict)
        ]

    assert sorted(found()) == [1, 2, 3, 4]
    assert found(strict=True) == []
    assert found(("user", MATCH_EXACT, "alice")) == [1, 2]
    assert found(("user", MATCH_EXACT, "alice"), strict=True) == [1]
    assert found(("user", MATCH_DEFAULT, None)) == [3]
    assert sorted(found(("user", MATCH_ANY, None))) == [1, 2, 3]
    assert found(("user", MATCH_ANY, None), ("client-id", MATCH_EXACT, "app")) == [2]
    assert found(("client-id", MATCH_DEFAULT, None), strict=True) == [4]
    for bad in [
        [("user", MATCH_EXACT, None)],
        [("user", 7, None)],
        [("ip", MATCH_ANY, None)],
        [("user", MATCH_ANY, None), ("user", MATCH_DEFAULT, None)],
    ]:
        with pytest.raises(QuotaError):
            store.describe([ComponentFilter(*c) for c in bad], False)


def test_store_survives_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "quotas.json"
    store = store_with(
        ([("user", None), ("client-id", "app")], PRODUCER_BYTE_RATE, 1024),
        ([("client-id", None)], REQUEST_PERCENTAGE, 12.5),
        path=path,
    )
    store.alter([(make_entity([("client-id", None)]), [QuotaOp(REQUEST_PERCENTAGE, remove=True)])])
    reloaded = QuotaStore(path)
    assert reloaded.describe([], False) == [
        (((("user", None), ("client-id", "app"))), {PRODUCER_BYTE_RATE: 1024.0})
    ]
    assert json.loads(path.read_text())["version"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_corrupt_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "quotas.json"
    path.write_text('{"version": 1, "quotas": [{"entity": [{"type": "ip", "name": "x"}], "values": {}}]}')
    with pytest.raises(QuotaError):
        QuotaStore(path)


def test_a_failed_save_changes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = QuotaStore(blocker / "quotas.json")  # its directory is a file: saving fails
    with pytest.raises(OSError):
        store.alter([(make_entity([("user", "a")]), [QuotaOp(PRODUCER_BYTE_RATE, 10)])])
    assert store.describe([], False) == []
