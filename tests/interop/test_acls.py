"""ACLs with real clients: a broker with the authorizer on, an admin on the plaintext listener (a super
user), and tenants on a SASL listener who may only touch their own prefixed topics and groups.

librdkafka checks Metadata before it produces or fetches, so the refusals of Produce, Fetch,
OffsetCommit and JoinGroup themselves are also checked on the wire, as an authenticated tenant."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
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

from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.create_acls_request import AclCreation, CreateAclsRequest
from eventyard.protocol.messages.describe_acls_request import DescribeAclsRequest
from eventyard.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from eventyard.protocol.messages.join_group_request import JoinGroupRequest, JoinGroupRequestProtocol
from eventyard.protocol.messages.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from eventyard.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from eventyard.protocol.messages.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from eventyard.protocol.messages.offset_fetch_request import OffsetFetchRequest
from eventyard.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from eventyard.protocol.messages.sasl_authenticate_request import SaslAuthenticateRequest
from eventyard.protocol.messages.sasl_handshake_request import SaslHandshakeRequest
from eventyard.protocol.records import Record, build_batch
from eventyard.testing import BrokerProcess
from eventyard.wire_client import WireClient

PASSWORD = "tenant-pa55"
TENANTS = ("alice", "bob")
ARGS = ("--authorizer", "--super-user", "User:ANONYMOUS", "--listener", "SASL_PLAINTEXT://127.0.0.1:0")
OWN_BROKER = pytest.mark.eventyard_only(
    reason="runs its own Eventyard with --authorizer/--super-user/--listener and reads .listener_ports "
    "(a Kafka equivalent needs StandardAuthorizer, JAAS and SCRAM bootstrap configuration of its own)"
)


def allow(
    user: str,
    name: str,
    operation: AclOperation,
    resource: ResourceType = ResourceType.TOPIC,
    pattern: ResourcePatternType = ResourcePatternType.LITERAL,
) -> AclBinding:
    return AclBinding(resource, name, pattern, f"User:{user}", "*", operation, AclPermissionType.ALLOW)


def tenant_acls(user: str) -> list[AclBinding]:
    prefix = f"{user}."
    return [
        allow(user, prefix, AclOperation.ALL, ResourceType.TOPIC, ResourcePatternType.PREFIXED),
        allow(user, prefix, AclOperation.READ, ResourceType.GROUP, ResourcePatternType.PREFIXED),
    ]


def create_acls(admin: AdminClient, bindings: list[AclBinding]) -> None:
    for future in admin.create_acls(bindings).values():
        future.result(10)


def add_users(admin: AdminClient, *users: str) -> None:
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096)
    upserts = [UserScramCredentialUpsertion(user, info, PASSWORD.encode()) for user in users]
    for future in admin.alter_user_scram_credentials(upserts).values():
        future.result(10)


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with BrokerProcess(tmp_path_factory.mktemp("acls"), *ARGS) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        add_users(admin, *TENANTS, "reader", "carol")
        create_acls(admin, [b for user in TENANTS for b in tenant_acls(user)])
        yield broker


@pytest.fixture
def admin(acl_broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": acl_broker.bootstrap})


def conf(broker: BrokerProcess, user: str) -> dict[str, str]:
    return {
        "bootstrap.servers": f"127.0.0.1:{broker.listener_ports['SASL_PLAINTEXT']}",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": user,
        "sasl.password": PASSWORD,
    }


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def create_topic(admin: AdminClient, name: str) -> None:
    admin.create_topics([NewTopic(name, 1)])[name].result(10)


def produce(config: dict[str, str], topic: str, values: list[bytes]) -> list[KafkaError | None]:
    """One delivery outcome per value: None when written."""
    producer = Producer({**config, "message.timeout.ms": 8000})
    outcomes: list[KafkaError | None] = []
    for value in values:
        producer.produce(topic, value, on_delivery=lambda err, msg: outcomes.append(err))
    producer.flush(15)
    return outcomes


def consume(config: dict[str, str], topic: str, group: str, count: int) -> list[bytes]:
    """Subscribe in a group, read `count` records and commit them."""
    consumer = Consumer({**config, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        got.append(message.value())
    consumer.commit(asynchronous=False)
    consumer.close()
    return got


def consumer_error(config: dict[str, str], *, group: str, topic: str) -> KafkaError:
    """The first error a subscribed consumer meets."""
    consumer = Consumer({**config, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is not None:
                return message.error()
        raise AssertionError("the consumer met no error")
    finally:
        consumer.close()


def high_watermark(broker: BrokerProcess, topic: str) -> int:
    with WireClient(broker.host, broker.port) as c:  # the super user's plaintext listener
        request = ListOffsetsRequest(
            replica_id=-1,
            topics=[ListOffsetsTopic(name=topic, partitions=[ListOffsetsPartition(timestamp=-1)])],
        )
        partition = c.request(request, 7).topics[0].partitions[0]
        assert partition.error_code == 0
        return int(partition.offset)


def sasl_wire_client(broker: BrokerProcess, user: str) -> WireClient:
    """A raw protocol connection authenticated as `user` with SASL PLAIN."""
    c = WireClient("127.0.0.1", broker.listener_ports["SASL_PLAINTEXT"])
    assert c.request(SaslHandshakeRequest(mechanism="PLAIN"), 1).error_code == 0
    token = b"\0" + user.encode() + b"\0" + PASSWORD.encode()
    assert c.request(SaslAuthenticateRequest(auth_bytes=token), 2).error_code == 0
    return c


# -- tenants on their own prefixes


@OWN_BROKER
@pytest.mark.parametrize("user", TENANTS)
def test_a_tenant_creates_produces_and_consumes_its_own_topics(acl_broker: BrokerProcess, user: str) -> None:
    config = conf(acl_broker, user)
    topic = unique(f"{user}.orders-")
    create_topic(AdminClient(config), topic)  # CREATE through the prefixed ACL
    values = [b"%s-%d" % (user.encode(), i) for i in range(5)]
    assert produce(config, topic, values) == [None] * 5
    group = unique(f"{user}.app-")
    assert consume(config, topic, group, 5) == values
    committed = Consumer({**config, "group.id": group}).committed([TopicPartition(topic, 0)], timeout=10)
    assert committed[0].offset == 5


@OWN_BROKER
def test_metadata_lists_only_the_tenants_own_topics(acl_broker: BrokerProcess, admin: AdminClient) -> None:
    for user in TENANTS:
        create_topic(admin, unique(f"{user}.listed-"))
    create_topic(admin, unique("shared-"))
    everything = set(admin.list_topics(timeout=10).topics)
    assert any(t.startswith("shared-") for t in everything)
    for user in TENANTS:
        visible = set(AdminClient(conf(acl_broker, user)).list_topics(timeout=10).topics)
        assert visible == {t for t in everything if t.startswith(f"{user}.")}
        assert any(t.startswith(f"{user}.listed-") for t in visible)


@OWN_BROKER
def test_the_other_tenants_topics_and_groups_are_refused(
    acl_broker: BrokerProcess, admin: AdminClient
) -> None:
    bobs = unique("bob.private-")
    create_topic(admin, bobs)
    alice = conf(acl_broker, "alice")
    outcomes = produce(alice, bobs, [b"intrusion"])
    assert [e.code() if e else None for e in outcomes] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert high_watermark(acl_broker, bobs) == 0  # nothing written

    new = unique("bob.new-")
    alice_admin = AdminClient(alice)
    with pytest.raises(KafkaException) as refused:
        alice_admin.create_topics([NewTopic(new, 1)])[new].result(10)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert new not in admin.list_topics(timeout=10).topics

    mine = unique("alice.mine-")
    create_topic(admin, mine)
    error = consumer_error(alice, group=unique("bob.app-"), topic=mine)
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    error = consumer_error(alice, group=unique("alice.app-"), topic=bobs)
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


@OWN_BROKER
def test_refusals_on_the_wire(acl_broker: BrokerProcess, admin: AdminClient) -> None:
    bobs, mine = unique("bob.wire-"), unique("alice.wire-")
    create_topic(admin, bobs)
    create_topic(admin, mine)
    with sasl_wire_client(acl_broker, "alice") as c:
        batch = build_batch([Record(b"k", b"intrusion")])
        produced = c.request(
            ProduceRequest(
                acks=-1,
                timeout_ms=5000,
                topic_data=[TopicProduceData(name=bobs, partition_data=[PartitionProduceData(0, batch)])],
            ),
            9,
        )
        assert produced.responses[0].partition_responses[0].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED

        fetched = c.request(
            FetchRequest(
                max_wait_ms=0,
                topics=[FetchTopic(topic=bobs, partitions=[FetchPartition(partition_max_bytes=1 << 20)])],
            ),
            12,
        )
        assert fetched.responses[0].partitions[0].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        assert fetched.responses[0].partitions[0].records in (b"", None)

        def commit(group: str, topic: str) -> int:
            response = c.request(
                OffsetCommitRequest(
                    group_id=group,
                    topics=[
                        OffsetCommitRequestTopic(
                            name=topic, partitions=[OffsetCommitRequestPartition(committed_offset=1)]
                        )
                    ],
                ),
                8,
            )
            return int(response.topics[0].partitions[0].error_code)

        assert commit(unique("alice.g-"), bobs) == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        bobs_group = unique("bob.g-")
        assert commit(bobs_group, mine) == ErrorCode.GROUP_AUTHORIZATION_FAILED

        joined = c.request(
            JoinGroupRequest(
                group_id=bobs_group,
                session_timeout_ms=10_000,
                protocol_type="consumer",
                protocols=[JoinGroupRequestProtocol(name="range", metadata=b"")],
            ),
            5,
        )
        assert joined.error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED

        metadata = c.request(MetadataRequest(topics=[MetadataRequestTopic(name=bobs)]), 9)
        assert metadata.topics[0].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        assert not metadata.topics[0].partitions

        # ACL administration needs the cluster (librdkafka drops DescribeAcls' error: check it here).
        described = c.request(DescribeAclsRequest(resource_type_filter=1, pattern_type_filter=1), 2)
        assert described.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED and not described.resources
        created = c.request(
            CreateAclsRequest(
                creations=[AclCreation(2, "bob.", 4, "User:alice", "*", operation=2, permission_type=3)]
            ),
            2,
        )
        assert created.results[0].error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED

    assert high_watermark(acl_broker, bobs) == 0
    with WireClient(acl_broker.host, acl_broker.port) as c:
        offsets = c.request(OffsetFetchRequest(group_id=bobs_group, topics=None), 7)
        assert offsets.error_code == 0 and not offsets.topics  # nothing was committed
    log = "".join(acl_broker.log)
    assert f"principal=User:alice host=127.0.0.1 operation=WRITE resource=TOPIC:{bobs} (Produce)" in log
    assert f"operation=READ resource=GROUP:{bobs_group} (JoinGroup)" in log


# -- narrower grants, revocation and durability


@OWN_BROKER
def test_a_read_only_user_consumes_but_cannot_produce(acl_broker: BrokerProcess, admin: AdminClient) -> None:
    topic = unique("feed-")
    create_topic(admin, topic)
    assert produce({"bootstrap.servers": acl_broker.bootstrap}, topic, [b"a", b"b", b"c"]) == [None] * 3
    create_acls(
        admin,
        [
            allow("reader", topic, AclOperation.READ),
            allow("reader", topic, AclOperation.DESCRIBE),
            allow("reader", "reader.", AclOperation.READ, ResourceType.GROUP, ResourcePatternType.PREFIXED),
        ],
    )
    reader = conf(acl_broker, "reader")
    assert consume(reader, topic, unique("reader.g-"), 3) == [b"a", b"b", b"c"]
    outcomes = produce(reader, topic, [b"forbidden"])
    assert [e.code() if e else None for e in outcomes] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert high_watermark(acl_broker, topic) == 3
    # No WRITE anywhere: an idempotent producer is not even given a producer id.
    producer = Producer({**reader, "enable.idempotence": True})
    producer.produce(topic, b"x")
    with pytest.raises(KafkaException) as fatal:  # confluent-kafka raises fatal errors from poll()
        producer.flush(10)
    assert fatal.value.args[0].fatal()
    assert fatal.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert high_watermark(acl_broker, topic) == 3


@OWN_BROKER
def test_deleting_an_acl_revokes_access(acl_broker: BrokerProcess, admin: AdminClient) -> None:
    topic = unique("carol.t-")
    create_topic(admin, topic)
    create_acls(admin, [allow("carol", topic, AclOperation.WRITE)])
    producer = Producer({**conf(acl_broker, "carol"), "message.timeout.ms": 5000})
    outcomes: list[KafkaError | None] = []
    producer.produce(topic, b"granted", on_delivery=lambda err, msg: outcomes.append(err))
    producer.flush(10)
    assert outcomes == [None]

    carols = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        "User:carol",
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    deleted = admin.delete_acls([carols])[carols].result(10)
    assert [(b.name, b.operation) for b in deleted] == [(topic, AclOperation.WRITE)]
    assert admin.describe_acls(carols).result(10) == []
    # The same producer, with the topic in its metadata cache: its next Produce is refused.
    producer.produce(topic, b"revoked", on_delivery=lambda err, msg: outcomes.append(err))
    producer.flush(10)
    assert outcomes[1] is not None and outcomes[1].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert high_watermark(acl_broker, topic) == 1


@OWN_BROKER
def test_describe_and_delete_with_filters(admin: AdminClient) -> None:
    user = unique("dave")
    bindings = [
        allow(user, "dave.", AclOperation.READ, pattern=ResourcePatternType.PREFIXED),
        allow(user, "dave.topic", AclOperation.WRITE),
        allow(user, "dave.other", AclOperation.WRITE),
        AclBinding(
            ResourceType.TOPIC,
            "*",
            ResourcePatternType.LITERAL,
            f"User:{user}",
            "*",
            AclOperation.DELETE,
            AclPermissionType.DENY,
        ),
    ]
    create_acls(admin, bindings)

    def selecting(name: str | None, pattern: ResourcePatternType) -> AclBindingFilter:
        return AclBindingFilter(
            ResourceType.TOPIC, name, pattern, f"User:{user}", None, AclOperation.ANY, AclPermissionType.ANY
        )

    def names(found: list[AclBinding]) -> set[tuple[str, ResourcePatternType]]:
        return {(b.name, b.resource_pattern_type) for b in found}

    everything = admin.describe_acls(selecting(None, ResourcePatternType.ANY)).result(10)
    assert names(everything) == names(bindings)
    matching = admin.describe_acls(selecting("dave.topic", ResourcePatternType.MATCH)).result(10)
    assert names(matching) == names([bindings[0], bindings[1], bindings[3]])
    prefixed = selecting(None, ResourcePatternType.PREFIXED)
    assert names(admin.delete_acls([prefixed])[prefixed].result(10)) == names(bindings[:1])
    remaining = admin.describe_acls(selecting(None, ResourcePatternType.ANY)).result(10)
    assert names(remaining) == names(bindings[1:])


@OWN_BROKER
def test_acls_survive_a_restart(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "data", *ARGS) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        add_users(admin, "erin")
        create_acls(admin, [allow("erin", "erin.", AclOperation.ALL, pattern=ResourcePatternType.PREFIXED)])
        broker.restart()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        everything = AclBindingFilter(
            ResourceType.ANY,
            None,
            ResourcePatternType.ANY,
            None,
            None,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        restored = admin.describe_acls(everything).result(10)
        assert [(b.name, b.principal, b.operation) for b in restored] == [
            ("erin.", "User:erin", AclOperation.ALL)
        ]
        erin = conf(broker, "erin")
        assert produce(erin, "erin.after-restart", [b"still allowed"]) == [None]  # auto-created: CREATE
        assert produce(erin, "frank.topic", [b"never"])[0] is not None


def test_without_the_authorizer_acl_apis_are_disabled(broker: BrokerProcess) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    binding = allow("alice", "anything", AclOperation.READ)
    with pytest.raises(KafkaException) as refused:
        admin.create_acls([binding])[binding].result(10)
    assert refused.value.args[0].code() == KafkaError.SECURITY_DISABLED


@OWN_BROKER
def test_kafka_python_manages_acls_and_sees_refusals(acl_broker: BrokerProcess) -> None:
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        KafkaAdminClient,
        ResourcePattern,
        ResourcePatternFilter,
    )
    from kafka.admin import ResourceType as KResourceType
    from kafka.errors import ClusterAuthorizationFailedError

    user = unique("frank")
    pattern = ResourcePattern(KResourceType.TOPIC, f"{user}.", ACLResourcePatternType.PREFIXED)
    acl = ACL(f"User:{user}", "*", ACLOperation.READ, ACLPermissionType.ALLOW, pattern)
    selected = ACLFilter(
        f"User:{user}",
        None,
        ACLOperation.ANY,
        ACLPermissionType.ANY,
        ResourcePatternFilter(KResourceType.ANY, None, ACLResourcePatternType.ANY),
    )
    admin = KafkaAdminClient(bootstrap_servers=acl_broker.bootstrap)
    tenant = KafkaAdminClient(
        bootstrap_servers=f"127.0.0.1:{acl_broker.listener_ports['SASL_PLAINTEXT']}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username="alice",
        sasl_plain_password=PASSWORD,
    )
    try:
        assert admin.create_acls([acl])["failed"] == []
        found, _ = admin.describe_acls(selected)
        assert [(a.principal, a.resource_pattern.resource_name) for a in found] == [
            (f"User:{user}", f"{user}.")
        ]
        # Unlike librdkafka, kafka-python reports DescribeAcls' error code.
        with pytest.raises(ClusterAuthorizationFailedError):
            tenant.describe_acls(selected)
        [(_, deleted, error)] = admin.delete_acls([selected])
        assert len(deleted) == 1 and error.errno == 0
    finally:
        admin.close()
        tenant.close()
