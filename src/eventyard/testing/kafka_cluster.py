"""Three (or n) reference Kafka nodes sharing one KRaft quorum, for replication and failover tests."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from eventyard.testing.kafka_install import DEFAULT_VERSION, free_ports, new_cluster_id
from eventyard.testing.kafka_reference import KafkaReference, sasl_client_config


class KafkaCluster:
    """`n` combined broker+controller nodes sharing one KRaft quorum (n voters): with n=3 the
    cluster keeps its quorum and, with min.insync.replicas=2, accepts acks=all writes while any one
    node is down. Replication factor defaults to min(3, n); nodes are `cluster.nodes[i]`."""

    def __init__(
        self,
        n: int = 3,
        work_dir: Path | None = None,
        *,
        partitions: int = 1,
        host: str = "127.0.0.1",
        heap: str = "512m",
        version: str = DEFAULT_VERSION,
        libs: Path | None = None,
        properties: Mapping[str, object] | None = None,
        jvm_args: Iterable[str] = (),
        log_level: str = "INFO",
        sasl_users: Mapping[str, str] | None = None,
        admin_user: str | None = None,
        plaintext: bool = False,
    ) -> None:
        self._own_dir = work_dir is None
        self.work_dir = Path(tempfile.mkdtemp(prefix="kafka-cluster-")) if work_dir is None else work_dir
        self.sasl_users = dict(sasl_users or {})
        self.admin_user = admin_user or next(iter(self.sasl_users), None)
        self.cluster_id = new_cluster_id()
        ports = free_ports(2 * n, host)
        client_ports, controller_ports = ports[:n], ports[n:]
        voters = ",".join(f"{i + 1}@{host}:{port}" for i, port in enumerate(controller_ports))
        self.nodes = [
            KafkaReference(
                self.work_dir / f"node-{i + 1}",
                partitions=partitions,
                host=host,
                port=client_ports[i],
                controller_port=controller_ports[i],
                heap=heap,
                version=version,
                libs=libs,
                properties=properties,
                jvm_args=jvm_args,
                log_level=log_level,
                node_id=i + 1,
                cluster_id=self.cluster_id,
                voters=voters,
                sasl_users=sasl_users,
                admin_user=admin_user,
                plaintext=plaintext,
            )
            for i in range(n)
        ]

    @property
    def bootstrap(self) -> str:
        """Every node, so that clients find the cluster whichever nodes are down."""
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def security_protocol(self) -> str:
        return self.nodes[0].security_protocol

    @property
    def plaintext_bootstrap(self) -> str | None:
        """Every node's PLAINTEXT listener beside its SASL one (`plaintext=True`), else None."""
        if self.nodes[0].plaintext_port is None:
            return None
        return ",".join(f"{node.host}:{node.plaintext_port}" for node in self.nodes)

    def client_config(self, user: str | None = None, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """confluent-kafka settings to reach every node as `user` (default: the admin user)."""
        return sasl_client_config(self.bootstrap, self.sasl_users, user or self.admin_user, mechanism)

    def node(self, node_id: int) -> KafkaReference:
        return self.nodes[node_id - 1]

    def start(self, timeout: float = 180.0) -> KafkaCluster:
        """Start every node at once (a quorum needs a majority) and wait until all are brokers."""
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                node.format_storage()
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_ready(max(1.0, deadline - time.monotonic()), brokers=len(self.nodes))
        except BaseException:
            self.stop(timeout=5)
            raise
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM every node together: one by one, the last nodes would wait for a lost quorum."""
        for node in self.nodes:
            node.terminate()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.wait(max(0.1, deadline - time.monotonic()))

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def restart(self, kill: bool = False) -> KafkaCluster:
        self.kill() if kill else self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> KafkaCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
