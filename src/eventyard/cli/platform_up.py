"""`eventyard platform up`: a broker and the control plane in one process, for trying the platform.

The broker runs on its own event loop in a thread; the control plane (uvicorn) runs on the main
thread, which owns the signals. On SIGINT or SIGTERM uvicorn stops first (it is the broker's
client), then the broker, and the process exits 0.

Layout of the data directory: `broker/` (logs and `users.json`), `platform.db` (the control
plane's store), `admin-password` and `operator-token` (0600; generated once, so restarts keep them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shlex
import signal
import socket
import threading
from pathlib import Path
from types import FrameType

from eventyard.atomic_file import write_atomically
from eventyard.broker.config import BrokerConfig, Listener, ScramUser
from eventyard.broker.server import Server
from eventyard.cli.serve import credential_file, install_scram_users
from eventyard.security.credentials import CredentialStore

log = logging.getLogger("eventyard.platform.up")
ADMIN_USER = "admin"


class _Stop(Exception):
    """A signal before uvicorn took over the signals: stop what has started."""


def stored_secret(path: Path) -> str:
    """The secret kept in path, made (random, mode 0600) on first use."""
    if path.exists():
        secret = path.read_text().strip()
        if secret:
            return secret
    secret = secrets.token_urlsafe(24)
    write_atomically(path, secret.encode() + b"\n")
    return secret


def _reachable(host: str) -> str:
    """Where a local client connects to reach a listener bound to host."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _why(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)


class BrokerThread:
    """A broker on its own event loop in a daemon thread."""

    def __init__(self, config: BrokerConfig) -> None:
        self.server = Server(config)
        self._loop: asyncio.AbstractEventLoop
        try:
            import uvloop

            self._loop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
            self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="eventyard-broker", daemon=True)

    def start(self) -> None:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(60)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._thread.is_alive():
            if self.server.broker is not None:
                asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(60)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()


class Up:
    def __init__(
        self,
        data_dir: Path,
        host: str,
        port: int,
        kafka_host: str,
        kafka_port: int,
        token: str | None,
        log_level: str,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.host, self.port = host, port
        self.kafka_host, self.kafka_port = kafka_host, kafka_port
        self.token = token
        self.log_level = log_level
        self._serving = False  # uvicorn owns the signals from then on

    def run(self) -> None:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._run()
        except (_Stop, KeyboardInterrupt):
            log.info("stopped while starting")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        # Before uvicorn serves, a signal stops the start-up; afterwards this handler only sees
        # uvicorn re-raising the signal it already handled, or a second one while the broker stops.
        if not self._serving:
            raise _Stop

    def _run(self) -> None:
        # Owner only when made here: the store holds the apps' passwords.
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        broker_dir = self.data_dir / "broker"
        broker_dir.mkdir(exist_ok=True)
        password = stored_secret(self.data_dir / "admin-password")
        token = self.token or stored_secret(self.data_dir / "operator-token")
        admin = ScramUser("SCRAM-SHA-512", ADMIN_USER, password)
        install_scram_users(CredentialStore(credential_file(broker_dir)), (admin,))
        # Bound before the broker starts, so that a port in use fails at once.
        try:
            dashboard = socket.create_server((self.host, self.port))
        except OSError as exc:
            raise OSError(f"cannot listen on {self.host}:{self.port} (--port): {_why(exc)}") from None
        try:
            broker = BrokerThread(self._broker_config(broker_dir, admin))
            try:
                broker.start()
            except OSError as exc:
                where = f"{self.kafka_host}:{self.kafka_port} (--kafka-port)"
                raise OSError(f"cannot listen on {where}: {_why(exc)}") from None
            try:
                self._serve(dashboard, broker.server.ports["SASL_PLAINTEXT"], password, token)
            finally:
                log.info("stopping the broker")
                broker.stop()
        finally:
            dashboard.close()

    def _broker_config(self, broker_dir: Path, admin: ScramUser) -> BrokerConfig:
        return BrokerConfig(
            # The plaintext listener Eventyard always opens: loopback, any port. With the authorizer on
            # and no ACL for User:ANONYMOUS, a client there reaches no topic and no group.
            host="127.0.0.1",
            port=0,
            data_dir=broker_dir,
            auto_create_topics=False,  # topics come from the control plane, within the plans
            listeners=(Listener("SASL_PLAINTEXT", self.kafka_host, self.kafka_port),),
            authorizer=True,
            super_users=(f"User:{admin.name}",),
        )

    def _serve(self, dashboard: socket.socket, kafka_port: int, password: str, token: str) -> None:
        import uvicorn

        from eventyard.platform.api import create_app
        from eventyard.platform.settings import Settings

        bootstrap = f"{_reachable(self.kafka_host)}:{kafka_port}"
        settings = Settings(
            token=token,
            db_url=f"sqlite:///{self.data_dir / 'platform.db'}",
            bootstrap=bootstrap,
            admin_security_protocol="SASL_PLAINTEXT",
            admin_user=ADMIN_USER,
            admin_password=password,
            app_security_protocol="SASL_PLAINTEXT",
        )
        server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level=self.log_level))
        url = f"http://{_reachable(self.host)}:{dashboard.getsockname()[1]}"

        async def serve() -> None:
            task = asyncio.create_task(server.serve(sockets=[dashboard]))
            while not (server.started or task.done()):
                await asyncio.sleep(0.02)
            if server.started:
                self._announce(url, bootstrap, token)
            await task

        self._serving = True
        asyncio.run(serve())
        if not server.started:
            raise ValueError("the control plane did not start (see the log above)")

    def _announce(self, url: str, bootstrap: str, token: str) -> None:
        exports = (
            f"export EVENTYARD_PLATFORM_URL={shlex.quote(url)} EVENTYARD_PLATFORM_TOKEN={shlex.quote(token)}"
        )
        lines = [
            f"Eventyard platform up (data: {self.data_dir})",
            f"  Dashboard:       {url}/  (log in: {url}/?token={token})",
            f"  Operator token:  {token}",
            f"  Kafka:           {bootstrap} (SASL_PLAINTEXT, SCRAM-SHA-512; apps get their own users)",
            "For the developer CLI:",
            f"  {exports}",
            "Ctrl-C stops it.",
        ]
        print("\n".join(lines), flush=True)
