"""The admin calls confluent-kafka's AdminClient does not offer (client quotas, DescribeLogDirs,
broker configs for Eventyard's failure injection), made with eventyard.wire_client over the
control plane's own authenticated connection.

Authenticated connections are kept open between calls (a SCRAM handshake per call would cost more
than most calls), one small pool per connection and address. An idle connection the broker closed
(a restart, `eventyard.fail.broker`, an idle timeout) is noticed before it is used and replaced; a
connection that dies during a call raises TransientError, which the idempotent calls here retry."""

from __future__ import annotations

import select
import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from eventyard.platform.errors import ClusterError
from eventyard.platform.retry import DEADLINE_S, Attempt, TransientError, retrying
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages import alter_client_quotas_request as alter_quotas
from eventyard.protocol.messages import describe_client_quotas_request as describe_quotas
from eventyard.protocol.messages import describe_log_dirs_request as log_dirs
from eventyard.protocol.messages import incremental_alter_configs_request as alter_configs
from eventyard.wire_client import SaslError, WireClient

MATCH_EXACT = 0
OP_SET = 0
RESOURCE_BROKER = 4
MAX_IDLE = 4  # connections kept per (connection, address)
# Error codes that say "not now" rather than "no": the call may work when repeated.
TRANSIENT_CODES = frozenset(
    {
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.REQUEST_TIMED_OUT,
        ErrorCode.BROKER_NOT_AVAILABLE,
        ErrorCode.NETWORK_EXCEPTION,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.NOT_CONTROLLER,
    }
)


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach and authenticate to the cluster."""

    bootstrap: str  # host:port[,host:port...]
    security_protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None

    def addresses(self) -> list[tuple[str, int]]:
        found = []
        for item in self.bootstrap.split(","):
            host, _, port = item.strip().rpartition(":")
            found.append((host.strip("[]"), int(port)))
        return found

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        return ssl.create_default_context(cafile=self.ca_file)

    def sasl(self) -> tuple[str, str, str] | None:
        if not self.security_protocol.startswith("SASL_"):
            return None
        assert self.username is not None and self.password is not None
        return (self.mechanism, self.username, self.password)

    @contextmanager
    def open(self, address: tuple[str, int] | None = None, timeout: float = 10.0) -> Iterator[WireClient]:
        """An authenticated connection to `address`, or to the first bootstrap server that answers:
        an idle one still alive, else a new one. Returned to the pool after a call that went through;
        closed, and TransientError raised, when the socket fails during the call."""
        client = _POOL.take(self, address) or self._connect(address, timeout)
        client.sock.settimeout(timeout)
        try:
            yield client
        except OSError as exc:  # reset, closed (ConnectionError), or timed out mid-call
            client.close()
            raise TransientError(f"connection to the cluster lost: {exc or type(exc).__name__}") from None
        except BaseException:
            client.close()  # in an unknown state: never reused
            raise
        _POOL.give(self, address, client)

    def _connect(self, address: tuple[str, int] | None, timeout: float) -> WireClient:
        problems: list[str] = []
        for host, port in [address] if address else self.addresses():
            try:
                return WireClient(host, port, timeout, ssl_context=self.ssl_context(), sasl=self.sasl())
            except SaslError as exc:  # the credentials are wrong: repeating will not help
                raise ClusterError(f"{host}:{port} refused the admin's credentials: {exc}") from None
            except OSError as exc:  # refused, unreachable, or closed during the handshake
                problems.append(f"{host}:{port}: {exc or type(exc).__name__}")
        raise TransientError("cannot reach the cluster: " + "; ".join(problems))


class _Pool:
    """Idle authenticated connections, by (connection, address); thread-safe."""

    def __init__(self) -> None:
        self._idle: dict[tuple[Connection, tuple[str, int] | None], list[WireClient]] = {}
        self._lock = threading.Lock()

    def take(self, connection: Connection, address: tuple[str, int] | None) -> WireClient | None:
        while True:
            with self._lock:
                idle = self._idle.get((connection, address))
                if not idle:
                    return None
                client = idle.pop()
            if _alive(client):
                return client
            client.close()

    def give(self, connection: Connection, address: tuple[str, int] | None, client: WireClient) -> None:
        with self._lock:
            idle = self._idle.setdefault((connection, address), [])
            if len(idle) < MAX_IDLE:
                idle.append(client)
                return
        client.close()


def _alive(client: WireClient) -> bool:
    """An idle connection has nothing to read: if its socket is readable, the broker closed or
    reset it (EOF), so it must not carry a request."""
    try:
        readable, _, _ = select.select([client.sock], [], [], 0)
    except (OSError, ValueError):  # already closed
        return False
    return not readable


_POOL = _Pool()


class WireError(ClusterError):
    def __init__(self, message: str, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


class TransientWireError(WireError, TransientError):
    """An error code that says "try again"."""


def _check(code: int, message: str | None, what: str) -> None:
    if code:
        try:
            name = ErrorCode(code).name
        except ValueError:
            name = str(code)
        kind = TransientWireError if code in TRANSIENT_CODES else WireError
        raise kind(f"{what}: {name}" + (f" ({message})" if message else ""), code)


def set_quotas(
    connection: Connection,
    entity: Sequence[tuple[str, str]],
    values: Mapping[str, float | None],
    deadline_s: float = DEADLINE_S,
) -> None:
    """Set (a number) or remove (None) quota keys of one entity, such as [("user", "alice")];
    setting the same values again is harmless, so a failed attempt is retried."""
    entry = alter_quotas.EntryData(
        entity=[alter_quotas.EntityData(entity_type=t, entity_name=n) for t, n in entity],
        ops=[
            alter_quotas.OpData(key=k, value=0.0 if v is None else float(v), remove=v is None)
            for k, v in values.items()
        ],
    )
    what = f"quotas of {entity}"

    def attempt(attempt: Attempt) -> None:
        with connection.open(timeout=attempt.timeout) as client:
            response = client.request(alter_quotas.AlterClientQuotasRequest(entries=[entry]), 1)
        for result in response.entries:
            _check(result.error_code, result.error_message, what)

    retrying(what, attempt, deadline_s)


def get_quotas(
    connection: Connection, entity_type: str, name: str, deadline_s: float = DEADLINE_S
) -> dict[str, float]:
    request = describe_quotas.DescribeClientQuotasRequest(
        components=[
            describe_quotas.ComponentData(entity_type=entity_type, match_type=MATCH_EXACT, match=name)
        ],
        strict=True,
    )
    what = f"quotas of {entity_type} {name}"

    def attempt(attempt: Attempt) -> dict[str, float]:
        with connection.open(timeout=attempt.timeout) as client:
            response = client.request(request, 1)
        _check(response.error_code, response.error_message, what)
        return {v.key: v.value for entry in response.entries or [] for v in entry.values}

    return retrying(what, attempt, deadline_s)


def stored_bytes(
    connection: Connection,
    brokers: Sequence[tuple[str, int]],
    partitions: Mapping[str, int],
    deadline_s: float = DEADLINE_S,
) -> int:
    """Bytes stored by the given topics (name -> partition count): each partition counted once, at
    its largest replica, from DescribeLogDirs on every broker."""
    if not partitions:
        return 0
    request = log_dirs.DescribeLogDirsRequest(
        topics=[
            log_dirs.DescribableLogDirTopic(topic=t, partitions=list(range(n))) for t, n in partitions.items()
        ]
    )

    def attempt(attempt: Attempt) -> int:
        sizes: dict[tuple[str, int], int] = {}
        for address in brokers:
            with connection.open(address, timeout=attempt.timeout) as client:
                response = client.request(request, 2)
            for result in response.results:
                for topic in result.topics:
                    for p in topic.partitions:
                        key = (topic.name, p.partition_index)
                        sizes[key] = max(sizes.get(key, 0), p.partition_size)
        return sum(sizes.values())

    return retrying("stored bytes", attempt, deadline_s)


def set_broker_config(connection: Connection, node: str, name: str, value: str) -> None:
    """IncrementalAlterConfigs SET on a BROKER resource (node "" or its id). Not retried: a failure
    injection that went through but whose answer was lost must not be injected twice."""
    resource = alter_configs.AlterConfigsResource(
        resource_type=RESOURCE_BROKER,
        resource_name=node,
        configs=[alter_configs.AlterableConfig(name=name, config_operation=OP_SET, value=value)],
    )
    with connection.open() as client:
        response = client.request(alter_configs.IncrementalAlterConfigsRequest(resources=[resource]), 1)
    for result in response.responses:
        _check(result.error_code, result.error_message, f"broker config {name}")
