"""Failure injection (eventyard.fail.partition, eventyard.fail.broker) and the closing of connections
whose SCRAM credential is deleted, with real clients (confluent-kafka) over TCP."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.alter_configs_request import (
    AlterableConfig as PlainConfig,
)
from eventyard.protocol.messages.alter_configs_request import (
    AlterConfigsRequest,
)
from eventyard.protocol.messages.alter_configs_request import (
    AlterConfigsResource as PlainResource,
)
from eventyard.protocol.messages.api_versions_request import ApiVersionsRequest
from eventyard.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from eventyard.protocol.messages.incremental_alter_configs_request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)
from eventyard.protocol.messages.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from eventyard.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from eventyard.testing import BrokerProcess
from eventyard.wire_client import WireClient

pytestmark = pytest.mark.eventyard_only(
    reason="failure injection is an Eventyard extension (eventyard.fail.* broker configs); "
    "Kafka keeps authenticated connections open until they re-authenticate"
)

BROKER = 4
SET, DELETE = 0, 1
PASSWORD = "rotate-me"


def inject(
    broker: BrokerProcess, key: str, value: str, name: str = "1", op: int = SET
) -> tuple[int, str | None]:
    request = IncrementalAlterConfigsRequest(
        resources=[
            AlterConfigsResource(
                resource_type=BROKER,
                resource_name=name,
                configs=[AlterableConfig(name=key, config_operation=op, value=value)],
            )
        ]
    )
    with WireClient(broker.host, broker.port) as client:
        result = client.request(request, 1).responses[0]
    return result.error_code, result.error_message


def partition_state(broker: BrokerProcess, topic: str) -> tuple[int, int, int, int]:
    """(Metadata error, leader, Fetch error, ListOffsets error) of partition 0, over the wire."""
    with WireClient(broker.host, broker.port) as client:
        meta = client.request(MetadataRequest(topics=[MetadataRequestTopic(name=topic)]), 9)
        partition = meta.topics[0].partitions[0]
        fetched = client.request(
            FetchRequest(
                max_wait_ms=500,
                topics=[FetchTopic(topic=topic, partitions=[FetchPartition(partition_max_bytes=1 << 20)])],
            ),
            12,
        )
        offsets = client.request(
            ListOffsetsRequest(
                replica_id=-1,
                topics=[ListOffsetsTopic(name=topic, partitions=[ListOffsetsPartition(timestamp=-1)])],
            ),
            7,
        )
    return (
        partition.error_code,
        partition.leader_id,
        fetched.responses[0].partitions[0].error_code,
        offsets.topics[0].partitions[0].error_code,
    )


@pytest.fixture
def plain_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    with BrokerProcess(tmp_path / "data") as broker:
        yield broker


def test_invalid_failures_are_refused_with_a_reason(plain_broker: BrokerProcess, topic_name: str) -> None:
    admin = AdminClient({"bootstrap.servers": plain_broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, 1)])[topic_name].result(15)
    for key, value, reason in [
        ("eventyard.fail.partition", f"{topic_name}:0", "<topic>:<partition>:<duration_ms>"),
        ("eventyard.fail.partition", f"{topic_name}:x:100", "partition must be a number"),
        ("eventyard.fail.partition", f"{topic_name}:0:soon", "whole number of milliseconds"),
        ("eventyard.fail.partition", f"{topic_name}:0:0", "between 1 and"),
        ("eventyard.fail.partition", f"{topic_name}:5:100", "has no partition 5"),
        ("eventyard.fail.partition", "no-such-topic:0:100", "has no partition 0"),
        ("eventyard.fail.broker", "-5", "between 1 and"),
        ("eventyard.fail.broker", "99999999999", "between 1 and"),
    ]:
        error, message = inject(plain_broker, key, value)
        assert error == ErrorCode.INVALID_CONFIG, (key, value)
        assert message is not None and reason in message, message
    error, message = inject(plain_broker, "log.retention.ms", "1000")
    assert error == ErrorCode.INVALID_REQUEST and message and "eventyard.fail.partition" in message
    assert inject(plain_broker, "eventyard.fail.broker", "100", name="7")[0] == ErrorCode.INVALID_REQUEST
    assert inject(plain_broker, "eventyard.fail.broker", "", op=DELETE)[0] == ErrorCode.INVALID_REQUEST
    assert partition_state(plain_broker, topic_name) == (0, 1, 0, 0)  # nothing was injected

    # AlterConfigs (the non-incremental API) injects too, and the partition comes back by itself.
    with WireClient(plain_broker.host, plain_broker.port) as client:
        request = AlterConfigsRequest(
            resources=[
                PlainResource(
                    resource_type=BROKER,
                    resource_name="",
                    configs=[PlainConfig(name="eventyard.fail.partition", value=f"{topic_name}:0:1500")],
                )
            ]
        )
        assert client.request(request, 1).responses[0].error_code == 0
    down = (
        ErrorCode.LEADER_NOT_AVAILABLE,
        -1,
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
    )
    assert partition_state(plain_broker, topic_name) == down
    deadline = time.monotonic() + 15
    while partition_state(plain_broker, topic_name) != (0, 1, 0, 0):
        assert time.monotonic() < deadline, "the partition did not come back"
        time.sleep(0.2)


def alter_broker_config(admin: AdminClient, key: str, value: str) -> None:
    resource = ConfigResource(
        ResourceType.BROKER,
        "1",
        incremental_configs=[ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(15)


def test_partition_failure_loses_no_acknowledged_message(
    plain_broker: BrokerProcess, topic_name: str
) -> None:
    admin = AdminClient({"bootstrap.servers": plain_broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, 1)])[topic_name].result(15)
    producer = Producer(
        {
            "bootstrap.servers": plain_broker.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 60_000,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    acknowledged: list[int] = []
    failed: list[KafkaError] = []

    def report(err: KafkaError | None, msg: object) -> None:
        if err is None:
            acknowledged.append(int(msg.value()))  # type: ignore[attr-defined]
        else:
            failed.append(err)

    sent = 0
    start = time.monotonic()
    injected_at = None
    observed_down = False
    while time.monotonic() - start < 7.0:
        producer.produce(topic_name, str(sent).encode(), on_delivery=report)
        sent += 1
        producer.poll(0.002)
        elapsed = time.monotonic() - start
        if injected_at is None and elapsed > 1.0:
            alter_broker_config(admin, "eventyard.fail.partition", f"{topic_name}:0:2000")
            injected_at = time.monotonic()
            # The outage is visible over the wire while the producer keeps sending.
            observed_down = partition_state(plain_broker, topic_name)[1] == -1
    assert producer.flush(60) == 0
    assert not failed, failed[:3]
    assert observed_down
    assert injected_at is not None
    print(f"sent {sent}, acknowledged {len(acknowledged)}")
    assert len(acknowledged) == sent

    consumer = Consumer(
        {
            "bootstrap.servers": plain_broker.bootstrap,
            "group.id": f"g-{topic_name}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    read: list[int] = []
    deadline = time.monotonic() + 30
    while len(read) < len(acknowledged) and time.monotonic() < deadline:
        for msg in consumer.consume(10_000, 0.5):
            assert msg.error() is None, msg.error()
            read.append(int(msg.value()))
    consumer.close()
    # Every acknowledged message exactly once, in the order sent (the idempotent producer's retries
    # during the outage neither duplicated nor reordered anything).
    assert read == list(range(sent))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("certs")
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = {name: folder / f"{name}.pem" for name in ("ca", "server", "server-key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["server"]))
    server.private_key_pem.write_to_path(str(paths["server-key"]))
    return paths


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def answers(broker: BrokerProcess, protocol: str, port: int, ca: Path) -> bool:
    """Does the listener accept a connection and answer ApiVersions (after a TLS handshake for SSL)?"""
    try:
        if protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
            with WireClient("127.0.0.1", port, timeout=2) as client:
                return client.request(ApiVersionsRequest(), 0).error_code == 0
        context = ssl.create_default_context(cafile=str(ca))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            return tls.version() is not None
    except (OSError, ConnectionError):
        return False


def test_broker_failure_then_clients_recover(tmp_path: Path, topic_name: str, certs: dict[str, Path]) -> None:
    args = [
        "--listener", "SASL_PLAINTEXT://127.0.0.1:0",
        "--listener", "SSL://127.0.0.1:0",
        "--tls-cert", str(certs["server"]),
        "--tls-key", str(certs["server-key"]),
    ]  # fmt: skip
    with BrokerProcess(tmp_path / "data", *args) as broker:
        ports = {"PLAINTEXT": broker.port, **broker.listener_ports}
        assert set(ports) == {"PLAINTEXT", "SASL_PLAINTEXT", "SSL"}
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic_name, 1)])[topic_name].result(15)
        conf = {"bootstrap.servers": broker.bootstrap, "reconnect.backoff.max.ms": 500}
        producer = Producer({**conf, "enable.idempotence": True, "message.timeout.ms": 60_000})
        consumer = Consumer({**conf, "group.id": f"g-{topic_name}", "auto.offset.reset": "earliest"})
        consumer.subscribe([topic_name])
        acknowledged: list[int] = []
        read: list[int] = []

        def report(err: KafkaError | None, msg: object) -> None:
            assert err is None, err
            acknowledged.append(int(msg.value()))  # type: ignore[attr-defined]

        def step(i: int) -> None:
            producer.produce(topic_name, str(i).encode(), on_delivery=report)
            producer.poll(0)
            for msg in consumer.consume(1000, 0.05):
                if msg.error() is None:
                    read.append(int(msg.value()))

        sent = 0
        while len(read) < 20:  # both clients work before the failure
            step(sent)
            sent += 1
            assert sent < 2000, "the consumer read nothing before the failure"

        alter_broker_config(admin, "eventyard.fail.broker", "2000")  # answered before the outage
        down_at = time.monotonic()
        while not all(refused(p) for p in ports.values()):
            assert time.monotonic() - down_at < 1.5, "the listeners did not close"
            time.sleep(0.02)
        while time.monotonic() - down_at < 6 and not all(
            answers(broker, protocol, port, certs["ca"]) for protocol, port in ports.items()
        ):
            step(sent)  # the clients keep going through the outage
            sent += 1
            time.sleep(0.05)
        downtime = time.monotonic() - down_at
        assert 1.5 < downtime < 6, downtime  # back, on the same ports, with every protocol
        deadline = time.monotonic() + 60
        while (len(acknowledged) < sent or len(set(read)) < sent) and time.monotonic() < deadline:
            step(sent)
            sent += 1
            producer.flush(1)
        consumer.close()
        assert producer.flush(30) == 0
        assert sorted(acknowledged) == list(range(sent))
        assert set(read) == set(range(sent)), f"read {len(set(read))} of {sent}"


def test_deleted_scram_credential_closes_its_connections(tmp_path: Path, topic_name: str) -> None:
    with BrokerProcess(tmp_path / "data", "--listener", "SASL_PLAINTEXT://127.0.0.1:0") as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        upserts = [
            UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, 4096), PASSWORD.encode())
            for user in ("old-cred", "other")
            for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)
        ]
        for future in admin.alter_user_scram_credentials(upserts).values():
            future.result(15)
        admin.create_topics([NewTopic(topic_name, 1)])[topic_name].result(15)

        def producer(user: str, mechanism: str) -> Producer:
            return Producer(
                {
                    "bootstrap.servers": f"127.0.0.1:{broker.listener_ports['SASL_PLAINTEXT']}",
                    "security.protocol": "SASL_PLAINTEXT",
                    "sasl.mechanism": mechanism,
                    "sasl.username": user,
                    "sasl.password": PASSWORD,
                    "message.timeout.ms": 4000,
                }
            )

        def delivered(p: Producer) -> KafkaError | None:
            outcome: list[KafkaError | None] = []
            p.produce(topic_name, b"x", on_delivery=lambda err, _msg: outcome.append(err))
            p.flush(15)
            assert outcome, "no delivery report"
            return outcome[0]

        clients = {
            ("old-cred", "SCRAM-SHA-512"): producer("old-cred", "SCRAM-SHA-512"),
            ("old-cred", "SCRAM-SHA-256"): producer("old-cred", "SCRAM-SHA-256"),
            ("other", "SCRAM-SHA-512"): producer("other", "SCRAM-SHA-512"),
        }
        for client in clients.values():  # authenticated and connected
            assert delivered(client) is None

        # Only the SCRAM-SHA-512 credential of old-cred goes: only that connection is closed, and
        # the client cannot authenticate again.
        deletion = UserScramCredentialDeletion("old-cred", ScramMechanism.SCRAM_SHA_512)
        admin.alter_user_scram_credentials([deletion])["old-cred"].result(15)
        time.sleep(0.5)
        error = delivered(clients[("old-cred", "SCRAM-SHA-512")])
        assert error is not None, "the deleted credential's connection still works"
        assert delivered(clients[("old-cred", "SCRAM-SHA-256")]) is None
        assert delivered(clients[("other", "SCRAM-SHA-512")]) is None

        deletion = UserScramCredentialDeletion("old-cred", ScramMechanism.SCRAM_SHA_256)
        admin.alter_user_scram_credentials([deletion])["old-cred"].result(15)
        time.sleep(0.5)
        assert delivered(clients[("old-cred", "SCRAM-SHA-256")]) is not None
        assert delivered(clients[("other", "SCRAM-SHA-512")]) is None
        assert any("its SCRAM credential was deleted" in line for line in broker.log)


def test_failure_injection_needs_alter_configs_on_the_cluster(tmp_path: Path, topic_name: str) -> None:
    # The authorizer on, and no ACL at all: the plaintext client (User:ANONYMOUS) may not inject.
    with BrokerProcess(tmp_path / "data", "--authorizer", "--super-user", "User:admin") as broker:
        error, _ = inject(broker, "eventyard.fail.broker", "1000")
        assert error == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        assert not refused(broker.port)  # still listening
