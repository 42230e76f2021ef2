"""A minimal blocking Kafka protocol client over a socket: for tests that need exact bytes, and for
the few standard APIs that the CLI's Kafka client does not wrap (DescribeLogDirs, client quotas).

Optionally over TLS (an `ssl.SSLContext`) and authenticated with SASL PLAIN or SCRAM-SHA-256/512
(`sasl=(mechanism, username, password)`), as the control plane's admin connection needs."""

from __future__ import annotations

import socket
import ssl
import struct
from typing import Any

import scramp  # type: ignore[import-untyped]

from eventyard.protocol import api as protocol
from eventyard.protocol import codec
from eventyard.protocol.messages.request_header import RequestHeader
from eventyard.protocol.messages.response_header import ResponseHeader
from eventyard.protocol.messages.sasl_authenticate_request import SaslAuthenticateRequest
from eventyard.protocol.messages.sasl_handshake_request import SaslHandshakeRequest


class SaslError(ConnectionError):
    """The broker refused the SASL handshake or the credentials."""


class WireClient:
    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 10.0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        sasl: tuple[str, str, str] | None = None,
    ) -> None:
        """`sasl` is (mechanism, username, password); authentication happens here, before any request."""
        sock = socket.create_connection((host, port), timeout=timeout)
        if ssl_context is not None:
            try:
                sock = ssl_context.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.correlation_id = 0
        if sasl is not None:
            try:
                self.authenticate(*sasl)
            except BaseException:
                self.close()
                raise

    def authenticate(self, mechanism: str, username: str, password: str) -> None:
        """SaslHandshake v1 then SaslAuthenticate (KIP-152) with PLAIN or SCRAM."""
        handshake = self.request(SaslHandshakeRequest(mechanism=mechanism), 1)
        if handshake.error_code:
            raise SaslError(f"SASL handshake for {mechanism} refused (error {handshake.error_code})")
        if mechanism == "PLAIN":
            self._sasl_step(b"\0" + username.encode() + b"\0" + password.encode())
            return
        if not mechanism.startswith("SCRAM-"):
            raise SaslError(f"unsupported SASL mechanism {mechanism}")
        client = scramp.ScramClient([mechanism], username, password)
        server_first = self._sasl_step(client.get_client_first().encode())
        client.set_server_first(server_first.decode())
        server_final = self._sasl_step(client.get_client_final().encode())
        try:
            client.set_server_final(server_final.decode())
        except scramp.ScramException as exc:  # the broker did not prove it knows the password
            raise SaslError(f"SCRAM server signature rejected: {exc}") from None

    def _sasl_step(self, token: bytes) -> bytes:
        response = self.request(SaslAuthenticateRequest(auth_bytes=token), 2)
        if response.error_code:
            raise SaslError(response.error_message or f"SASL authentication failed ({response.error_code})")
        return bytes(response.auth_bytes)

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
