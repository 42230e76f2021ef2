"""SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and TLS listeners with real clients over TCP, beside
the plaintext listener that manages users with the standard AlterUserScramCredentials API."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from eventyard.protocol import api as protocol
from eventyard.protocol.messages.metadata_request import MetadataRequest
from eventyard.protocol.messages.request_header import RequestHeader
from eventyard.protocol.messages.sasl_handshake_request import SaslHandshakeRequest
from eventyard.testing import BrokerProcess
from eventyard.wire_client import WireClient

pytestmark = pytest.mark.eventyard_only(
    reason="runs its own Eventyard with --listener/--tls-* arguments and reads .listener_ports "
    "(a Kafka equivalent needs JAAS and keystore configuration of its own)"
)

PASSWORD = "s3cret-pa55"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("certs")
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("app-one", common_name="app-one")
    paths = {name: folder / f"{name}.pem" for name in ("ca", "server", "server-key", "client", "client-key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["server"]))
    server.private_key_pem.write_to_path(str(paths["server-key"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client"]))
    client.private_key_pem.write_to_path(str(paths["client-key"]))
    return paths


@pytest.fixture(scope="module")
def secure_broker(
    tmp_path_factory: pytest.TempPathFactory, certs: dict[str, Path]
) -> Iterator[BrokerProcess]:
    args = [
        "--listener", "SASL_PLAINTEXT://127.0.0.1:0",
        "--listener", "SASL_SSL://127.0.0.1:0",
        "--listener", "SSL://127.0.0.1:0",
        "--tls-cert", str(certs["server"]),
        "--tls-key", str(certs["server-key"]),
        "--tls-ca", str(certs["ca"]),
    ]  # fmt: skip
    with BrokerProcess(tmp_path_factory.mktemp("secure"), *args) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        upserts = [
            UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, 4096), PASSWORD.encode())
            for user in ("alice", "bob")
            for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)
        ]
        for future in admin.alter_user_scram_credentials(upserts).values():
            future.result(10)
        yield broker


def sasl_conf(
    broker: BrokerProcess, mechanism: str, password: str = PASSWORD, tls: dict[str, Path] | None = None
) -> dict:
    protocol_name = "SASL_SSL" if tls else "SASL_PLAINTEXT"
    conf = {
        "bootstrap.servers": f"127.0.0.1:{broker.listener_ports[protocol_name]}",
        "security.protocol": protocol_name,
        "sasl.mechanism": mechanism,
        "sasl.username": "alice",
        "sasl.password": password,
    }
    if tls:
        conf["ssl.ca.location"] = str(tls["ca"])
        conf["ssl.certificate.location"] = str(tls["client"])
        conf["ssl.key.location"] = str(tls["client-key"])
    return conf


def round_trip(conf: dict, topic: str) -> list[bytes]:
    producer = Producer({**conf, "message.timeout.ms": 10_000})
    for i in range(20):
        producer.produce(topic, b"secret-%d" % i)
    assert producer.flush(15) == 0
    consumer = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[bytes] = []
    for _ in range(50):
        for msg in consumer.consume(20, 0.5):
            assert msg.error() is None, msg.error()
            got.append(msg.value())
        if len(got) >= 20:
            break
    consumer.close()
    return got


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_mechanisms(secure_broker: BrokerProcess, topic_name: str, mechanism: str) -> None:
    assert round_trip(sasl_conf(secure_broker, mechanism), topic_name) == [
        b"secret-%d" % i for i in range(20)
    ]


def test_sasl_over_tls_with_client_certificate(
    secure_broker: BrokerProcess, topic_name: str, certs: dict[str, Path]
) -> None:
    conf = sasl_conf(secure_broker, "SCRAM-SHA-512", tls=certs)
    assert round_trip(conf, topic_name) == [b"secret-%d" % i for i in range(20)]


def test_tls_listener(secure_broker: BrokerProcess, topic_name: str, certs: dict[str, Path]) -> None:
    conf = {
        "bootstrap.servers": f"127.0.0.1:{secure_broker.listener_ports['SSL']}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(certs["ca"]),
        "ssl.certificate.location": str(certs["client"]),
        "ssl.key.location": str(certs["client-key"]),
    }
    assert round_trip(conf, topic_name) == [b"secret-%d" % i for i in range(20)]
    # Without a client certificate the TLS handshake is refused: nothing gets through.
    anonymous = {
        k: v for k, v in conf.items() if not k.startswith("ssl.certificate") and k != "ssl.key.location"
    }
    producer = Producer({**anonymous, "message.timeout.ms": 3000})
    outcomes: list[object] = []
    producer.produce(topic_name, b"nope", on_delivery=lambda err, msg: outcomes.append(err))
    producer.flush(6)
    assert len(outcomes) == 1 and outcomes[0] is not None  # not delivered


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_wrong_password_is_refused(secure_broker: BrokerProcess, topic_name: str, mechanism: str) -> None:
    errors: list[KafkaError] = []
    conf = sasl_conf(secure_broker, mechanism, password="wrong")
    admin = AdminClient({**conf, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    admin.poll(1)  # error callbacks are served by poll()
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_kafka_python_over_sasl(secure_broker: BrokerProcess, topic_name: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTopicPartition

    for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        conf = {
            "bootstrap_servers": f"127.0.0.1:{secure_broker.listener_ports['SASL_PLAINTEXT']}",
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": mechanism,
            "sasl_plain_username": "bob",
            "sasl_plain_password": PASSWORD,
        }
        producer = KafkaProducer(**conf)
        producer.send(topic_name, mechanism.encode()).get(10)
        producer.close()
    consumer = KafkaConsumer(**conf, consumer_timeout_ms=3000)
    consumer.assign([KTopicPartition(topic_name, 0)])
    consumer.seek_to_beginning()
    assert [m.value for m in consumer] == [b"PLAIN", b"SCRAM-SHA-256", b"SCRAM-SHA-512"]
    consumer.close()


def test_requests_before_authentication_close_the_connection(secure_broker: BrokerProcess) -> None:
    port = secure_broker.listener_ports["SASL_PLAINTEXT"]
    with WireClient("127.0.0.1", port) as c, pytest.raises(ConnectionError):
        c.request(MetadataRequest(topics=None), 9)


def test_legacy_handshake_v0_with_raw_tokens(secure_broker: BrokerProcess) -> None:
    with WireClient("127.0.0.1", secure_broker.listener_ports["SASL_PLAINTEXT"]) as c:
        handshake = c.request(SaslHandshakeRequest(mechanism="PLAIN"), 0)
        assert handshake.error_code == 0 and "SCRAM-SHA-256" in handshake.mechanisms
        token = b"\0alice\0" + PASSWORD.encode()
        c.send_raw(struct.pack(">i", len(token)) + token)
        assert c.recv_frame() == b""  # PLAIN succeeds with an empty token
        assert c.request(MetadataRequest(topics=None), 9).brokers  # and requests are now served
    with WireClient("127.0.0.1", secure_broker.listener_ports["SASL_PLAINTEXT"]) as c:
        c.request(SaslHandshakeRequest(mechanism="PLAIN"), 0)
        token = b"\0alice\0wrong"
        c.send_raw(struct.pack(">i", len(token)) + token)
        assert c.recv_frame() is None  # the legacy framing cannot carry an error: closed


def test_unknown_mechanism_is_refused(secure_broker: BrokerProcess) -> None:
    with WireClient("127.0.0.1", secure_broker.listener_ports["SASL_PLAINTEXT"]) as c:
        response = c.request(SaslHandshakeRequest(mechanism="GSSAPI"), 1)
        assert response.error_code == 33  # UNSUPPORTED_SASL_MECHANISM
        assert "PLAIN" in response.mechanisms
        header = RequestHeader(request_api_key=3, request_api_version=9, correlation_id=9, client_id="t")
        c.send_raw(protocol.frame_request(header, MetadataRequest(topics=None)))
        assert c.recv_frame() is None
