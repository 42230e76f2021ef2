"""Exact protocol behaviour, byte for byte, over TCP: idempotent produce, fetch limits and long
polling, list offsets, fetch sessions, ApiVersions. Real clients cover the happy paths elsewhere;
these pin down the answers a client relies on."""

from __future__ import annotations

import os
import threading
import time

import pytest

from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages import fetch_request as fq
from eventyard.protocol.messages.api_versions_request import ApiVersionsRequest
from eventyard.protocol.messages.create_topics_request import (
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
)
from eventyard.protocol.messages.init_producer_id_request import InitProducerIdRequest
from eventyard.protocol.messages.init_producer_id_response import InitProducerIdResponse
from eventyard.protocol.messages.join_group_request import JoinGroupRequest, JoinGroupRequestProtocol
from eventyard.protocol.messages.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from eventyard.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from eventyard.protocol.records import Record, build_batch, iter_batches
from eventyard.testing import BrokerProcess
from eventyard.wire_client import WireClient


def create(c: WireClient, topic: str, partitions: int = 1) -> None:
    request = CreateTopicsRequest(
        topics=[CreatableTopic(name=topic, num_partitions=partitions, replication_factor=1)], timeout_ms=5000
    )
    assert c.request(request, 5).topics[0].error_code == ErrorCode.NONE
    wait_until_led(c, topic, partitions)


def wait_until_led(c: WireClient, topic: str, partitions: int, timeout: float = 15) -> None:
    """Kafka answers CreateTopics before every partition has a leader serving it (Eventyard, after):
    poll ListOffsets until each partition answers without an error."""
    request = ListOffsetsRequest(
        replica_id=-1,
        topics=[
            ListOffsetsTopic(
                name=topic,
                partitions=[ListOffsetsPartition(partition_index=p, timestamp=-1) for p in range(partitions)],
            )
        ],
    )
    deadline = time.monotonic() + timeout
    while True:
        answers = c.request(request, 5).topics[0].partitions
        if all(p.error_code == ErrorCode.NONE for p in answers) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def init_producer_id(c: WireClient, timeout: float = 15) -> InitProducerIdResponse:
    """Kafka answers COORDINATOR_LOAD_IN_PROGRESS until it holds a block of producer ids: retry."""
    deadline = time.monotonic() + timeout
    while True:
        init = c.request(InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000), 4)
        if init.error_code != ErrorCode.COORDINATOR_LOAD_IN_PROGRESS or time.monotonic() > deadline:
            return init  # type: ignore[no-any-return]
        time.sleep(0.1)


def produce(c: WireClient, topic: str, batch: bytes, partition: int = 0, acks: int = -1) -> tuple[int, int]:
    request = ProduceRequest(
        acks=acks,
        timeout_ms=5000,
        topic_data=[
            TopicProduceData(
                name=topic, partition_data=[PartitionProduceData(index=partition, records=batch)]
            )
        ],
    )
    p = c.request(request, 9).responses[0].partition_responses[0]
    return p.error_code, p.base_offset


def fetch(
    c: WireClient,
    topic: str,
    offset: int,
    *,
    partitions: tuple[int, ...] = (0,),
    max_wait_ms: int = 0,
    min_bytes: int = 1,
    max_bytes: int = 50_000_000,
    partition_max_bytes: int = 10_000_000,
    isolation_level: int = 0,
    version: int = 12,
) -> fq.FetchRequest:
    request = fq.FetchRequest(
        max_wait_ms=max_wait_ms,
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        isolation_level=isolation_level,
        topics=[
            fq.FetchTopic(
                topic=topic,
                partitions=[
                    fq.FetchPartition(
                        partition=p, fetch_offset=offset, partition_max_bytes=partition_max_bytes
                    )
                    for p in partitions
                ],
            )
        ],
    )
    return c.request(request, version)  # type: ignore[no-any-return]


def records_of(batch_bytes: bytes) -> int:
    return sum(h.record_count for _, h in iter_batches(batch_bytes))


@pytest.fixture
def client(broker: BrokerProcess) -> WireClient:
    with WireClient(broker.host, broker.port) as c:
        yield c  # type: ignore[misc]


