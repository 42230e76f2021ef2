"""A plan's byte rates, end to end: the control plane provisions two add-ons on the real SASL broker,
and each app, configured by its add-on's config vars only, runs a real confluent-kafka client flat
out. Tenant A's plan is held to its rate within 10% over a sustained run, while tenant B, on a
larger plan at the same time, goes far faster: A's throttling costs B nothing.

The figures come from the broker's quota accounting (user quotas the control plane set from the
plan), not from the machine's speed, so they hold on a loaded machine; B's bar is kept modest."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from fastapi.testclient import TestClient

from eventyard.platform.api import create_app
from eventyard.platform.plans import DAY_MS, GB, HOUR_MS, KB, PLANS, Plan
from eventyard.testing import BrokerProcess
from eventyard.toolkit import config_from_env
from eventyard.toolkit.kafka import client_config, name
from tests.platform.conftest import TOKEN, make_settings, provision, unique_app

pytestmark = pytest.mark.timeout(240)

# Tenant A: a small produce rate, measurable to 10% in seconds with 16 KB batches. Its consume rate
# is half of it, so that what A produced during the produce run outlasts the consume run.
METERED = Plan(
    "metered",
    produce_byte_rate=256 * KB,
    consume_byte_rate=128 * KB,
    capacity_bytes=1 * GB,
    max_partitions=4,
    max_topics=2,
    retention_ms_min=HOUR_MS,
    retention_ms_max=DAY_MS,
    compaction_allowed=False,
    default_partitions=1,
    default_retention_ms=HOUR_MS,
)
LARGE = PLANS["basic-2"]  # tenant B: 4 MB/s produce, 16 MB/s consume
PAYLOAD = b"q" * 1000
WARMUP = 2.0  # seconds before rates are measured: the first second's burst is throttled after it
MEASURE = 10.0


@dataclass
class Tenant:
    plan: Plan
    config: dict[str, Any]  # from config_from_env: librdkafka settings and the add-on's prefix
    topic: str  # the name on the cluster, under the prefix
    produced: int = 0


@dataclass
class Timeline:
    """(when, bytes) of each record delivered or read since `begin`, measured from `start` to `end`."""

    begin: float
    start: float
    end: float
    events: list[tuple[float, int]] = field(default_factory=list)
    finished: bool = False  # a reader that read the whole topic before the end

    def rate(self) -> float:
        """Bytes per second over the window, or over the whole read if it finished early."""
        if self.finished:
            return sum(n for _, n in self.events) / max(self.events[-1][0] - self.begin, 1e-3)
        return sum(n for t, n in self.events if self.start <= t <= self.end) / (self.end - self.start)


@pytest.fixture(scope="module")
def api(secure_broker: BrokerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    path = tmp_path_factory.mktemp("plan-quotas")
    settings = make_settings(
        secure_broker, f"sqlite:///{path / 'quotas.db'}", plans={p.name: p for p in (METERED, LARGE)}
    )
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def new_tenant(api: TestClient, plan: Plan) -> Tenant:
    """An add-on on `plan` with a one-partition topic, and its app's config (its config vars only)."""
    addon = provision(api, plan=plan.name, app=unique_app("quota"))
    created = api.post(f"/v1/addons/{addon['name']}/topics", json={"name": "load", "partitions": 1})
    assert created.status_code == 201, created.text
    env = api.get(f"/v1/addons/{addon['name']}/config").json()
    config = config_from_env(env)
    assert config["security.protocol"].startswith("SASL")
    return Tenant(plan, config, name(config, "load"))


def produce_flat_out(tenant: Tenant, timeline: Timeline) -> None:
    """Keep the producer's queue full until the end of the timeline; record every delivery."""

    def on_delivery(err: object, msg: Any) -> None:
        if err is None:
            timeline.events.append((time.monotonic(), len(PAYLOAD)))

    # Small batches and a small queue: each request is at most 16 KB, so the measured rate is not
    # lumpy, and little is left queued (and purged) at the end.
    producer = Producer(
        client_config(
            tenant.config,
            linger_ms=5,
            batch_size=16384,
            queue_buffering_max_kbytes=256,
            message_timeout_ms=60_000,
        )
    )
    while time.monotonic() < timeline.end:
        try:
            producer.produce(tenant.topic, PAYLOAD, on_delivery=on_delivery)
        except BufferError:
            producer.poll(0.01)
        producer.poll(0)
    # Drop what is still queued, but let requests in flight finish: the broker may write them, and
    # the count of deliveries must be the count of records on the topic.
    producer.purge(in_queue=True, in_flight=False)
    assert producer.flush(30) == 0
    tenant.produced = len(timeline.events)


