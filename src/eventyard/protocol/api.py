"""API keys, request parsing and response framing: the sans-IO face of the protocol.

`FrameReader` cuts a byte stream into size-prefixed frames and refuses oversized ones before
buffering them; `parse_request` turns a frame into (header, request); `frame_response` turns a
response into the bytes to send. No sockets here.
"""

from __future__ import annotations

import importlib
import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

from eventyard.protocol import codec
from eventyard.protocol.messages import MESSAGES
from eventyard.protocol.messages.request_header import RequestHeader
from eventyard.protocol.messages.response_header import ResponseHeader
from eventyard.protocol.schema import in_range

_SIZE = struct.Struct(">i")
_API_PREFIX = struct.Struct(">hh")
API_VERSIONS_KEY = 18


class FrameTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size


class MalformedRequest(Exception):
    """The frame cannot be understood well enough to answer it."""


class UnknownApi(MalformedRequest):
    pass


class UnsupportedVersion(Exception):
    """A known API at a version we do not serve; ApiVersions alone gets an answer."""

    def __init__(self, header: RequestHeader) -> None:
        super().__init__(
            f"api {header.request_api_key} version {header.request_api_version} is not supported"
        )
        self.header = header


@dataclass(frozen=True, slots=True)
class ApiMessages:
    key: int
    name: str
    request: type
    response: type


@cache
def api(key: int) -> ApiMessages:
    """The request and response classes of an API, imported on first use (startup stays quick)."""
    classes: dict[str, type] = {}
    for module, cls_name, api_key, kind in MESSAGES:
        if api_key == key:
            classes[kind] = getattr(
                importlib.import_module(f"eventyard.protocol.messages.{module}"), cls_name
            )
    if "request" not in classes or "response" not in classes:
        raise UnknownApi(f"unknown api key {key}")
    name = classes["request"].__name__.removesuffix("Request")
    return ApiMessages(key, name, classes["request"], classes["response"])


class FrameReader:
    """Cuts a byte stream into frames (without their size prefix), copying each byte as little
    as possible. Fits asyncio's BufferedProtocol: `get_buffer()` says where the next received
    bytes go, `buffer_updated(n)` takes them and returns the frames now complete.

    Bytes land in a small reused staging buffer until a frame's size is known; a frame still
    incomplete there gets its own bytearray, and the rest of it is received straight into that
    (a large produce request is copied once, for at most one staging buffer's worth). Frames
    complete in staging (small ones) are copied out.

    A frame's own buffer has its full size at once up to FRAME_ALLOCATION_STEP; beyond, it grows
    (doubling, by copy) as the bytes arrive, so that a 4-byte size prefix alone cannot make the
    broker hold max_frame_bytes per connection.

    Ownership: every frame returned is a bytearray of its own, never written to again here, so
    the request may keep memoryviews into it (records decoded as views, rewritten in place and
    written to the log) for as long as it likes: a parked or throttled request, a pending fsync,
    a write in a thread. The staging buffer is reused, which is why no view of it ever leaves.
    """

    STAGING_BYTES = 64 * 1024
    FRAME_ALLOCATION_STEP = 1024 * 1024  # clients' default max request is about this

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._staging = bytearray(self.STAGING_BYTES)  # never resized: views of it are lent out
        self._staged = 0  # bytes of _staging holding data (only a partial size prefix between calls)
        self._frame: bytearray | None = None  # the frame being received straight into its buffer
        self._filled = 0
        self._size = 0  # of the frame being received

    def get_buffer(self) -> memoryview:
        """Where to receive the next bytes (never empty)."""
        if self._frame is not None:
            return memoryview(self._frame)[self._filled :]
        return memoryview(self._staging)[self._staged :]

    def buffer_updated(self, nbytes: int) -> list[bytearray]:
        """`nbytes` were written at the start of the last get_buffer(): the frames now complete.

        Raises FrameTooLarge as soon as a size prefix is over the limit, before buffering it."""
        frame = self._frame
        if frame is not None:
            self._filled += nbytes
            if self._filled < self._size:
                if self._filled == len(frame):
                    self._frame = self._grown(frame)
                return []
            self._frame = None
            return [frame]
        self._staged += nbytes
        return self._cut_staged()

    def _cut_staged(self) -> list[bytearray]:
        staging = self._staging
        end = self._staged
        frames = []
        pos = 0
        with memoryview(staging) as view:
            while end - pos >= 4:
                (size,) = _SIZE.unpack_from(staging, pos)
                if size < 0 or size > self.max_frame_bytes:
                    raise FrameTooLarge(size, self.max_frame_bytes)
                start = pos + 4
                have = end - start
                if have >= size:
                    frames.append(bytearray(view[start : start + size]))
                    pos = start + size
                    continue
                # Incomplete: move what we have into the frame's own buffer and receive the rest there.
                frame = bytearray(min(size, max(have, self.FRAME_ALLOCATION_STEP)))
                frame[:have] = view[start:end]
                self._frame, self._filled, self._size = frame, have, size
                pos = end
                break
            rest = end - pos  # 0 to 3 bytes of a size prefix
            if rest:
                staging[:rest] = view[pos:end]
        self._staged = rest
        return frames

    def _grown(self, frame: bytearray) -> bytearray:
        # A new buffer, not a resize: the loop may still hold a view of the old one.
        grown = bytearray(min(self._size, 2 * len(frame)))
        grown[: len(frame)] = frame
        return grown

    def feed(self, data: bytes) -> list[bytearray]:
        """The same for bytes received elsewhere (tests, tools): copies them in, then cuts."""
        frames: list[bytearray] = []
        with memoryview(data) as src:
            pos = 0
            while pos < len(src):
                with self.get_buffer() as dst:
                    n = min(len(dst), len(src) - pos)
                    dst[:n] = src[pos : pos + n]
                pos += n
                frames += self.buffer_updated(n)
        return frames

    @property
    def pending_bytes(self) -> int:
        return self._filled if self._frame is not None else self._staged