def test_idempotent_producer_sequences(client: WireClient, topic_name: str) -> None:
    create(client, topic_name)
    init = init_producer_id(client)
    assert init.error_code == ErrorCode.NONE
    pid, epoch = init.producer_id, init.producer_epoch

    def batch(seq: int, n: int = 3, producer_epoch: int = epoch) -> bytes:
        return build_batch(
            [Record(None, b"v%d" % (seq + i)) for i in range(n)],
            producer_id=pid,
            producer_epoch=producer_epoch,
            base_sequence=seq,
        )

    assert produce(client, topic_name, batch(0)) == (ErrorCode.NONE, 0)
    assert produce(client, topic_name, batch(3)) == (ErrorCode.NONE, 3)
    # A retry of an acknowledged batch is answered with its original offset and not written again.
    assert produce(client, topic_name, batch(0)) == (ErrorCode.NONE, 0)
    assert produce(client, topic_name, batch(3)) == (ErrorCode.NONE, 3)
    # A gap in the sequence is refused.
    assert produce(client, topic_name, batch(10))[0] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert produce(client, topic_name, batch(6)) == (ErrorCode.NONE, 6)
    # A new epoch starts at sequence 0; after it, the old epoch is fenced.
    assert (
        produce(client, topic_name, batch(5, producer_epoch=epoch + 1))[0]
        == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    )
    assert produce(client, topic_name, batch(0, producer_epoch=epoch + 1)) == (ErrorCode.NONE, 9)
    assert produce(client, topic_name, batch(9))[0] == ErrorCode.INVALID_PRODUCER_EPOCH
    response = fetch(client, topic_name, 0)
    assert response.responses[0].partitions[0].high_watermark == 12
    assert records_of(response.responses[0].partitions[0].records) == 12


def test_duplicates_of_the_last_five_batches_only(client: WireClient, topic_name: str) -> None:
    create(client, topic_name)
    pid = init_producer_id(client).producer_id
    batches = [
        build_batch([Record(None, b"x")], producer_id=pid, producer_epoch=0, base_sequence=s)
        for s in range(7)
    ]
    for seq, b in enumerate(batches):
        assert produce(client, topic_name, b) == (ErrorCode.NONE, seq)
    for seq in range(2, 7):  # the last five are recognised
        assert produce(client, topic_name, batches[seq]) == (ErrorCode.NONE, seq)
    # An older one is outside the window: not a duplicate we can vouch for, and out of sequence.
    assert produce(client, topic_name, batches[0])[0] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_fetch_limits_return_whole_batches(client: WireClient, topic_name: str) -> None:
    create(client, topic_name, 2)
    for p in (0, 1):
        for _i in range(10):
            assert produce(client, topic_name, build_batch([Record(None, b"x" * 1000)]), partition=p)[0] == 0
    one_batch = len(build_batch([Record(None, b"x" * 1000)]))
    # Per-partition limit: whole batches up to the limit.
    r = fetch(client, topic_name, 0, partitions=(0, 1), partition_max_bytes=3 * one_batch + 10)
    assert [records_of(p.records) for p in r.responses[0].partitions] == [3, 3]
    # Total limit: the first partition takes what fits; the second gets nothing rather than a partial batch.
    r = fetch(client, topic_name, 0, partitions=(0, 1), max_bytes=4 * one_batch + 10)
    assert [records_of(p.records) for p in r.responses[0].partitions] == [4, 0]
    # KIP-74: a first batch larger than every limit still comes back whole.
    r = fetch(client, topic_name, 0, partitions=(0,), max_bytes=10, partition_max_bytes=10)
    assert records_of(r.responses[0].partitions[0].records) == 1
    # Fetching from the middle of the log, and at its end.
    r = fetch(client, topic_name, 7)
    partition = r.responses[0].partitions[0]
    assert records_of(partition.records) == 3 and partition.high_watermark == 10
    assert fetch(client, topic_name, 10).responses[0].partitions[0].records == b""
    assert (
        fetch(client, topic_name, 11).responses[0].partitions[0].error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    )


def test_fetch_long_polls_until_data_or_timeout(
    broker: BrokerProcess, client: WireClient, topic_name: str
) -> None:
    create(client, topic_name)
    start = time.monotonic()
    r = fetch(client, topic_name, 0, max_wait_ms=300)
    waited = time.monotonic() - start
    assert r.responses[0].partitions[0].records == b""
    assert 0.25 <= waited < 2.0

    def produce_later() -> None:
        time.sleep(0.3)
        with WireClient(broker.host, broker.port) as other:
            produce(other, topic_name, build_batch([Record(None, b"late")]))

    thread = threading.Thread(target=produce_later)
    thread.start()
    start = time.monotonic()
    r = fetch(client, topic_name, 0, max_wait_ms=10_000)
    waited = time.monotonic() - start
    thread.join()
    assert records_of(r.responses[0].partitions[0].records) == 1
    assert 0.25 <= waited < 5.0  # woken by the append, not by the 10 s timeout


