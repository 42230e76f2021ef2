"""Client quotas with real clients: a broker with a SASL listener, tenants alice (with byte-rate
quotas) and bob (without), quotas managed with AlterClientQuotas / DescribeClientQuotas.

confluent-kafka's AdminClient has no client-quota API, so the quotas are managed through WireClient
on the plaintext listener."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

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
from eventyard.testing import BrokerProcess
from eventyard.wire_client import WireClient

PASSWORD = "quota-pa55"
QUOTA = 500_000  # bytes per second
PAYLOAD = b"q" * 1000
WARMUP = 1.5  # seconds before the rate is measured
MEASURE = 8.0

pytestmark = pytest.mark.eventyard_only(
    reason="runs its own Eventyard with a SASL listener and reads .listener_ports; quotas on Kafka "
    "need its JAAS configuration"
)


@pytest.fixture(scope="module")
def quota_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with BrokerProcess(
        tmp_path_factory.mktemp("quotas"), "--listener", "SASL_PLAINTEXT://127.0.0.1:0"
    ) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        upserts = [
            UserScramCredentialUpsertion(
                user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), PASSWORD.encode()
            )
            for user in ("alice", "bob")
        ]
        for future in admin.alter_user_scram_credentials(upserts).values():
            future.result(10)
        yield broker


def tenant(broker: BrokerProcess, user: str) -> dict:
    return {
        "bootstrap.servers": f"127.0.0.1:{broker.listener_ports['SASL_PLAINTEXT']}",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": user,
        "sasl.password": PASSWORD,
    }


def alter(
    broker: BrokerProcess, entity: list[tuple[str, str | None]], ops: list[OpData], validate_only=False
):
    request = AlterClientQuotasRequest(
        entries=[EntryData(entity=[EntityData(entity_type=t, entity_name=n) for t, n in entity], ops=ops)],
        validate_only=validate_only,
    )
    with WireClient(broker.host, broker.port) as client:
        return client.request(request, 1)


def describe(broker: BrokerProcess, components: list[ComponentData], strict: bool = False) -> dict:
    with WireClient(broker.host, broker.port) as client:
        response = client.request(DescribeClientQuotasRequest(components=components, strict=strict), 1)
    assert response.error_code == 0, response.error_message
    return {
        tuple((e.entity_type, e.entity_name) for e in entry.entity): {v.key: v.value for v in entry.values}
        for entry in response.entries
    }


def produce_rate(conf: dict, topic: str, measure: float = MEASURE) -> float:
    """Bytes per second delivered by a producer that always has data to send, after a warm-up."""
    delivered: list[tuple[float, int]] = []

    def on_delivery(err: object, msg: object) -> None:
        if err is None:
            delivered.append((time.monotonic(), len(PAYLOAD)))

    producer = Producer(
        {
            **conf,
            "linger.ms": 5,
            "batch.size": 65536,
            "queue.buffering.max.kbytes": 512,
            "message.timeout.ms": 60_000,
        }
    )
    start = time.monotonic() + WARMUP
    end = start + measure
    while time.monotonic() < end:
        try:
            producer.produce(topic, PAYLOAD, on_delivery=on_delivery)
        except BufferError:
            producer.poll(0.01)
        producer.poll(0)
    producer.purge()
    producer.flush(10)
    return sum(n for t, n in delivered if start <= t <= end) / measure


def consume_rate(conf: dict, topic: str, count: int, measure: float = MEASURE) -> tuple[float, int]:
    """Bytes per second of values consumed from the start of `topic` after a warm-up (or over the
    whole read if all `count` messages come sooner), and the number of messages read."""
    consumer = Consumer(
        {
            **conf,
            "group.id": f"{conf['sasl.username']}-group",
            "enable.auto.commit": False,
            "fetch.max.bytes": 65536,
            "max.partition.fetch.bytes": 65536,
            "message.max.bytes": 65536,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen: list[tuple[float, int]] = []
    begin = time.monotonic()
    start = begin + WARMUP
    end = start + measure
    while time.monotonic() < end and len(seen) < count:
        for msg in consumer.consume(1000, 0.2):
            assert msg.error() is None, msg.error()
            seen.append((time.monotonic(), len(msg.value())))
    consumer.close()
    if len(seen) == count and seen[-1][0] < end:  # all read before the end: the rate over the whole read
        return sum(n for _, n in seen) / max(seen[-1][0] - begin, 1e-3), len(seen)
    return sum(n for t, n in seen if start <= t <= end) / measure, len(seen)


def test_quotas_round_trip_through_the_api(quota_broker: BrokerProcess) -> None:
    response = alter(quota_broker, [("user", "carol")], [OpData(key="producer_byte_rate", value=1024)], True)
    assert [e.error_code for e in response.entries] == [0]
    assert describe(quota_broker, [ComponentData(entity_type="user", match_type=0, match="carol")]) == {}
    for entity, ops in [
        ([("user", "carol")], [OpData(key="producer_byte_rate", value=1024)]),
        ([("user", "carol"), ("client-id", None)], [OpData(key="consumer_byte_rate", value=2048)]),
        ([("client-id", None)], [OpData(key="request_percentage", value=12.5)]),
    ]:
        assert [e.error_code for e in alter(quota_broker, entity, ops).entries] == [0]
    carol = [ComponentData(entity_type="user", match_type=0, match="carol")]
    assert describe(quota_broker, carol) == {
        (("user", "carol"),): {"producer_byte_rate": 1024.0},
        (("user", "carol"), ("client-id", None)): {"consumer_byte_rate": 2048.0},
    }
    assert describe(quota_broker, carol, strict=True) == {
        (("user", "carol"),): {"producer_byte_rate": 1024.0}
    }
    default_client = [ComponentData(entity_type="client-id", match_type=1, match=None)]
    assert set(describe(quota_broker, default_client)) == {
        (("user", "carol"), ("client-id", None)),
        (("client-id", None),),
    }
    # Invalid entries fail alone, with INVALID_REQUEST.
    bad = alter(quota_broker, [("user", "carol")], [OpData(key="no_such_quota", value=1)])
    assert bad.entries[0].error_code == 42
    # Removing the last value removes the entity.
    for entity, key in [
        ([("user", "carol"), ("client-id", None)], "consumer_byte_rate"),
        ([("client-id", None)], "request_percentage"),
    ]:
        assert alter(quota_broker, entity, [OpData(key=key, remove=True)]).entries[0].error_code == 0
    assert describe(quota_broker, default_client) == {}
    with WireClient(quota_broker.host, quota_broker.port) as client:
        response = client.request(
            DescribeClientQuotasRequest(
                components=[ComponentData(entity_type="user", match_type=0, match=None)]
            ),
            0,
        )
    assert response.error_code == 42  # an exact match needs a name


def test_producer_byte_rate_throttles_only_its_user(quota_broker: BrokerProcess) -> None:
    response = alter(quota_broker, [("user", "alice")], [OpData(key="producer_byte_rate", value=QUOTA)])
    assert response.entries[0].error_code == 0
    admin = AdminClient({"bootstrap.servers": quota_broker.bootstrap})
    for future in admin.create_topics([NewTopic("alice.produce", 1), NewTopic("bob.produce", 1)]).values():
        future.result(10)
    alice = produce_rate(tenant(quota_broker, "alice"), "alice.produce")
    bob = produce_rate(tenant(quota_broker, "bob"), "bob.produce", measure=2.0)
    print(f"producer: quota {QUOTA} B/s, alice {alice:.0f} B/s, bob (no quota) {bob:.0f} B/s")
    assert 0.9 * QUOTA <= alice <= 1.1 * QUOTA
    assert bob > 3 * QUOTA


def test_consumer_byte_rate_throttles_a_consumer(quota_broker: BrokerProcess) -> None:
    response = alter(quota_broker, [("user", "alice")], [OpData(key="consumer_byte_rate", value=QUOTA)])
    assert response.entries[0].error_code == 0
    topic = "shared.consume"
    admin = AdminClient({"bootstrap.servers": quota_broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1)])[topic].result(10)
    # Small batches: a fetch answers at least one whole batch, whatever its byte limits.
    producer = Producer({"bootstrap.servers": quota_broker.bootstrap, "linger.ms": 5, "batch.size": 16384})
    count = 8_000  # 8 MB: more than alice may read during the test
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, PAYLOAD)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(30) == 0
    alice, _ = consume_rate(tenant(quota_broker, "alice"), topic, count)
    bob, read = consume_rate(tenant(quota_broker, "bob"), topic, count)
    print(f"consumer: quota {QUOTA} B/s, alice {alice:.0f} B/s, bob (no quota) {bob:.0f} B/s")
    assert 0.9 * QUOTA <= alice <= 1.1 * QUOTA
    assert read == count and bob > 3 * QUOTA


def test_quotas_survive_a_restart(quota_broker: BrokerProcess) -> None:
    entity = [("user", None), ("client-id", "batch-job")]
    assert (
        alter(quota_broker, entity, [OpData(key="producer_byte_rate", value=4096)]).entries[0].error_code == 0
    )
    quota_broker.restart()
    found = describe(quota_broker, [ComponentData(entity_type="client-id", match_type=0, match="batch-job")])
    assert found == {(("user", None), ("client-id", "batch-job")): {"producer_byte_rate": 4096.0}}
    alice = describe(
        quota_broker, [ComponentData(entity_type="user", match_type=0, match="alice")], strict=True
    )
    assert alice == {
        (("user", "alice"),): {"producer_byte_rate": float(QUOTA), "consumer_byte_rate": float(QUOTA)}
    }