def request_header_version(messages: ApiMessages, version: int) -> int:
    return 2 if codec.is_flexible(messages.request, version) else 1


def response_header_version(messages: ApiMessages, version: int) -> int:
    # ApiVersions responses always use header v0 so that any client can read them (KIP-511).
    if messages.key == API_VERSIONS_KEY:
        return 0
    return 1 if codec.is_flexible(messages.response, version) else 0


def peek_api(frame: bytes | bytearray) -> tuple[int, int]:
    if len(frame) < 8:
        raise MalformedRequest("frame shorter than a request header")
    key, version = _API_PREFIX.unpack_from(frame, 0)
    return int(key), int(version)


def parse_request(frame: bytes | bytearray) -> tuple[RequestHeader, Any, ApiMessages]:
    """Decode a request frame. Raises UnknownApi, UnsupportedVersion or MalformedRequest.

    Records fields (produce) come back as memoryviews into `frame`, writable if it is a
    bytearray, not as copies: the frame must stay unchanged while the request is handled."""
    key, version = peek_api(frame)
    messages = api(key)
    if not in_range(version, messages.request.VALID_VERSIONS):  # type: ignore[attr-defined]
        header, _ = codec.decode(RequestHeader, 1, frame)
        raise UnsupportedVersion(header)
    try:
        header, pos = codec.decode(RequestHeader, request_header_version(messages, version), frame)
        request: Any
        request, _ = codec.decode(messages.request, version, frame, pos, views=True)
    except codec.DecodeError as exc:
        raise MalformedRequest(f"{messages.name} v{version}: {exc}") from exc
    return header, request, messages


def frame_response(messages: ApiMessages, version: int, correlation_id: int, response: Any) -> list[bytes]:
    """The size-prefixed response as parts for writelines(): record sets are not copied."""
    sink = codec.Sink()
    codec.encode_into(
        sink, ResponseHeader(correlation_id=correlation_id), response_header_version(messages, version)
    )
    codec.encode_into(sink, response, version)
    parts = sink.finish()
    parts.insert(0, _SIZE.pack(sum(len(p) for p in parts)))
    return parts


def frame_request(header: RequestHeader, request: Any) -> bytes:
    """Client side: for tests and tools."""
    messages = api(header.request_api_key)
    version = header.request_api_version
    out = bytearray(4)
    codec.encode_into(out, header, request_header_version(messages, version))
    codec.encode_into(out, request, version)
    _SIZE.pack_into(out, 0, len(out) - 4)
    return bytes(out)
