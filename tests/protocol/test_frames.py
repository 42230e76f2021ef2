"""FrameReader as a BufferedProtocol would drive it, and records decoded as views of the frame."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventyard.protocol import api as protocol
from eventyard.protocol import codec
from eventyard.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from eventyard.protocol.messages.request_header import RequestHeader
from eventyard.protocol.records import Record, build_batch

STAGING = protocol.FrameReader.STAGING_BYTES


def _stream(frames: list[bytes]) -> bytes:
    return b"".join(struct.pack(">i", len(f)) + f for f in frames)


def _receive(reader: protocol.FrameReader, data: bytes, chunks: list[int]) -> list[bytearray]:
    """Deliver data as a socket would: each time at most what get_buffer() offers, in chunks."""
    out: list[bytearray] = []
    pos = 0
    i = 0
    while pos < len(data):
        buf = reader.get_buffer()
        assert len(buf) > 0
        want = chunks[i % len(chunks)] if chunks else len(data)
        i += 1
        n = max(1, min(len(buf), want, len(data) - pos))
        buf[:n] = data[pos : pos + n]
        buf.release()
        pos += n
        out += reader.buffer_updated(n)
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.binary(max_size=300), st.binary(min_size=STAGING - 10, max_size=STAGING + 3000)),
        max_size=6,
    ),
    st.lists(st.integers(1, 3 * STAGING), max_size=8),
)
def test_any_split_of_the_stream_gives_the_same_frames(frames: list[bytes], chunks: list[int]) -> None:
    reader = protocol.FrameReader(max_frame_bytes=10 * STAGING)
    got = _receive(reader, _stream(frames), chunks)
    assert [bytes(f) for f in got] == frames
    assert reader.pending_bytes == 0


def test_frames_are_owned_buffers_that_later_input_never_touches() -> None:
    reader = protocol.FrameReader(max_frame_bytes=1 << 20)
    small, large = b"a" * 100, bytes(range(256)) * 1000  # large is bigger than the staging buffer
    first = reader.feed(_stream([small, large[:1000]]) + struct.pack(">i", len(large)) + large[:10])
    assert first == [small, large[:1000]]
    views = [memoryview(f) for f in first]  # held, as a request in flight holds its records
    rest = reader.feed(large[10:] + _stream([b"z" * 100] * 3))
    assert [bytes(f) for f in rest] == [large] + [b"z" * 100] * 3
    assert [bytes(v) for v in views] == [small, large[:1000]]
    assert all(type(f) is bytearray for f in first + rest)
    assert len({id(f) for f in first + rest}) == len(first + rest)


def test_a_large_frame_is_received_straight_into_its_own_buffer() -> None:
    reader = protocol.FrameReader(max_frame_bytes=1 << 20)
    size = 5 * STAGING
    assert reader.feed(struct.pack(">i", size) + b"x" * 100) == []
    buf = reader.get_buffer()
    assert len(buf) == size - 100  # exactly the rest of that frame: nothing else lands there
    buf[:] = b"y" * len(buf)
    buf.release()
    (frame,) = reader.buffer_updated(size - 100)
    assert frame == b"x" * 100 + b"y" * (size - 100)


def test_oversized_and_negative_sizes_are_refused_before_buffering() -> None:
    reader = protocol.FrameReader(max_frame_bytes=100)
    assert reader.feed(struct.pack(">i", 3) + b"abc" + struct.pack(">i", 2)[:3]) == [b"abc"]
    with pytest.raises(protocol.FrameTooLarge):
        reader.feed(struct.pack(">i", 101)[3:] + b"x")
    with pytest.raises(protocol.FrameTooLarge):
        protocol.FrameReader(max_frame_bytes=100).feed(struct.pack(">i", -1))


def _produce_frame(records: bytes) -> bytes:
    header = RequestHeader(request_api_key=0, request_api_version=9, correlation_id=7, client_id="t")
    request = ProduceRequest(
        acks=-1,
        timeout_ms=1000,
        topic_data=[
            TopicProduceData(name="t", partition_data=[PartitionProduceData(index=0, records=records)])
        ],
    )
    return protocol.frame_request(header, request)[4:]


def test_records_are_writable_views_of_the_request_frame_and_other_decoders_copy() -> None:
    records = build_batch([Record(b"k", b"v" * 2000)])
    frame = bytearray(_produce_frame(records))
    _, request, _ = protocol.parse_request(frame)
    view = request.topic_data[0].partition_data[0].records
    assert isinstance(view, memoryview) and not view.readonly and view == records
    view[0:8] = b"\x00" * 7 + b"\x05"  # what the broker's offset rewrite does: it lands in the frame
    assert bytes(frame).find(b"\x00" * 7 + b"\x05" + records[8:]) > 0
    # Anything else decoding (clients, tools) still gets bytes of its own, even from a bytearray.
    _, pos = codec.decode(RequestHeader, 2, frame)
    decoded, _ = codec.decode(ProduceRequest, 9, frame, pos)
    copy = decoded.topic_data[0].partition_data[0].records
    assert type(copy) is bytes and copy == bytes(view)


def test_a_size_prefix_alone_does_not_allocate_the_whole_frame() -> None:
    step = protocol.FrameReader.FRAME_ALLOCATION_STEP
    size = 10 * step
    reader = protocol.FrameReader(max_frame_bytes=size)
    assert reader.feed(struct.pack(">i", size) + b"a") == []
    assert len(reader.get_buffer()) == step - 1  # room for one step, not for 10 MiB
    payload = bytes(range(256)) * (size // 256)
    got = _receive(reader, payload[1:] + _stream([b"next"]), [300_000, 5, 2 * step])
    assert [bytes(f) for f in got] == [b"a" + payload[1:], b"next"]
