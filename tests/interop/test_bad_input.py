"""Bad input on purpose: the broker answers with the protocol's error or closes the
connection, never crashes, and other clients carry on."""

from __future__ import annotations

import os
import struct
import time

import pytest

from eventyard.protocol import api as protocol
from eventyard.protocol import codec
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.api_versions_request import ApiVersionsRequest
from eventyard.protocol.messages.api_versions_response import ApiVersionsResponse
from eventyard.protocol.messages.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from eventyard.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from eventyard.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from eventyard.protocol.messages.request_header import RequestHeader
from eventyard.protocol.records import Record, build_batch
from eventyard.testing import BrokerProcess
from eventyard.wire_client import WireClient
from tests.interop.test_wire_semantics import wait_until_led


def client(broker: BrokerProcess) -> WireClient:
    return WireClient(broker.host, broker.port)


def alive(broker: BrokerProcess) -> bool:
    with client(broker) as c:
        response = c.request(ApiVersionsRequest(), 0)
        return bool(response.error_code == 0 and response.api_keys)


def produce_raw(c: WireClient, topic: str, records: bytes, version: int = 9) -> tuple[int, str | None]:
    request = ProduceRequest(
        acks=-1,
        timeout_ms=5000,
        topic_data=[
            TopicProduceData(name=topic, partition_data=[PartitionProduceData(index=0, records=records)])
        ],
    )
    response = c.request(request, version)
    p = response.responses[0].partition_responses[0]
    return p.error_code, p.error_message


def make_topic(c: WireClient, name: str, timeout: float = 15) -> None:
    """Auto-create `name` by asking for its metadata. Eventyard answers NONE with the new partitions at
    once; Kafka answers UNKNOWN_TOPIC_OR_PARTITION while it creates the topic: ask again until NONE."""
    deadline = time.monotonic() + timeout
    while True:
        response = c.request(MetadataRequest(topics=[MetadataRequestTopic(name=name)]), 9)
        if response.topics[0].error_code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert response.topics[0].error_code == 0
    wait_until_led(c, name, 1)


def test_api_versions_with_unknown_version_gets_v0_answer(broker: BrokerProcess) -> None:
    with client(broker) as c:
        c.correlation_id = 7
        # ApiVersions v99: the broker answers in v0 with UNSUPPORTED_VERSION and the versions of
        # ApiVersions it serves, so that the client can retry with one (as Kafka does). The
        # header is v2, as for ApiVersions v3+: it ends with (empty) tagged fields; without that byte
        # Kafka closes the connection (Eventyard answers all the same).
        frame = struct.pack(">hhih", 18, 99, 7, 4) + b"test" + b"\x00"
        c.send_raw(struct.pack(">i", len(frame)) + frame)
        answer = c.recv_frame()
        assert answer is not None
        response, _ = codec.decode(ApiVersionsResponse, 0, answer, 4)
        assert response.error_code == ErrorCode.UNSUPPORTED_VERSION
        assert [k.api_key for k in response.api_keys] == [18]
        assert response.api_keys[0].min_version == 0 and response.api_keys[0].max_version >= 3
    assert alive(broker)


@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">hhih", 12345, 0, 1, -1),  # unknown api key
        struct.pack(">hhih", 3, 200, 1, -1),  # unsupported Metadata version
        struct.pack(">hh", 3, 1),  # truncated header
        struct.pack(">hhih", 3, 9, 1, -1) + b"\xff\xff\xff",  # garbage body
        struct.pack(">hhih", 0, 9, 1, -1) + b"\x00" * 3,  # truncated produce
    ],
)
def test_malformed_frames_close_the_connection(broker: BrokerProcess, frame: bytes) -> None:
    with client(broker) as c:
        c.send_raw(struct.pack(">i", len(frame)) + frame)
        assert c.recv_frame() is None
    assert alive(broker)