def consume_flat_out(tenant: Tenant, timeline: Timeline) -> None:
    """Read the tenant's topic from the start until the end of the timeline (or all of it)."""
    consumer = Consumer(
        client_config(
            tenant.config,
            group_id=name(tenant.config, "quota-reader"),
            enable_auto_commit=False,
            # A fetch answers at least one whole (16 KB) batch: small fetches keep the rate smooth.
            fetch_max_bytes=65536,
            max_partition_fetch_bytes=65536,
            message_max_bytes=65536,
        )
    )
    consumer.assign([TopicPartition(tenant.topic, 0, 0)])
    try:
        while time.monotonic() < timeline.end and len(timeline.events) < tenant.produced:
            for message in consumer.consume(1000, 0.2):
                assert message.error() is None, message.error()
                timeline.events.append((time.monotonic(), len(message.value())))
    finally:
        consumer.close()
    timeline.finished = len(timeline.events) >= tenant.produced


def run_together(work: Callable[[Tenant, Timeline], None], tenants: list[Tenant]) -> list[Timeline]:
    """Run `work` for every tenant at once, in threads, over one shared measurement window."""
    begin = time.monotonic()
    timelines = [Timeline(begin, begin + WARMUP, begin + WARMUP + MEASURE) for _ in tenants]
    errors: list[BaseException] = []

    def run(tenant: Tenant, timeline: Timeline) -> None:
        try:
            work(tenant, timeline)
        except BaseException as error:  # re-raised in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(tenants, timelines, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WARMUP + MEASURE + 60)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads), "a client did not finish"
    return timelines


@pytest.fixture(scope="module")
def tenants(api: TestClient) -> tuple[Tenant, Tenant, list[Timeline]]:
    """Tenants A (METERED) and B (LARGE), after both produced flat out at once."""
    a, b = new_tenant(api, METERED), new_tenant(api, LARGE)
    return a, b, run_together(produce_flat_out, [a, b])


def test_a_producer_is_held_to_its_plan_while_another_tenant_is_not_slowed(
    tenants: tuple[Tenant, Tenant, list[Timeline]],
) -> None:
    a, b, (a_timeline, b_timeline) = tenants
    quota = a.plan.produce_byte_rate
    a_rate, b_rate = a_timeline.rate(), b_timeline.rate()
    print(
        f"produce over {MEASURE:g}s: A {a_rate / KB:.1f} KB/s (plan {quota / KB:.0f} KB/s), "
        f"B {b_rate / KB:.0f} KB/s (plan {b.plan.produce_byte_rate / KB:.0f} KB/s)"
    )
    assert 0.9 * quota <= a_rate <= 1.1 * quota
    assert b_rate > 5 * quota
    assert b_rate <= 1.1 * b.plan.produce_byte_rate  # B has a plan too


def test_a_consumer_is_held_to_its_plan_while_another_tenant_is_not_slowed(
    tenants: tuple[Tenant, Tenant, list[Timeline]],
) -> None:
    a, b, _ = tenants
    quota = a.plan.consume_byte_rate
    # A's topic must outlast the run, or A's rate would end early for want of records, not quota.
    assert a.produced * len(PAYLOAD) > 1.3 * quota * (WARMUP + MEASURE)
    a_timeline, b_timeline = run_together(consume_flat_out, [a, b])
    a_rate, b_rate = a_timeline.rate(), b_timeline.rate()
    print(
        f"consume over {MEASURE:g}s: A {a_rate / KB:.1f} KB/s (plan {quota / KB:.0f} KB/s), "
        f"B {b_rate / KB:.0f} KB/s, {len(b_timeline.events)} of {b.produced} records"
    )
    assert not a_timeline.finished
    assert 0.9 * quota <= a_rate <= 1.1 * quota
    assert b_rate > 5 * quota
