"""Run `eventyard serve` as a child process on a free port: start, kill, restart."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType

_READY = re.compile(r"eventyard ready on (\S+):(\d+)(?: \(listeners:([^)]*)\))?")


class BrokerProcess:
    """A broker in a child process. Data lives in `data_dir` (None: --memory)."""

    def __init__(
        self, data_dir: Path | None, *extra_args: str, port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.host = host
        self.port = port
        self.process: subprocess.Popen[str] | None = None
        self.log: deque[str] = deque(maxlen=2000)
        self.listener_ports: dict[str, int] = {}  # the extra listeners' ports, by security protocol

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> BrokerProcess:
        args = [sys.executable, "-m", "eventyard", "serve", "--host", self.host, "--port", str(self.port)]
        args += ["--memory"] if self.data_dir is None else ["--data-dir", str(self.data_dir)]
        args += self.extra_args
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.log.append(line)
            match = _READY.search(line)
            if match:
                self.port = int(match.group(2))  # keep the port across restarts
                for pair in (match.group(3) or "").split():
                    protocol, _, port = pair.partition("=")
                    self.listener_ports[protocol] = int(port)
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.stop()
        raise RuntimeError("broker did not start:\n" + "".join(self.log))

    def _drain(self) -> None:
        process = self.process
        if process is None or process.stdout is None:
            return
        for line in process.stdout:
            self.log.append(line)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or close anything."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def restart(self, kill: bool = False) -> BrokerProcess:
        self.kill() if kill else self.stop()
        return self.start()

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
