"""Tenant limits (Eventyard's `tenant` quota entity: max_partitions, max_stored_bytes) with real
clients over TCP: set with AlterClientQuotas through WireClient, enforced on confluent-kafka's
CreateTopics, CreatePartitions and Produce, and on topic auto-creation through Metadata."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from eventyard.protocol.messages.alter_client_quotas_request import (
    AlterClientQuotasRequest,
    EntityData,
    EntryData,
    OpData,
)
from eventyard.protocol.messages.describe_client_quotas_request import (
    ComponentData,
    DescribeClientQuotasRequest,
)
from eventyard.protocol.messages.describe_log_dirs_request import DescribeLogDirsRequest
from eventyard.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from eventyard.testing import BrokerProcess
from eventyard.wire_client import WireClient

pytestmark = pytest.mark.eventyard_only(
    reason="tenant limits are an Eventyard extension: Apache Kafka refuses the 'tenant' entity type"
)

INVALID_REQUEST = 42
POLICY_VIOLATION = 44


@pytest.fixture
def tenant_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    # A short housekeeping interval is not needed: appends count towards the limit as they happen.
    with BrokerProcess(tmp_path / "data") as broker:
        yield broker


def alter(
    broker: BrokerProcess,
    entity: list[tuple[str, str | None]],
    ops: list[OpData],
    validate_only: bool = False,
) -> tuple[int, str | None]:
    request = AlterClientQuotasRequest(
        entries=[EntryData(entity=[EntityData(entity_type=t, entity_name=n) for t, n in entity], ops=ops)],
        validate_only=validate_only,
    )
    with WireClient(broker.host, broker.port) as client:
        entry = client.request(request, 1).entries[0]
    return entry.error_code, entry.error_message


def set_limits(broker: BrokerProcess, tenant: str, **limits: int) -> None:
    error, message = alter(broker, [("tenant", tenant)], [OpData(key=k, value=v) for k, v in limits.items()])
    assert error == 0, message


def tenant_limits(broker: BrokerProcess, tenant: str) -> dict[str, float]:
    with WireClient(broker.host, broker.port) as client:
        response = client.request(
            DescribeClientQuotasRequest(
                components=[ComponentData(entity_type="tenant", match_type=0, match=tenant)], strict=True
            ),
            1,
        )
    assert response.error_code == 0, response.error_message
    return {v.key: v.value for entry in response.entries for v in entry.values}


def create(admin: AdminClient, name: str, partitions: int, validate_only: bool = False) -> KafkaError | None:
    future = admin.create_topics([NewTopic(name, partitions)], validate_only=validate_only)[name]
    try:
        future.result(15)
    except Exception as exc:
        error: KafkaError = exc.args[0]
        return error
    return None


def test_invalid_tenant_entries_are_refused_with_a_reason(tenant_broker: BrokerProcess) -> None:
    cases = [
        ([("tenant", "acme."), ("user", "alice")], "max_partitions", 1, "stands alone"),
        ([("tenant", "")], "max_partitions", 1, "needs a name"),
        ([("tenant", None)], "max_partitions", 1, "needs a name"),
        ([("tenant", "acme.")], "producer_byte_rate", 1000, "max_partitions and max_stored_bytes only"),
        ([("tenant", "acme.")], "max_partitions", 2.5, "whole number"),
        ([("tenant", "acme.")], "max_stored_bytes", 0, "greater than 0"),
        ([("user", "alice")], "max_partitions", 4, "tenant limit"),
        ([("client-id", "app")], "max_stored_bytes", 4, "tenant limit"),
    ]
    for entity, key, value, reason in cases:
        error, message = alter(tenant_broker, entity, [OpData(key=key, value=value)])
        assert error == INVALID_REQUEST, (entity, key, value)
        assert message is not None and reason in message, message
    assert tenant_limits(tenant_broker, "acme.") == {}
    # validate_only checks without storing.
    assert alter(tenant_broker, [("tenant", "acme.")], [OpData(key="max_partitions", value=3)], True)[0] == 0
    assert tenant_limits(tenant_broker, "acme.") == {}


def test_partition_cap_refuses_topics_of_that_tenant_only(tenant_broker: BrokerProcess) -> None:
    set_limits(tenant_broker, "acme-1.", max_partitions=4)
    assert tenant_limits(tenant_broker, "acme-1.") == {"max_partitions": 4.0}
    admin = AdminClient({"bootstrap.servers": tenant_broker.bootstrap})

    assert create(admin, "acme-1.orders", 3) is None
    refused = create(admin, "acme-1.payments", 2)
    assert refused is not None and refused.code() == KafkaError.POLICY_VIOLATION
    assert "max_partitions=4" in refused.str(), refused.str()
    refused = create(admin, "acme-1.payments", 2, validate_only=True)
    assert refused is not None and refused.code() == KafkaError.POLICY_VIOLATION
    assert create(admin, "acme-1.payments", 1, validate_only=True) is None

    # Another tenant, and topics of no tenant, are unaffected.
    set_limits(tenant_broker, "beta-2.", max_partitions=10)
    assert create(admin, "beta-2.orders", 8) is None
    assert create(admin, "untenanted", 12) is None

    # CreatePartitions: up to the cap, not beyond.
    grow = admin.create_partitions([NewPartitions("acme-1.orders", 5)])["acme-1.orders"]
    with pytest.raises(Exception) as info:
        grow.result(15)
    assert info.value.args[0].code() == KafkaError.POLICY_VIOLATION
    admin.create_partitions([NewPartitions("acme-1.orders", 4)])["acme-1.orders"].result(15)
    refused = create(admin, "acme-1.payments", 1)
    assert refused is not None and refused.code() == KafkaError.POLICY_VIOLATION

    # Auto-creation through Metadata (the broker's default is one partition) is refused too.
    with WireClient(tenant_broker.host, tenant_broker.port) as client:
        request = MetadataRequest(
            topics=[MetadataRequestTopic(name="acme-1.auto"), MetadataRequestTopic(name="beta-2.auto")],
            allow_auto_topic_creation=True,
        )
        topics = {t.name: t for t in client.request(request, 9).topics}
    assert topics["acme-1.auto"].error_code == POLICY_VIOLATION
    assert topics["beta-2.auto"].error_code == 0 and len(topics["beta-2.auto"].partitions) == 1

    # Raising the limit lets the tenant grow again.
    set_limits(tenant_broker, "acme-1.", max_partitions=5)
    assert create(admin, "acme-1.payments", 1) is None


def stored_bytes(broker: BrokerProcess, topic: str) -> int:
    with WireClient(broker.host, broker.port) as client:
        response = client.request(DescribeLogDirsRequest(topics=None), 1)
    return sum(
        p.partition_size for r in response.results for t in r.topics if t.name == topic for p in t.partitions
    )


def produce_until_refused(conf: dict, topic: str, payload: bytes, max_messages: int) -> tuple[int, list]:
    """Send messages one at a time until one is refused; (messages acknowledged, errors)."""
    producer = Producer({**conf, "linger.ms": 0, "message.timeout.ms": 15_000})
    acknowledged = 0
    errors: list[KafkaError] = []

    def report(err: KafkaError | None, _msg: object) -> None:
        nonlocal acknowledged
        if err is None:
            acknowledged += 1
        else:
            errors.append(err)

    for _ in range(max_messages):
        producer.produce(topic, payload, on_delivery=report)
        assert producer.flush(15) == 0
        if errors:
            break
    return acknowledged, errors


def test_produce_is_refused_at_the_stored_bytes_limit(tenant_broker: BrokerProcess) -> None:
    limit = 20_000
    set_limits(tenant_broker, "small-3.", max_stored_bytes=limit)
    set_limits(tenant_broker, "large-4.", max_stored_bytes=10_000_000)
    admin = AdminClient({"bootstrap.servers": tenant_broker.bootstrap})
    for name in ("small-3.events", "large-4.events"):
        assert create(admin, name, 1) is None
    conf = {"bootstrap.servers": tenant_broker.bootstrap}
    payload = b"s" * 1000

    acknowledged, errors = produce_until_refused(conf, "small-3.events", payload, 100)
    assert errors, "the producer was never refused"
    assert errors[0].code() == KafkaError.POLICY_VIOLATION, errors[0]
    # Each message is its own batch of a little over 1 kB: the limit lets through up to 20 kB,
    # and the request that crosses it, no more.
    assert 15 <= acknowledged <= 21, acknowledged
    stored = stored_bytes(tenant_broker, "small-3.events")
    assert limit <= stored <= limit + 2 * len(payload), stored

    # The other tenant still writes.
    acknowledged, errors = produce_until_refused(conf, "large-4.events", payload, 30)
    assert (acknowledged, errors) == (30, [])

    # Raising the limit lets the tenant write again.
    set_limits(tenant_broker, "small-3.", max_stored_bytes=limit * 10)
    acknowledged, errors = produce_until_refused(conf, "small-3.events", payload, 5)
    assert (acknowledged, errors) == (5, [])


def test_limits_survive_a_restart(tenant_broker: BrokerProcess) -> None:
    set_limits(tenant_broker, "keep-5.", max_partitions=2, max_stored_bytes=3000)
    set_limits(tenant_broker, "keep-6.", max_partitions=7)
    admin = AdminClient({"bootstrap.servers": tenant_broker.bootstrap})
    assert create(admin, "keep-5.a", 2) is None
    _, errors = produce_until_refused(
        {"bootstrap.servers": tenant_broker.bootstrap}, "keep-5.a", b"k" * 1000, 20
    )
    assert errors and errors[0].code() == KafkaError.POLICY_VIOLATION

    tenant_broker.restart()
    assert tenant_limits(tenant_broker, "keep-5.") == {"max_partitions": 2.0, "max_stored_bytes": 3000.0}
    assert tenant_limits(tenant_broker, "keep-6.") == {"max_partitions": 7.0}
    admin = AdminClient({"bootstrap.servers": tenant_broker.bootstrap})
    refused = create(admin, "keep-5.b", 1)
    assert refused is not None and refused.code() == KafkaError.POLICY_VIOLATION
    # The stored bytes are recounted from the logs after the restart.
    again, errors = produce_until_refused({"bootstrap.servers": tenant_broker.bootstrap}, "keep-5.a", b"k", 1)
    assert again == 0 and errors[0].code() == KafkaError.POLICY_VIOLATION
    # Removing a limit lifts it.
    error, message = alter(
        tenant_broker, [("tenant", "keep-5.")], [OpData(key="max_partitions", remove=True)]
    )
    assert error == 0, message
    assert tenant_limits(tenant_broker, "keep-5.") == {"max_stored_bytes": 3000.0}
    assert create(admin, "keep-5.b", 1) is None
