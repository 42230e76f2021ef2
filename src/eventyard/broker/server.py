"""The network face of the broker: asyncio connections that frame, decode and dispatch.

Each connection processes its requests one at a time, in order, as Kafka does, so responses
keep the order of requests; many connections run concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

from eventyard.broker.broker import Broker, RequestContext
from eventyard.broker.config import BrokerConfig, Listener, TlsConfig
from eventyard.broker.session import ANONYMOUS, PRE_AUTHENTICATION_APIS, Session
from eventyard.protocol import api as protocol
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.api_versions_response import ApiVersion, ApiVersionsResponse

log = logging.getLogger(__name__)

# Stop reading from a client that has this many requests waiting (it is pipelining too hard).
MAX_QUEUED_REQUESTS = 64


class Connection(asyncio.BufferedProtocol):
    """One client connection. A BufferedProtocol: the loop receives straight into the frame
    reader's buffers (see FrameReader for who owns which bytes), so a large produce request
    is not copied on its way in."""

    def __init__(
        self,
        broker: Broker,
        connections: set[Connection],
        workers: set[asyncio.Task[None]],
        listener: Listener,
        port: int,
    ) -> None:
        self.broker = broker
        self.connections = connections
        self.workers = workers
        self.listener = listener
        self.port = port
        self.session: Session | None = None
        self.reader = protocol.FrameReader(broker.config.max_request_bytes)
        self.queue: deque[bytearray] = deque()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.wakeup = asyncio.Event()
        self.worker: asyncio.Task[None] | None = None
        # The peer hung up: still process what it sent (acks=0 produces expect no answer), answer nothing.
        self.peer_gone = False
        # We hung up on a bad client: drop what it sent.
        self.dropped = False
        self.closing = False
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.session = session = Session(self.listener, self.port, self.peer)
        if self.listener.sasl:
            from eventyard.security.sasl import SaslServer  # scramp loads only where SASL is used

            broker = self.broker
            session.sasl = SaslServer(broker.credentials, broker.config.sasl_mechanisms, broker.now_ms)
        elif self.listener.tls:
            session.principal = certificate_principal(transport.get_extra_info("peercert"))
        self.worker = asyncio.get_running_loop().create_task(self.process())
        self.workers.add(self.worker)
        self.worker.add_done_callback(self.workers.discard)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.reader.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            frames = self.reader.buffer_updated(nbytes)
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
            if self.closing:  # after a failed authentication, once its answer is on its way
                self.close()

    async def respond(self, frame: bytearray) -> list[bytes] | None:
        """The bytes to answer `frame` with, or None (no answer, or the connection was closed)."""
        session = self.session
        assert session is not None
        if session.raw_tokens:
            return self.raw_sasl_token(session, bytes(frame))
        try:
            header, request, messages = protocol.parse_request(frame)
        except protocol.UnsupportedVersion as exc:
            return self.unsupported_version(exc)
        except protocol.MalformedRequest as exc:
            log.warning("closing %s: %s", self.peer, exc)
            self.close()
            return None
        if not session.authenticated and messages.key not in PRE_AUTHENTICATION_APIS:
            log.warning("closing %s: %s before SASL authentication", self.peer, messages.name)
            self.close()
            return None
        route = self.broker.routes.get(messages.key)
        version = header.request_api_version
        if route is None or not route.min_version <= version <= route.max_version:
            return self.unsupported_version(protocol.UnsupportedVersion(header))
        response = await self.broker.handle(RequestContext(header, messages, session), request)
        if session.close_after_response:
            self.closing = True
        if response is None:
            return None
        return protocol.frame_response(messages, version, header.correlation_id, response)

    def raw_sasl_token(self, session: Session, token: bytes) -> list[bytes] | None:
        """SaslHandshake v0 framing: a bare token in, a bare challenge out; failure just closes."""
        assert session.sasl is not None
        step = session.sasl.authenticate(token)
        if step.error_code != ErrorCode.NONE:
            log.warning("closing %s: SASL authentication failed: %s", self.peer, step.error_message)
            self.close()
            return None
        if step.done:
            session.raw_tokens = False
            session.principal = f"User:{step.principal}"
        return [struct.pack(">i", len(step.challenge)), step.challenge]

    def unsupported_version(self, exc: protocol.UnsupportedVersion) -> list[bytes] | None:
        """ApiVersions gets a v0 answer with UNSUPPORTED_VERSION and the ApiVersions versions we
        serve, so the client retries with one (KIP-511, as Kafka answers); others are closed."""
        header = exc.header
        if header.request_api_key == protocol.API_VERSIONS_KEY:
            response = ApiVersionsResponse(
                error_code=ErrorCode.UNSUPPORTED_VERSION,
                api_keys=[v for v in api_versions(self.broker) if v.api_key == protocol.API_VERSIONS_KEY],
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


def certificate_principal(cert: dict[str, Any] | None) -> str:
    """A TLS client is known by its certificate's subject, as Kafka's default principal builder does."""
    if not cert:
        return ANONYMOUS
    parts = [f"{key}={value}" for rdn in cert.get("subject", ()) for key, value in rdn]
    names = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}
    return "User:" + ",".join(
        names.get(p.split("=", 1)[0], p.split("=", 1)[0]) + "=" + p.split("=", 1)[1] for p in parts
    )


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.ca_file is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(tls.ca_file)
    return context


class Server:
    """A broker listening on TCP. `async with Server(config) as server:` or start()/stop()."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.broker: Broker | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self.ports: dict[str, int] = {}  # security protocol -> bound port
        self.connections: set[Connection] = set()
        self.workers: set[asyncio.Task[None]] = set()
        self._outage: asyncio.Task[None] | None = None  # an injected broker failure in progress

    async def start(self) -> None:
        self.broker = Broker(self.config)
        broker = self.broker
        broker.attach_network(self)
        await self._listen(broker)
        if self.config.port == 0:
            self.config = replace(self.config, port=self.port)
            broker.config = self.config
        broker.start()

    async def _listen(self, broker: Broker) -> None:
        """Open every listener: on its configured port the first time, on the same bound port after
        an injected failure."""
        loop = asyncio.get_running_loop()
        servers = []
        try:
            for listener in self.config.all_listeners():
                context = None
                if listener.tls:
                    if self.config.tls is None:
                        raise ValueError(f"the {listener.protocol} listener needs a TLS certificate and key")
                    context = tls_context(self.config.tls)
                server = await loop.create_server(
                    lambda listener=listener: Connection(
                        broker, self.connections, self.workers, listener, self.ports[listener.protocol]
                    ),
                    listener.host,
                    self.ports.get(listener.protocol, listener.port),
                    ssl=context,
                    reuse_address=True,
                    backlog=1024,
                    start_serving=False,
                )
                servers.append(server)
                self.ports[listener.protocol] = int(server.sockets[0].getsockname()[1])
                log.info(
                    "listening on %s://%s:%d", listener.protocol, listener.host, self.ports[listener.protocol]
                )
        except BaseException:
            for server in servers:
                server.close()
            raise
        self._servers = servers
        for server in self._servers:
            await server.start_serving()

    # --- what the broker may ask of its network (eventyard.broker.faults.Network) ---

    def fail(self, duration_s: float) -> None:
        """An injected broker failure: once the current answer is written (this runs after the
        handler returns, and the answer is written before the connection's task yields), close
        the listeners and every connection, and listen again after `duration_s`."""
        if self._outage is None or self._outage.done():
            self._outage = asyncio.get_running_loop().create_task(self._go_down(duration_s))

    async def _go_down(self, duration_s: float) -> None:
        await asyncio.sleep(0)  # let the requesting connection write its answer first
        for server in self._servers:
            server.close()
        self._servers = []
        for conn in list(self.connections):
            conn.close()  # a transport's close still sends what is already written
        await asyncio.sleep(duration_s)
        assert self.broker is not None
        while True:
            try:
                await self._listen(self.broker)
                break
            except OSError as exc:  # the port is not free yet: keep trying, it is ours
                log.warning("cannot listen again after the injected failure (%s): retrying", exc)
                await asyncio.sleep(0.5)
        log.warning("injected failure over: listening again")

    def close_connections(self, which: Callable[[Session], bool], reason: str) -> None:
        def close() -> None:
            for conn in list(self.connections):
                if conn.session is not None and which(conn.session):
                    log.info("closing %s (%s): %s", conn.peer, conn.session.principal, reason)
                    conn.close()

        asyncio.get_running_loop().call_soon(close)

    @property
    def port(self) -> int:
        """The port of the first (plaintext) listener."""
        return self.ports["PLAINTEXT"]

    async def stop(self) -> None:
        if self._outage is not None:
            self._outage.cancel()
            await asyncio.gather(self._outage, return_exceptions=True)
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.close()
        # Workers of connections already gone may still be in a long poll: stop them all.
        workers = list(self.workers)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if self.broker is not None:
            await self.broker.close()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
