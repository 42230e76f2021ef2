"""A real Apache Kafka broker (KRaft) in child processes, as a reference to test and benchmark against.

`KafkaReference` is one combined broker+controller node; `KafkaCluster` (kafka_cluster.py) is three
of them sharing a quorum. Both mirror `BrokerProcess`: `.bootstrap`, `start()`, `stop()`, `kill()`,
`restart(kill=...)`, and work as context managers. `sasl_users={"admin": "secret"}` makes the client listener
SASL_PLAINTEXT (SCRAM-SHA-256/512, PLAIN) with the StandardAuthorizer on. The jars come from
`scripts/fetch-kafka.sh` (Maven Central, into `.cache/kafka/<version>/libs`); a JDK 17 or newer
runs them.
"""

from __future__ import annotations

import atexit
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from eventyard.protocol.messages.metadata_request import MetadataRequest
from eventyard.testing.kafka_install import (
    DEFAULT_VERSION,
    FETCH_HINT,
    MIN_JAVA,
    KafkaReferenceUnavailable,
    fetch_kafka,
    fetch_script,
    free_ports,
    java_executable,
    kafka_libs,
    new_cluster_id,
    repo_root,
)
from eventyard.wire_client import WireClient

__all__ = [  # the installation helpers are re-exported: callers import them from here
    "DEFAULT_VERSION",
    "FETCH_HINT",
    "MIN_JAVA",
    "KafkaReference",
    "KafkaReferenceUnavailable",
    "fetch_kafka",
    "fetch_script",
    "free_ports",
    "java_executable",
    "kafka_libs",
    "new_cluster_id",
    "repo_root",
    "sasl_client_config",
]


