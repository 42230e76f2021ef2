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
    """Accumulates received bytes and yields complete frames (without their size prefix)."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        frames = []
        pos = 0
        with memoryview(buf) as view:  # slicing the view copies each frame once, not twice
            while len(buf) - pos >= 4:
                (size,) = _SIZE.unpack_from(buf, pos)
                if size < 0 or size > self.max_frame_bytes:
                    raise FrameTooLarge(size, self.max_frame_bytes)
                if len(buf) - pos - 4 < size:
                    break
                frames.append(bytes(view[pos + 4 : pos + 4 + size]))
                pos += 4 + size
        if pos:
            del buf[:pos]
        return frames

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)


def request_header_version(messages: ApiMessages, version: int) -> int:
    return 2 if codec.is_flexible(messages.request, version) else 1


def response_header_version(messages: ApiMessages, version: int) -> int:
    # ApiVersions responses always use header v0 so that any client can read them (KIP-511).
    if messages.key == API_VERSIONS_KEY:
        return 0
    return 1 if codec.is_flexible(messages.response, version) else 0


def peek_api(frame: bytes) -> tuple[int, int]:
    if len(frame) < 8:
        raise MalformedRequest("frame shorter than a request header")
    key, version = _API_PREFIX.unpack_from(frame, 0)
    return int(key), int(version)


def parse_request(frame: bytes) -> tuple[RequestHeader, Any, ApiMessages]:
    """Decode a request frame. Raises UnknownApi, UnsupportedVersion or MalformedRequest."""
    key, version = peek_api(frame)
    messages = api(key)
    if not in_range(version, messages.request.VALID_VERSIONS):  # type: ignore[attr-defined]
        header, _ = codec.decode(RequestHeader, 1, frame)
        raise UnsupportedVersion(header)
    try:
        header, pos = codec.decode(RequestHeader, request_header_version(messages, version), frame)
        request: Any
        request, _ = codec.decode(messages.request, version, frame, pos)
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