@pytest.mark.xfail(
    condition=os.environ.get("EVENTYARD_TARGET") == "kafka",
    reason="deliberate: Eventyard creates no fetch sessions (answers session_id 0 to a full fetch with "
    "session_id 0, epoch 0); Kafka creates one and answers its id",
    strict=True,
)
def test_fetch_fields_isolation_and_sessions(client: WireClient, topic_name: str) -> None:
    create(client, topic_name)
    produce(client, topic_name, build_batch([Record(None, b"a"), Record(None, b"b")]))
    committed = fetch(client, topic_name, 0, isolation_level=1).responses[0].partitions[0]
    assert (committed.high_watermark, committed.last_stable_offset, committed.log_start_offset) == (2, 2, 0)
    assert committed.aborted_transactions == []
    uncommitted = fetch(client, topic_name, 0, isolation_level=0).responses[0].partitions[0]
    assert uncommitted.aborted_transactions is None
    # A client asking for a fetch session gets session id 0: keep sending full fetches.
    request = fq.FetchRequest(max_wait_ms=0, min_bytes=1, session_id=0, session_epoch=0, topics=[])
    assert client.request(request, 12).session_id == 0
    unknown = fq.FetchRequest(max_wait_ms=0, min_bytes=1, session_id=1234, session_epoch=1, topics=[])
    assert client.request(unknown, 12).error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND


def test_list_offsets_by_time(client: WireClient, topic_name: str) -> None:
    create(client, topic_name)
    base = 1_600_000_000_000
    for i in range(5):
        produce(client, topic_name, build_batch([Record(None, b"%d" % i, timestamp=base + i * 10)]))

    def lookup(ts: int, version: int = 7) -> tuple[int, int]:
        request = ListOffsetsRequest(
            replica_id=-1,
            topics=[
                ListOffsetsTopic(
                    name=topic_name, partitions=[ListOffsetsPartition(partition_index=0, timestamp=ts)]
                )
            ],
        )
        p = client.request(request, version).topics[0].partitions[0]
        return p.offset, p.timestamp

    assert lookup(-2)[0] == 0
    assert lookup(-1)[0] == 5
    assert lookup(-3) == (4, base + 40)
    assert lookup(base + 15) == (2, base + 20)
    assert lookup(base + 41) == (-1, -1)


@pytest.mark.eventyard_only(reason="asserts Eventyard's own advertised version ranges (Kafka's are wider)")
def test_api_versions_v3_lists_what_is_served(client: WireClient) -> None:
    response = client.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3)
    served = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
    assert served[0] == (3, 11) and served[1] == (4, 17) and served[18] == (0, 4)
    assert 24 not in served  # no transactions: not advertised


def test_compacted_topics_refuse_records_without_keys(client: WireClient, topic_name: str) -> None:
    request = CreateTopicsRequest(
        topics=[
            CreatableTopic(
                name=topic_name,
                num_partitions=1,
                replication_factor=1,
                configs=[CreatableTopicConfig(name="cleanup.policy", value="compact")],
            )
        ],
        timeout_ms=5000,
    )
    assert client.request(request, 5).topics[0].error_code == ErrorCode.NONE
    for codec in (0, 4):
        keyless = build_batch([Record(b"k", b"v"), Record(None, b"v")], compression=codec)
        assert produce(client, topic_name, keyless)[0] == ErrorCode.INVALID_RECORD
        keyed = build_batch([Record(b"k", b"v"), Record(b"k2", None)], compression=codec)
        assert produce(client, topic_name, keyed)[0] == ErrorCode.NONE


@pytest.mark.parametrize(
    "group_id",
    [
        "",
        pytest.param(
            "g" * 256,
            marks=pytest.mark.xfail(
                condition=os.environ.get("EVENTYARD_TARGET") == "kafka",
                reason="deliberate: Eventyard refuses group ids over 255 characters (MAX_GROUP_ID_LENGTH); "
                "Kafka sets no limit and answers JoinGroup v5 with MEMBER_ID_REQUIRED",
                strict=True,
            ),
        ),
    ],
    ids=["empty", "256-chars"],
)
def test_empty_or_too_long_group_ids_are_invalid(client: WireClient, group_id: str) -> None:
    request = JoinGroupRequest(
        group_id=group_id,
        session_timeout_ms=10000,
        rebalance_timeout_ms=10000,
        member_id="",
        protocol_type="consumer",
        protocols=[JoinGroupRequestProtocol(name="range", metadata=b"")],
    )
    assert client.request(request, 5).error_code == ErrorCode.INVALID_GROUP_ID