def test_oversized_frame_is_refused_before_reading_it(broker: BrokerProcess) -> None:
    with client(broker) as c:
        c.send_raw(struct.pack(">i", 2**31 - 1) + b"\x00" * 100)
        assert c.recv_frame() is None
    with client(broker) as c:
        c.send_raw(struct.pack(">i", -5))
        assert c.recv_frame() is None
    assert alive(broker)


def test_bad_crc_is_corrupt_message_and_a_cut_batch_invalid_record(
    broker: BrokerProcess, topic_name: str
) -> None:
    with client(broker) as c:
        make_topic(c, topic_name)
        batch = bytearray(build_batch([Record(b"k", b"v" * 100)]))
        batch[-1] ^= 0xFF
        assert produce_raw(c, topic_name, bytes(batch))[0] == ErrorCode.CORRUPT_MESSAGE
        truncated = build_batch([Record(b"k", b"v")])[:-3]
        assert produce_raw(c, topic_name, truncated)[0] == ErrorCode.INVALID_RECORD  # as Kafka answers
        # A good batch still goes through on the same connection, at offset 0: nothing bad was stored.
        good = build_batch([Record(b"k", b"v")])
        assert produce_raw(c, topic_name, good)[0] == ErrorCode.NONE


def test_oversized_batch_is_message_too_large(broker: BrokerProcess, topic_name: str) -> None:
    with client(broker) as c:
        make_topic(c, topic_name)
        big = build_batch([Record(None, b"x" * (2 * 1024 * 1024))])
        error, message = produce_raw(c, topic_name, big)
        assert error == ErrorCode.MESSAGE_TOO_LARGE
        if os.environ.get("EVENTYARD_TARGET") != "kafka":  # Kafka sends no message; ours says why
            assert message and "too large" in message


@pytest.mark.parametrize("name", ["no/slashes", "trailing-newline\n", "..", "x" * 250])
def test_invalid_topic_name_in_metadata(broker: BrokerProcess, name: str) -> None:
    with client(broker) as c:
        response = c.request(MetadataRequest(topics=[MetadataRequestTopic(name=name)]), 9)
        assert response.topics[0].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION


@pytest.mark.eventyard_only(reason="runs its own Eventyard with --no-auto-create")
def test_produce_to_missing_topic_without_auto_create(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with BrokerProcess(tmp_path, "--no-auto-create") as broker, client(broker) as c:
        response = c.request(MetadataRequest(topics=[MetadataRequestTopic(name="missing")]), 9)
        assert response.topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        error, _ = produce_raw(c, "missing", build_batch([Record(None, b"v")]))
        assert error == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_requests_received_before_the_client_hangs_up_are_processed(
    broker: BrokerProcess, topic_name: str
) -> None:
    """Five pipelined acks=0 produce requests written at once, then an immediate close: all five
    are appended, as Kafka does (the client expects no answer, so nothing else tells it)."""

    with client(broker) as c:
        make_topic(c, topic_name)
    frames = b""
    for i in range(5):
        request = ProduceRequest(
            acks=0,
            timeout_ms=5000,
            topic_data=[
                TopicProduceData(
                    name=topic_name,
                    partition_data=[
                        PartitionProduceData(index=0, records=build_batch([Record(None, b"v")] * 100))
                    ],
                )
            ],
        )
        header = RequestHeader(request_api_key=0, request_api_version=7, correlation_id=i, client_id="t")
        frames += protocol.frame_request(header, request)
    with client(broker) as c:
        c.send_raw(frames)
    latest = ListOffsetsRequest(
        replica_id=-1,
        topics=[
            ListOffsetsTopic(
                name=topic_name, partitions=[ListOffsetsPartition(partition_index=0, timestamp=-1)]
            )
        ],
    )
    deadline = time.monotonic() + 10
    with client(broker) as c:
        while time.monotonic() < deadline:
            end = c.request(latest, 5).topics[0].partitions[0].offset
            if end == 500:
                break
            time.sleep(0.05)
    assert end == 500
