"""The reference-broker harness: a real Apache Kafka, single node and three-node cluster."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from eventyard.protocol.messages.api_versions_request import ApiVersionsRequest
from eventyard.protocol.messages.metadata_request import MetadataRequest
from eventyard.testing.kafka_cluster import KafkaCluster
from eventyard.testing.kafka_reference import (
    DEFAULT_VERSION,
    KafkaReference,
    KafkaReferenceUnavailable,
    fetch_kafka,
    repo_root,
)
from eventyard.wire_client import WireClient

ROOT = Path(__file__).resolve().parents[2]


def create_topic(bootstrap: str, name: str, partitions: int, replication: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, replication)], operation_timeout=30)
    futures[name].result(60)


def value_of(msg: Message) -> bytes:
    value = msg.value()
    assert isinstance(value, bytes)
    return value


class Collector:
    """A producer whose delivery reports are kept: values delivered, errors seen."""

    def __init__(self, bootstrap: str, **conf: object) -> None:
        self.delivered: list[bytes] = []
        self.errors: list[KafkaError] = []
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})

    def _report(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors.append(err)
        else:
            self.delivered.append(value_of(msg))

    def send(self, topic: str, values: Iterable[bytes]) -> None:
        for value in values:
            self.producer.produce(topic, value=value, key=value, on_delivery=self._report)
            self.producer.poll(0)

    def flush(self, timeout: float = 120) -> None:
        assert self.producer.flush(timeout) == 0, "messages still in flight"
        assert not self.errors, self.errors


def poll_until(consumer: Consumer, seen: list[bytes], count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        error = msg.error()
        if error is not None:
            assert error.code() == KafkaError._PARTITION_EOF or error.retriable(), error
            continue
        seen.append(value_of(msg))
    assert len(seen) >= count, f"consumed {len(seen)} of {count}"


def read_log(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    """Every record in the topic, read by partition from the start to the high watermark."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in range(partitions)
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions) if ends[p] > 0])
        values: list[bytes] = []
        deadline = time.monotonic() + 60
        positions = {p: 0 for p in range(partitions)}
        while any(positions[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            values.append(value_of(msg))
            positions[msg.partition() or 0] = (msg.offset() or 0) + 1
        assert positions == ends, f"read up to {positions}, log ends at {ends}"
        return values
    finally:
        consumer.close()


def values(start: int, stop: int) -> list[bytes]:
    return [f"m-{i:05d}".encode() for i in range(start, stop)]


def test_pinned_version_matches_pom() -> None:
    pom = (ROOT / "tools" / "kafka-reference" / "pom.xml").read_text()
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert match is not None and match.group(1) == DEFAULT_VERSION
    assert repo_root() == ROOT


def test_missing_jars_say_how_to_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTYARD_KAFKA_LIBS", str(tmp_path / "empty"))
    with pytest.raises(KafkaReferenceUnavailable, match=r"scripts/fetch-kafka\.sh"):
        KafkaReference(tmp_path / "node").start()
    assert not (tmp_path / "node" / "data").exists()


@pytest.mark.reference
def test_fetch_again_is_a_no_op(kafka_libs: Path) -> None:
    started = time.monotonic()
    assert fetch_kafka(DEFAULT_VERSION) == kafka_libs
    assert time.monotonic() - started < 10
    assert (kafka_libs / f"kafka_2.13-{DEFAULT_VERSION}.jar").is_file()


@pytest.mark.reference
def test_single_node_answers_the_wire_client(kafka: KafkaReference) -> None:
    with WireClient(kafka.host, kafka.port) as client:
        request = ApiVersionsRequest(client_software_name="eventyard-tests", client_software_version="1.0")
        response = client.request(request, 3)  # Kafka checks both names at v3+
    assert response.error_code == 0
    assert {api.api_key for api in response.api_keys} >= {
        0,
        1,
        3,
        18,
    }  # Produce, Fetch, Metadata, ApiVersions
    assert kafka.metadata_brokers() == {1}


@pytest.mark.reference
@pytest.mark.timeout(300)
def test_single_node_produce_and_consume(kafka: KafkaReference, topic_name: str) -> None:
    create_topic(kafka.bootstrap, topic_name, partitions=3, replication=1)
    producer = Collector(kafka.bootstrap, acks="all")
    producer.send(topic_name, values(0, 300))
    producer.flush()
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap, "group.id": f"g-{topic_name}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic_name])
    seen: list[bytes] = []
    try:
        poll_until(consumer, seen, 300)
    finally:
        consumer.close()
    assert sorted(seen) == values(0, 300)


@pytest.mark.reference
@pytest.mark.timeout(300)
def test_single_node_creates_topics_on_produce(kafka: KafkaReference, topic_name: str) -> None:
    producer = Collector(kafka.bootstrap)
    producer.send(topic_name, values(0, 10))
    producer.flush()
    assert sorted(read_log(kafka.bootstrap, topic_name, 3)) == values(0, 10)  # num.partitions=3


@pytest.mark.reference
@pytest.mark.timeout(300)
def test_single_node_keeps_data_across_restart(kafka_libs: Path, tmp_path: Path, topic_name: str) -> None:
    with KafkaReference(tmp_path / "kafka", libs=kafka_libs) as node:
        producer = Collector(node.bootstrap, acks="all")
        producer.send(topic_name, values(0, 50))
        producer.flush()
        port = node.port
        assert node.restart().port == port
        assert sorted(read_log(node.bootstrap, topic_name, 1)) == values(0, 50)


@pytest.mark.reference
@pytest.mark.timeout(600)
def test_cluster_loses_nothing_with_one_broker_down(
    kafka_libs: Path, tmp_path: Path, topic_name: str
) -> None:
    with KafkaCluster(3, tmp_path / "cluster", partitions=3, libs=kafka_libs) as cluster:
        create_topic(cluster.bootstrap, topic_name, partitions=3, replication=3)
        producer = Collector(cluster.bootstrap, acks="all", **{"enable.idempotence": True})
        consumer = Consumer(
            {
                "bootstrap.servers": cluster.bootstrap,
                "group.id": f"g-{topic_name}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
            }
        )
        consumer.subscribe([topic_name])
        seen: list[bytes] = []
        try:
            producer.send(topic_name, values(0, 100))
            producer.flush()
            poll_until(consumer, seen, 100)  # also creates __consumer_offsets while all three are up

            # Kill the leader of partition 0 with writes in flight, and keep writing.
            topic = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(topic_name, timeout=30)
            victim = cluster.node(topic.topics[topic_name].partitions[0].leader)
            producer.send(topic_name, values(100, 150))
            victim.kill()
            producer.send(topic_name, values(150, 300))
            producer.flush()
            poll_until(consumer, seen, 300)

            victim.start()
            producer.send(topic_name, values(300, 400))
            producer.flush()
            poll_until(consumer, seen, 400)
        finally:
            consumer.close()

        assert sorted(producer.delivered) == values(0, 400)
        assert set(seen) == set(values(0, 400))
        log = read_log(cluster.bootstrap, topic_name, 3)
        assert sorted(log) == values(0, 400)  # idempotent acks=all: each record once, none lost
        wait_for_full_isr(cluster, topic_name)


def wait_for_full_isr(cluster: KafkaCluster, topic_name: str, timeout: float = 120) -> None:
    """The restarted broker catches up and rejoins every partition's ISR."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    deadline = time.monotonic() + timeout
    while True:
        partitions = admin.list_topics(topic_name, timeout=30).topics[topic_name].partitions
        if all(len(p.isrs) == 3 for p in partitions.values()):
            return
        assert time.monotonic() < deadline, {p.id: p.isrs for p in partitions.values()}
        time.sleep(1)


# SASL: a SASL_PLAINTEXT listener with SCRAM users bootstrapped at format time, and the
# StandardAuthorizer refusing whatever no ACL allows.


def sasl_errors(config: dict[str, str], topic: str) -> tuple[list[KafkaError], list[KafkaError]]:
    """Produce one record with `config`: the client-level errors (error_cb) and the delivery errors."""
    client_errors: list[KafkaError] = []
    delivery: list[KafkaError] = []
    producer = Producer({**config, "message.timeout.ms": 15000, "error_cb": client_errors.append})

    def report(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            delivery.append(err)

    producer.produce(topic, value=b"v", on_delivery=report)
    producer.flush(30)
    return client_errors, delivery


@pytest.mark.reference
@pytest.mark.timeout(300)
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_sasl_admin_produces_and_consumes(
    kafka_sasl: KafkaReference, topic_name: str, mechanism: str
) -> None:
    config = kafka_sasl.client_config("admin", mechanism)
    assert (
        config["security.protocol"] == "SASL_PLAINTEXT" and kafka_sasl.security_protocol == "SASL_PLAINTEXT"
    )
    producer = Collector(
        kafka_sasl.bootstrap, acks="all", **{k: v for k, v in config.items() if k != "bootstrap.servers"}
    )
    producer.send(topic_name, values(0, 20))
    producer.flush()
    assert sorted(read_log_as(config, topic_name)) == values(0, 20)


def read_log_as(config: dict[str, str], topic: str) -> list[bytes]:
    consumer = Consumer({**config, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen: list[bytes] = []
    try:
        poll_until(consumer, seen, 20)
    finally:
        consumer.close()
    return seen


@pytest.mark.reference
@pytest.mark.timeout(300)
def test_sasl_wrong_password_is_refused(kafka_sasl: KafkaReference, topic_name: str) -> None:
    config = {**kafka_sasl.client_config("admin"), "sasl.password": "not-the-secret"}
    client_errors, delivery = sasl_errors(config, topic_name)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in client_errors), client_errors
    assert delivery and all(e.code() != KafkaError.NO_ERROR for e in delivery)


@pytest.mark.reference
@pytest.mark.timeout(300)
def test_sasl_plaintext_client_is_not_served(kafka_sasl: KafkaReference) -> None:
    with WireClient(kafka_sasl.host, kafka_sasl.port) as client, pytest.raises((ConnectionError, OSError)):
        client.request(ApiVersionsRequest(), 0)
        client.request(MetadataRequest(topics=[]), 12)  # unauthenticated: the broker hangs up


@pytest.mark.reference
@pytest.mark.timeout(300)
def test_sasl_user_without_acls_is_refused_until_granted(kafka_sasl: KafkaReference, topic_name: str) -> None:
    admin = AdminClient(kafka_sasl.client_config())
    admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(60)
    _, delivery = sasl_errors(kafka_sasl.client_config("bob"), topic_name)
    assert [e.code() for e in delivery] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

    grant = AclBinding(
        ResourceType.TOPIC, topic_name, ResourcePatternType.LITERAL, "User:bob", "*",
        AclOperation.WRITE, AclPermissionType.ALLOW,
    )  # fmt: skip
    admin.create_acls([grant])[grant].result(30)
    deadline = time.monotonic() + 60  # ACLs reach the broker through the metadata log
    while True:
        client_errors, delivery = sasl_errors(kafka_sasl.client_config("bob", "SCRAM-SHA-256"), topic_name)
        if not delivery:
            break
        assert time.monotonic() < deadline, delivery
        time.sleep(1)
    assert not [e for e in client_errors if e.code() == KafkaError._AUTHENTICATION]


@pytest.mark.reference
@pytest.mark.timeout(300)
def test_sasl_scram_user_created_at_run_time(kafka_sasl: KafkaReference, topic_name: str) -> None:
    admin = AdminClient(kafka_sasl.client_config())
    upsert = UserScramCredentialUpsertion(
        "carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"carol-secret"
    )
    admin.alter_user_scram_credentials([upsert])["carol"].result(30)
    config = {**kafka_sasl.client_config("bob"), "sasl.username": "carol", "sasl.password": "carol-secret"}
    deadline = time.monotonic() + 60
    while True:  # authenticated, then refused by the authorizer (no ACLs): the credential works
        client_errors, delivery = sasl_errors(config, topic_name)
        if [e.code() for e in delivery] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]:
            break
        assert time.monotonic() < deadline, (client_errors, delivery)
        time.sleep(1)
