"""The toolkit as a tenant of the platform on Apache Kafka: the control plane drives the SASL
reference Kafka (as in test_platform_on_kafka.py), and the demos run as an add-on's apps with the
add-on's config vars only. Kafka coordinates transactions, so the publisher uses them: under the
add-on's prefix, with the prefixed TRANSACTIONAL_ID ACLs of its read-write credential."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from eventyard.testing.kafka_reference import KafkaReference
from eventyard.toolkit import (
    EventPublisher,
    RecordedEvent,
    ToolkitError,
    Worker,
    config_from_env,
    read_topic,
)
from eventyard.toolkit.kafka import client_config
from examples.cart.app import SCRIPT, CartService, format_table, run
from examples.orders.domain import OrderPlaced
from examples.orders.domain import events as order_events
from tests.platform.test_toolkit_on_platform import ORDER_SERVICES, run_as_app
from tests.reference.test_platform_on_kafka import Platform, make_platform
from tests.toolkit.demo_scenarios import CART_ITEMS_TABLE

pytestmark = [pytest.mark.reference, pytest.mark.timeout(600)]

T = TypeVar("T")


@pytest.fixture(scope="module")
def platform(kafka_sasl: KafkaReference, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with make_platform(kafka_sasl, tmp_path_factory.mktemp("platform") / "platform.db") as platform:
        yield platform


def once_acls_arrive(make: Callable[[], T], timeout: float = 60) -> T:
    """New SCRAM users and ACLs reach Kafka's broker through its metadata log: retry until then."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return make()
        except (KafkaException, ToolkitError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def committed_reads(config: dict[str, object], topic: str, group: str) -> tuple[int, int]:
    """(records a read_committed consumer reads, offsets in the topic): offsets beyond the records
    are transaction markers."""
    consumer = Consumer({**client_config(config), "group.id": group, "isolation.level": "read_committed"})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), 30)[1] for p in partitions}
        todo = [p for p in partitions if ends[p] > 0]
        consumer.assign([TopicPartition(topic, p, 0) for p in todo])
        read, deadline = 0, time.monotonic() + 60
        positions = dict.fromkeys(todo, 0)
        while any(positions[p] < ends[p] for p in todo):
            assert time.monotonic() < deadline, (positions, ends)
            for message in consumer.consume(100, 0.5):
                assert message.error() is None, message.error()
                read += 1
            positions = {tp.partition: tp.offset for tp in consumer.position(consumer.assignment())}
        return read, sum(ends.values())
    finally:
        consumer.close()


def test_cart_demo_on_a_kafka_add_on_publishes_in_transactions(platform: Platform) -> None:
    addon = platform.provision()
    name, prefix = addon["name"], addon["prefix"]
    platform.topic(name, "carts", partitions=3)
    config = config_from_env(platform.config(name))

    service = once_acls_arrive(lambda: CartService(config, "carts"))
    try:
        publisher = service.log.publisher
        assert publisher.transactional is True  # detected: Kafka coordinates transactions
        assert str(publisher.settings["transactional.id"]).startswith(prefix)
        out = io.StringIO()
        run(service, SCRIPT.splitlines(), out, echo=True)
        assert "  rejected: shirt is not in the cart" in out.getvalue()
        assert format_table(service.table()) == CART_ITEMS_TABLE
        assert service.carts.load("alice").items == {"socks": 3}
    finally:
        service.close()

    # Five commands, five transactions: each event is followed by its commit marker, and a
    # read_committed consumer reads the five events.
    read, offsets = committed_reads(config, prefix + "carts", prefix + "checker")
    assert (read, offsets) == (5, 10)


def test_the_cart_demo_as_a_second_tenants_app_sees_its_own_events_only(platform: Platform) -> None:
    first, second = platform.provision(), platform.provision()
    for addon in (first, second):
        platform.topic(addon["name"], "carts", partitions=3)
    env_a, env_b = platform.config(first["name"]), platform.config(second["name"])
    config_a, config_b = config_from_env(env_a), config_from_env(env_b)
    once_acls_arrive(lambda: read_topic(config_a, "carts"))
    once_acls_arrive(lambda: read_topic(config_b, "carts"))

    for env in (env_a, env_b):
        result = run_as_app("examples.cart", env, timeout=300)
        assert result.returncode == 0, result.stderr
        assert result.stdout.rstrip().endswith(CART_ITEMS_TABLE)
    assert len(read_topic(config_a, "carts")) == len(read_topic(config_b, "carts")) == 5

    consumer = Consumer({**client_config(config_b), "group.id": second["prefix"] + "spy"})
    try:
        consumer.subscribe([first["prefix"] + "carts"])
        deadline, error = time.monotonic() + 60, None
        while error is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is not None:
                error = message.error()
    finally:
        consumer.close()
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


def test_orders_fan_out_on_kafka_with_a_read_only_subscriber(platform: Platform) -> None:
    addon = platform.provision()
    name = addon["name"]
    platform.topic(name, "orders", partitions=3)
    for group in ORDER_SERVICES:
        platform.topic(name, f"orders.{group}.dead-letter")
    owner = platform.config(name)
    attached = platform.call(
        "POST", f"/v1/addons/{name}/attachments", 201, json={"app": "auditor", "access": "read-only"}
    )
    reader = config_from_env(attached["config"])
    once_acls_arrive(lambda: read_topic(reader, "orders"))

    # No TRANSACTIONAL_ID ACL for a read-only credential: its publisher cannot start a transaction.
    with pytest.raises(KafkaException) as refused:
        EventPublisher(reader, order_events)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

    seen: list[str] = []
    lock = threading.Lock()

    def audit(recorded: RecordedEvent) -> None:
        assert isinstance(recorded.event, OrderPlaced)
        with lock:
            seen.append(recorded.event.order_id)

    worker = Worker(reader, "orders", "audit", audit, order_events).start()
    try:
        result = run_as_app("examples.orders", owner, timeout=300)
        assert result.returncode == 0, result.stderr
        for order in ["o-1001", "o-1002", "o-1003", "o-1004"]:
            for group in ORDER_SERVICES:
                assert f"{group}: {order} " in result.stdout, (group, order)
        assert result.stdout.rstrip().endswith("Dead letters: 0")
        deadline = time.monotonic() + 120
        while len(seen) < 4:
            assert worker.error is None, worker.error
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
    finally:
        worker.stop()
    assert worker.error is None, worker.error
    assert sorted(seen) == ["o-1001", "o-1002", "o-1003", "o-1004"]
    groups = {g["name"] for g in platform.call("GET", f"/v1/addons/{name}/groups", 200)}
    assert {*ORDER_SERVICES, "audit"} <= groups  # the toolkit's groups, under the prefix
