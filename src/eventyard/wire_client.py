"""A minimal blocking Kafka protocol client over a socket: for tests that need exact bytes, and for
the few standard APIs that the CLI's Kafka client does not wrap (DescribeLogDirs)."""

from __future__ import annotations

import socket
import struct
from typing import Any

from eventyard.protocol import api as protocol
from eventyard.protocol import codec
from eventyard.protocol.messages.request_header import RequestHeader
from eventyard.protocol.messages.response_header import ResponseHeader


class WireClient:
    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_frame(self) -> bytes | None:
        """One response frame, or None if the broker closed the connection."""
        head = self._recv_exactly(4)
        if head is None:
            return None
        (size,) = struct.unpack(">i", head)
        return self._recv_exactly(size)

    def _recv_exactly(self, n: int) -> bytes | None:
        chunks = bytearray()
        while len(chunks) < n:
            try:
                chunk = self.sock.recv(n - len(chunks))
            except ConnectionResetError:  # closed while our request was unread: a reset, not an EOF
                return None
            if not chunk:
                return None
            chunks += chunk
        return bytes(chunks)

    def request(self, request: Any, version: int, client_id: str | None = "wire-test") -> Any:
        self.correlation_id += 1
        header = RequestHeader(
            request_api_key=type(request).API_KEY,
            request_api_version=version,
            correlation_id=self.correlation_id,
            client_id=client_id,
        )
        self.send_raw(protocol.frame_request(header, request))
        frame = self.recv_frame()
        if frame is None:
            raise ConnectionError("broker closed the connection")
        messages = protocol.api(header.request_api_key)
        response_header, pos = codec.decode(
            ResponseHeader, protocol.response_header_version(messages, version), frame
        )
        assert response_header.correlation_id == self.correlation_id
        response: Any
        response, _ = codec.decode(messages.response, version, frame, pos)
        return response
