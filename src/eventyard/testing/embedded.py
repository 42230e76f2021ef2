"""A broker inside the current process, on its own thread and event loop: for test suites."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType

from eventyard.broker.config import BrokerConfig
from eventyard.broker.server import Server


class EmbeddedBroker:
    """Start a real broker on a free loopback port in this process.

    with EmbeddedBroker() as broker:
        Producer({"bootstrap.servers": broker.bootstrap})
    """

    def __init__(self, data_dir: Path | None = None, **settings: object) -> None:
        self.config = BrokerConfig(port=0, data_dir=data_dir, **settings)  # type: ignore[arg-type]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="eventyard-broker", daemon=True)
        self._server: Server | None = None

    @property
    def bootstrap(self) -> str:
        assert self._server is not None, "the broker is not started"
        return f"{self.config.host}:{self._server.port}"

    def start(self) -> EmbeddedBroker:
        self._thread.start()
        self._server = Server(self.config)
        asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result(30)
        return self

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(30)
            self._server = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