# Kafka's own defaults for the broker's JVM (bin/kafka-run-class.sh), less the heap.
_JVM_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)
_LOG4J2 = """\
status = warn
rootLogger.level = {level}
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
# Every component prints its whole configuration at INFO: thousands of lines per start.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""

_live: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    """A test run that dies must not leave JVMs holding ports and memory."""
    for process in list(_live):
        if process.poll() is None:
            process.kill()


def _properties(values: Mapping[str, object]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")


def sasl_client_config(
    bootstrap: str, users: Mapping[str, str], user: str | None, mechanism: str = "SCRAM-SHA-512"
) -> dict[str, str]:
    """confluent-kafka settings for `bootstrap`: plain when there are no users, else SASL as `user`."""
    if not users:
        return {"bootstrap.servers": bootstrap}
    if user is None or user not in users:
        raise ValueError(f"unknown SASL user {user!r}")
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": users[user],
    }


class KafkaReference:
    """One Kafka node, broker and KRaft controller in one JVM, on free loopback ports.

    Data, configuration and `server.log` live in `work_dir` (None: a temporary directory that
    `close()` and leaving the `with` block remove). `properties` override or add server.properties
    entries. Ports stay the same across restarts, and the data too.
    """

    def __init__(
        self,
        work_dir: Path | None = None,
        *,
        partitions: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        controller_port: int = 0,
        heap: str = "512m",
        version: str = DEFAULT_VERSION,
        libs: Path | None = None,
        properties: Mapping[str, object] | None = None,
        jvm_args: Iterable[str] = (),
        log_level: str = "INFO",
        node_id: int = 1,
        cluster_id: str | None = None,
        voters: str | None = None,
        sasl_users: Mapping[str, str] | None = None,
        admin_user: str | None = None,
        plaintext: bool = False,
        plaintext_port: int = 0,
    ) -> None:
        self._own_dir = work_dir is None
        self.work_dir = Path(tempfile.mkdtemp(prefix="kafka-ref-")) if work_dir is None else work_dir
        self.host = host
        spare = free_ports(3, host)
        self.port = port or spare[0]
        self.controller_port = controller_port or spare[1]
        # SASL: `port` becomes a SASL_PLAINTEXT listener (see sasl_properties); `plaintext` keeps a
        # PLAINTEXT one beside it on `plaintext_port`, as an admin port (User:ANONYMOUS is a super user).
        self.sasl_users = dict(sasl_users or {})
        self.admin_user = admin_user or next(iter(self.sasl_users), None)
        if self.admin_user is not None and self.admin_user not in self.sasl_users:
            raise ValueError(f"admin_user {self.admin_user!r} is not one of sasl_users")
        self.plaintext_port = (plaintext_port or spare[2]) if self.sasl_users and plaintext else None
        self.node_id = node_id
        self.cluster_id = cluster_id or new_cluster_id()
        self.version = version
        self.heap = heap
        self.partitions = partitions
        self.voters = voters or f"{node_id}@{host}:{self.controller_port}"
        self.extra_properties = dict(properties or {})
        self.jvm_args = list(jvm_args)
        self.log_level = log_level
        self._libs = libs
        self.process: subprocess.Popen[bytes] | None = None
        self.log: deque[str] = deque(maxlen=5000)
        self._log_lock = threading.Lock()
        self._last_error = ""

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def security_protocol(self) -> str:
        """What the client listener on `port` speaks: SASL_PLAINTEXT when `sasl_users` are given."""
        return "SASL_PLAINTEXT" if self.sasl_users else "PLAINTEXT"

    @property
    def plaintext_bootstrap(self) -> str | None:
        """The PLAINTEXT listener beside a SASL one (`plaintext=True`), else None."""
        return None if self.plaintext_port is None else f"{self.host}:{self.plaintext_port}"

    def client_config(self, user: str | None = None, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """confluent-kafka settings to reach `port` as `user` (default: the admin user)."""
        return sasl_client_config(self.bootstrap, self.sasl_users, user or self.admin_user, mechanism)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def data_dir(self) -> Path:
        return self.work_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "server.log"

    def server_properties(self) -> dict[str, object]:
        voter_count = self.voters.count("@")
        replication = min(3, voter_count)
        values: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": self.voters,
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self.data_dir,
            "num.partitions": self.partitions,
            "auto.create.topics.enable": "true",
            "default.replication.factor": replication,
            "min.insync.replicas": max(1, replication - 1),
            "offsets.topic.replication.factor": replication,
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": max(1, replication - 1),
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": max(1, replication - 1),
            "group.initial.rebalance.delay.ms": 0,
        }
        if self.sasl_users:
            values.update(self.sasl_properties())
        values.update(self.extra_properties)
        return values

    def sasl_properties(self) -> dict[str, object]:
        """SASL_PLAINTEXT for clients (SCRAM-SHA-256/512, PLAIN), brokers and controllers, and the
        StandardAuthorizer with nothing allowed where no ACL matches. Brokers and controllers log in
        to each other as the admin with PLAIN, whose users sit in the JAAS line and so need no
        metadata; SCRAM users live in the metadata log (bootstrapped by `format_storage`)."""
        assert self.admin_user is not None
        admin, secret = self.admin_user, self.sasl_users[self.admin_user]
        plain_users = " ".join(f'user_{name}="{password}"' for name, password in self.sasl_users.items())
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{admin}" password="{secret}" {plain_users};'
        )
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        listeners = [f"SASL_PLAINTEXT://{self.host}:{self.port}"]
        if self.plaintext_port is not None:
            listeners.append(f"PLAINTEXT://{self.host}:{self.plaintext_port}")
        super_users = [f"User:{admin}"] + (["User:ANONYMOUS"] if self.plaintext_port is not None else [])
        return {
            "listeners": ",".join([*listeners, f"CONTROLLER://{self.host}:{self.controller_port}"]),
            "advertised.listeners": ",".join(listeners),
            "listener.security.protocol.map": (
                "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT,PLAINTEXT:PLAINTEXT"
            ),
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain,
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": plain,
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": scram,
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": scram,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": ";".join(super_users),
            "allow.everyone.if.no.acl.found": "false",
        }

    def _write_config(self) -> tuple[Path, Path]:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = self.work_dir / "server.properties"
        config.write_text(_properties(self.server_properties()))
        log_config = self.work_dir / "log4j2.properties"
        log_config.write_text(_LOG4J2.format(level=self.log_level))
        return config, log_config

    def _java(self, log_config: Path, *args: str) -> list[str]:
        libs = self._libs or kafka_libs(self.version)
        return [
            java_executable(),
            f"-Xmx{self.heap}",
            "-Xms64m",
            *_JVM_OPTS,
            f"-Dlog4j2.configurationFile={log_config}",
            *self.jvm_args,
            "-cp",
            str(libs / "*"),
            *args,
        ]

    def check_available(self) -> None:
        """Raise KafkaReferenceUnavailable, saying how to fix it, if java or the jars are missing."""
        if self._libs is None:
            self._libs = kafka_libs(self.version)
        java_executable()

    def format_storage(self) -> None:
        """Write meta.properties and the bootstrap metadata: once, before the first start."""
        self.check_available()
        config, log_config = self._write_config()
        if (self.data_dir / "meta.properties").exists():
            return
        args = ["kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(config)]
        for name, password in self.sasl_users.items():  # SCRAM users in the bootstrap metadata
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                args += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        result = subprocess.run(self._java(log_config, *args), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kafka storage format failed:\n{result.stdout}{result.stderr}")

    def launch(self) -> None:
        """Start the JVM without waiting for it: `wait_ready` does that (clusters start nodes together)."""
        if self.process is not None:
            raise RuntimeError(f"Kafka node {self.node_id} is already running")
        self.format_storage()
        config = self.work_dir / "server.properties"
        command = self._java(self.work_dir / "log4j2.properties", "kafka.Kafka", str(config))
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        _live.add(self.process)
        threading.Thread(target=self._drain, args=(self.process,), daemon=True).start()

    def _drain(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with self.log_file.open("ab") as sink:
            for raw in process.stdout:
                sink.write(raw)
                sink.flush()
                with self._log_lock:
                    self.log.append(raw.decode(errors="replace"))

    def log_tail(self, lines: int = 60) -> str:
        with self._log_lock:
            return "".join(list(self.log)[-lines:])

    def metadata_brokers(self) -> set[int] | None:
        """The broker ids this node's Metadata lists as alive, or None if it does not answer yet."""
        # On a SASL listener the probe logs in as the admin with PLAIN, which needs no metadata.
        sasl = ("PLAIN", self.admin_user, self.sasl_users[self.admin_user]) if self.admin_user else None
        try:
            with WireClient(self.host, self.port, timeout=5.0, sasl=sasl) as client:
                response = client.request(MetadataRequest(topics=[]), 12, client_id="kafka-reference")
        except Exception as exc:  # refused, reset, half-started: all mean "not yet"
            self._last_error = f"{type(exc).__name__}: {exc}"
            return None
        if response.controller_id < 0:
            self._last_error = "no controller yet"
            return None
        return {broker.node_id for broker in response.brokers}

    def wait_ready(self, timeout: float = 120.0, brokers: int = 1) -> None:
        """Until this node answers Metadata listing itself (and `brokers` brokers in all) as alive."""
        deadline = time.monotonic() + timeout
        while True:
            process = self.process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                self._forget()
                raise RuntimeError(f"Kafka node {self.node_id} exited ({code}):\n{self.log_tail()}")
            alive = self.metadata_brokers()
            if alive is not None and self.node_id in alive and len(alive) >= brokers:
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"Kafka node {self.node_id} not ready after {timeout:.0f}s (alive brokers: "
                    f"{sorted(alive or ())}, last: {self._last_error}):\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def start(self, timeout: float = 120.0) -> KafkaReference:
        self.launch()
        self.wait_ready(timeout)
        return self

    def _forget(self) -> None:
        if self.process is not None:
            _live.discard(self.process)
            self.process = None

    def terminate(self) -> None:
        """SIGTERM without waiting: Kafka shuts down cleanly (controlled shutdown) on its own."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> int | None:
        """Wait for the exit after `terminate`; SIGKILL past the timeout. Returns the exit code."""
        if self.process is None:
            return None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._forget()
        return code

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        self.terminate()
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or close anything."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self._forget()

    def restart(self, kill: bool = False, timeout: float = 120.0) -> KafkaReference:
        self.kill() if kill else self.stop()
        return self.start(timeout)

    def rss_bytes(self) -> int | None:
        """The JVM's resident memory, from /proc (Linux), or None when it is not running."""
        if self.process is None:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) * 1024 if match else None

    def close(self) -> None:
        """Stop, and remove the work directory if it is a temporary one of our own."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> KafkaReference:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
