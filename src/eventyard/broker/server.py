"""The network face of the broker: asyncio connections that frame, decode and dispatch.

Each connection processes its requests one at a time, in order, as Kafka does, so responses
keep the order of requests; many connections run concurrently.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, cast

from eventyard.broker.broker import Broker, RequestContext
from eventyard.broker.config import BrokerConfig
from eventyard.protocol import api as protocol
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.api_versions_response import ApiVersion, ApiVersionsResponse

log = logging.getLogger(__name__)

# Stop reading from a client that has this many requests waiting (it is pipelining too hard).
MAX_QUEUED_REQUESTS = 64


class Connection(asyncio.Protocol):
    def __init__(self, broker: Broker, connections: set[Connection]) -> None:
        self.broker = broker
        self.connections = connections
        self.reader = protocol.FrameReader(broker.config.max_request_bytes)
        self.queue: deque[bytes] = deque()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.wakeup = asyncio.Event()
        self.worker: asyncio.Task[None] | None = None
        # The peer hung up: still process what it sent (acks=0 produces expect no answer), answer nothing.
        self.peer_gone = False
        # We hung up on a bad client: drop what it sent.
        self.dropped = False
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.worker = asyncio.get_running_loop().create_task(self.process())

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except protocol.FrameTooLarge as exc:
            log.warning("closing %s: %s", self.peer, exc)
            self.close()
            return
        if frames:
            self.queue.extend(frames)
            self.wakeup.set()
            if len(self.queue) >= MAX_QUEUED_REQUESTS and not self.paused and self.transport:
                self.paused = True
                self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer_gone = True
        self.connections.discard(self)
        self.wakeup.set()

    def close(self) -> None:
        self.dropped = True
        self.queue.clear()
        if self.transport is not None:
            self.transport.close()

    async def process(self) -> None:
        while not self.dropped:
            if not self.queue:
                if self.peer_gone:
                    return
                if self.paused and self.transport:
                    self.paused = False
                    self.transport.resume_reading()
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            frame = self.queue.popleft()
            try:
                response = await self.respond(frame)
            except Exception:
                log.exception("closing %s: unexpected error handling a request", self.peer)
                self.close()
                return
            if response is not None and not (self.peer_gone or self.dropped) and self.transport is not None:
                self.transport.writelines(response)

    async def respond(self, frame: bytes) -> list[bytes] | None:
        """The bytes to answer `frame` with, or None (no answer, or the connection was closed)."""
        try:
            header, request, messages = protocol.parse_request(frame)
        except protocol.UnsupportedVersion as exc:
            return self.unsupported_version(exc)
        except protocol.MalformedRequest as exc:
            log.warning("closing %s: %s", self.peer, exc)
            self.close()
            return None
        route = self.broker.routes.get(messages.key)
        version = header.request_api_version
        if route is None or not route.min_version <= version <= route.max_version:
            return self.unsupported_version(protocol.UnsupportedVersion(header))
        ctx = RequestContext(header, messages, self.peer)
        response = await self.broker.handle(ctx, request)
        if response is None:
            return None
        return protocol.frame_response(messages, version, header.correlation_id, response)

    def unsupported_version(self, exc: protocol.UnsupportedVersion) -> list[bytes] | None:
        """ApiVersions gets a v0 answer listing what we serve (KIP-511); others are closed."""
        header = exc.header
        if header.request_api_key == protocol.API_VERSIONS_KEY:
            response = ApiVersionsResponse(
                error_code=ErrorCode.UNSUPPORTED_VERSION,
                api_keys=api_versions(self.broker),
            )
            return protocol.frame_response(
                protocol.api(protocol.API_VERSIONS_KEY), 0, header.correlation_id, response
            )
        log.warning("closing %s: %s", self.peer, exc)
        self.close()
        return None


def api_versions(broker: Broker) -> list[ApiVersion]:
    return [
        ApiVersion(api_key=k, min_version=lo, max_version=hi)
        for k, (lo, hi) in broker.supported_versions().items()
    ]


class Server:
    """A broker listening on TCP. `async with Server(config) as server:` or start()/stop()."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.broker: Broker | None = None
        self._server: asyncio.base_events.Server | None = None
        self.connections: set[Connection] = set()

    async def start(self) -> None:
        self.broker = Broker(self.config)
        broker = self.broker

        self._server = await asyncio.get_running_loop().create_server(
            lambda: Connection(broker, self.connections),
            self.config.host,
            self.config.port,
            reuse_address=True,
            backlog=1024,
        )
        port = self._server.sockets[0].getsockname()[1]
        if self.config.port == 0:
            from dataclasses import replace

            self.config = replace(self.config, port=port)
            broker.config = self.config
        broker.start()
        log.info("eventyard broker listening on %s:%d", self.config.host, self.port)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        workers = []
        for conn in list(self.connections):
            conn.close()
            if conn.worker is not None:
                conn.worker.cancel()
                workers.append(conn.worker)
        await asyncio.gather(*workers, return_exceptions=True)
        if self.broker is not None:
            await self.broker.close()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
