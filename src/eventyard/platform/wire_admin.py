"""The admin calls confluent-kafka's AdminClient does not offer (client quotas, DescribeLogDirs,
broker configs for Eventyard's failure injection), made with eventyard.wire_client over the
control plane's own authenticated connection."""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from eventyard.platform.errors import ClusterError
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages import alter_client_quotas_request as alter_quotas
from eventyard.protocol.messages import describe_client_quotas_request as describe_quotas
from eventyard.protocol.messages import describe_log_dirs_request as log_dirs
from eventyard.protocol.messages import incremental_alter_configs_request as alter_configs
from eventyard.wire_client import WireClient

MATCH_EXACT = 0
OP_SET = 0
RESOURCE_BROKER = 4


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
        """An authenticated connection to `address`, or to the first bootstrap server that answers."""
        problems: list[str] = []
        for host, port in [address] if address else self.addresses():
            try:
                client = WireClient(host, port, timeout, ssl_context=self.ssl_context(), sasl=self.sasl())
            except OSError as exc:
                problems.append(f"{host}:{port}: {exc}")
                continue
            try:
                yield client
            finally:
                client.close()
            return
        raise ClusterError("cannot reach the cluster: " + "; ".join(problems))


class WireError(ClusterError):
    def __init__(self, message: str, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


def _check(code: int, message: str | None, what: str) -> None:
    if code:
        try:
            name = ErrorCode(code).name
        except ValueError:
            name = str(code)
        raise WireError(f"{what}: {name}" + (f" ({message})" if message else ""), code)


def set_quotas(
    connection: Connection, entity: Sequence[tuple[str, str]], values: Mapping[str, float | None]
) -> None:
    """Set (a number) or remove (None) quota keys of one entity, such as [("user", "alice")]."""
    entry = alter_quotas.EntryData(
        entity=[alter_quotas.EntityData(entity_type=t, entity_name=n) for t, n in entity],
        ops=[
            alter_quotas.OpData(key=k, value=0.0 if v is None else float(v), remove=v is None)
            for k, v in values.items()
        ],
    )
    with connection.open() as client:
        response = client.request(alter_quotas.AlterClientQuotasRequest(entries=[entry]), 1)
    for result in response.entries:
        _check(result.error_code, result.error_message, f"quotas of {entity}")


def get_quotas(connection: Connection, entity_type: str, name: str) -> dict[str, float]:
    request = describe_quotas.DescribeClientQuotasRequest(
        components=[
            describe_quotas.ComponentData(entity_type=entity_type, match_type=MATCH_EXACT, match=name)
        ],
        strict=True,
    )
    with connection.open() as client:
        response = client.request(request, 1)
    _check(response.error_code, response.error_message, f"quotas of {entity_type} {name}")
    return {v.key: v.value for entry in response.entries or [] for v in entry.values}


def stored_bytes(
    connection: Connection, brokers: Sequence[tuple[str, int]], partitions: Mapping[str, int]
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
    sizes: dict[tuple[str, int], int] = {}
    for address in brokers:
        with connection.open(address) as client:
            response = client.request(request, 2)
        for result in response.results:
            for topic in result.topics:
                for p in topic.partitions:
                    key = (topic.name, p.partition_index)
                    sizes[key] = max(sizes.get(key, 0), p.partition_size)
    return sum(sizes.values())


def set_broker_config(connection: Connection, node: str, name: str, value: str) -> None:
    """IncrementalAlterConfigs SET on a BROKER resource (node "" or its id)."""
    resource = alter_configs.AlterConfigsResource(
        resource_type=RESOURCE_BROKER,
        resource_name=node,
        configs=[alter_configs.AlterableConfig(name=name, config_operation=OP_SET, value=value)],
    )
    with connection.open() as client:
        response = client.request(alter_configs.IncrementalAlterConfigsRequest(resources=[resource]), 1)
    for result in response.responses:
        _check(result.error_code, result.error_message, f"broker config {name}")
