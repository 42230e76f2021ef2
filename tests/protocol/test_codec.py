"""The generated codec: every version of every message round-trips, and bad bytes are refused."""

from __future__ import annotations

import contextlib
import importlib
import struct
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventyard.protocol import api as protocol
from eventyard.protocol import codec
from eventyard.protocol.messages import MESSAGES
from eventyard.protocol.messages.api_versions_request import ApiVersionsRequest
from eventyard.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from eventyard.protocol.messages.fetch_response import FetchableTopicResponse, FetchResponse, PartitionData
from eventyard.protocol.messages.request_header import RequestHeader
from eventyard.protocol.schema import in_range

SAMPLES: dict[str, Any] = {
    "bool": True,
    "int8": -7,
    "int16": 1234,
    "uint16": 65000,
    "int32": 123456,
    "uint32": 4000000000,
    "int64": -(2**40),
    "float64": 2.5,
    "string": "héllo",
    "bytes": b"\x00\x01bytes",
    "records": b"opaque-records",
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
}


def sample(cls: Any, version: int) -> Any:
    """An instance with a non-default value in every field present at `version`."""
    obj = cls()
    for f in cls.SCHEMA:
        if not in_range(version, f.versions):
            continue
        if f.type.startswith("[]"):
            elem = f.type[2:]
            value = [sample(f.struct, version) for _ in range(2)] if f.struct else [SAMPLES[elem]] * 3
        elif f.struct is not None:
            value = sample(f.struct, version)
        else:
            value = SAMPLES[f.type]
        setattr(obj, f.name, value)
    return obj


def present(obj: Any, version: int) -> Any:
    """The fields of obj that exist at `version`, recursively, for comparison."""
    if not hasattr(obj, "SCHEMA"):
        return obj
    out = {}
    for f in obj.SCHEMA:
        if in_range(version, f.versions):
            value = getattr(obj, f.name)
            out[f.name] = (
                [present(v, version) for v in value] if isinstance(value, list) else present(value, version)
            )
    return out


def all_messages() -> list[tuple[type, int]]:
    cases = []
    for module, name, _key, _kind in MESSAGES:
        cls = getattr(importlib.import_module(f"eventyard.protocol.messages.{module}"), name)
        lo, hi = cls.VALID_VERSIONS
        cases += [(cls, v) for v in range(lo, hi + 1)]
    return cases


@pytest.mark.parametrize(("cls", "version"), all_messages(), ids=lambda x: getattr(x, "__name__", str(x)))
def test_every_version_round_trips(cls: type, version: int) -> None:
    obj = sample(cls, version)
    data = codec.encode(obj, version)
    decoded, end = codec.decode(cls, version, data)
    assert end == len(data)
    assert present(decoded, version) == present(obj, version)
    assert b"".join(codec.encode_parts(obj, version)) == data


def test_big_blobs_are_passed_by_reference() -> None:
    records = b"r" * 100_000
    response = FetchResponse(
        responses=[FetchableTopicResponse(topic="t", partitions=[PartitionData(records=records)])]
    )
    parts = codec.encode_parts(response, 12)
    assert any(part is records for part in parts)
    assert b"".join(parts) == codec.encode(response, 12)


def test_header_v2_keeps_client_id_a_classic_string() -> None:
    header = RequestHeader(request_api_key=18, request_api_version=3, correlation_id=1, client_id="rdkafka")
    data = codec.encode(header, 2)
    assert data == struct.pack(">hhih", 18, 3, 1, 7) + b"rdkafka" + b"\x00"


def test_flexible_fetch_uses_compact_encodings_and_tags() -> None:
    request = FetchRequest(
        max_wait_ms=500,
        min_bytes=1,
        cluster_id="c1",  # a tagged field in v12+
        topics=[FetchTopic(topic="t", partitions=[FetchPartition(partition=0, fetch_offset=5)])],
    )
    v11 = codec.encode(request, 11)
    v12 = codec.encode(request, 12)
    assert codec.decode(FetchRequest, 11, v11)[0].cluster_id is None  # not in v11 at all
    assert codec.decode(FetchRequest, 12, v12)[0].cluster_id == "c1"
    assert b"\x02t" in v12  # compact string: length + 1
    assert b"\x00\x01t" in v11  # int16 length


def test_unknown_tagged_fields_are_skipped() -> None:
    data = bytearray(
        codec.encode(ApiVersionsRequest(client_software_name="x", client_software_version="1"), 3)
    )
    assert data[-1] == 0
    data[-1:] = b"\x01\x63\x03abc"  # one tagged field: tag 99, 3 bytes
    decoded, end = codec.decode(ApiVersionsRequest, 3, bytes(data))
    assert decoded.client_software_name == "x" and end == len(data)


def test_frame_reader_refuses_oversized_frames() -> None:
    reader = protocol.FrameReader(max_frame_bytes=100)
    assert reader.feed(struct.pack(">i", 3) + b"abc" + struct.pack(">i", 2)) == [b"abc"]
    assert reader.feed(b"x") == []
    assert reader.feed(b"y") == [b"xy"]
    with pytest.raises(protocol.FrameTooLarge):
        reader.feed(struct.pack(">i", 101))


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300))
def test_random_frames_never_escape_the_defined_errors(frame: bytes) -> None:
    with contextlib.suppress(protocol.MalformedRequest, protocol.UnsupportedVersion, codec.DecodeError):
        protocol.parse_request(frame)


def _valid_frames() -> list[bytes]:
    frames = []
    for cls, version in all_messages():
        if not hasattr(cls, "API_KEY") or not cls.__name__.endswith("Request"):
            continue
        header = RequestHeader(request_api_key=cls.API_KEY, request_api_version=version, correlation_id=1)
        frames.append(protocol.frame_request(header, sample(cls, version))[4:])
    return frames


VALID_FRAMES = _valid_frames()


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from(VALID_FRAMES),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
)
def test_mutated_frames_never_escape_the_defined_errors(frame: bytes, flips: list[tuple[int, int]]) -> None:
    mutated = bytearray(frame)
    for pos, value in flips:
        if mutated:
            mutated[pos % len(mutated)] = value
    cut = flips[0][0] % (len(mutated) + 1) if flips else len(mutated)
    with contextlib.suppress(protocol.MalformedRequest, protocol.UnsupportedVersion, codec.DecodeError):
        protocol.parse_request(bytes(mutated[:cut]))
