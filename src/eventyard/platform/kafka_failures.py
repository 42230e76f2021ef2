"""Failure injection on an Apache Kafka cluster run by eventyard.testing (KafkaCluster or a single
KafkaReference): Kafka has no transient "fail" configs like Eventyard's, so a failure is a real
one: a node is stopped (SIGTERM, a controlled shutdown; or SIGKILL with kill=True) and started
again, on the same ports and data, once the duration has passed.

Kafka differs from Eventyard here by design: stopping the leader of a partition whose other
replicas are in sync moves the leadership to one of them within seconds (the partition is not left
without a leader for the whole duration); with replication factor 1 the partition stays offline
until its node is back."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from confluent_kafka.admin import AdminClient

from eventyard.platform.errors import BadRequest, ClusterError, Conflict
from eventyard.platform.failures import FailureInjector
from eventyard.testing.kafka_cluster import KafkaCluster
from eventyard.testing.kafka_reference import KafkaReference

log = logging.getLogger(__name__)


class KafkaFailureInjector:
    """Implements eventyard.platform.failures.FailureInjector by stopping and restarting nodes.

    `fail_leader` and `fail_broker` return once the node has been signalled (SIGTERM, or SIGKILL
    and reaped); waiting for its exit, the pause and the restart run in a background thread
    (`wait()` joins it), so an API request is not held up by a controlled shutdown. A node that is
    already down is not failed again (Conflict)."""

    def __init__(
        self,
        cluster: KafkaCluster | KafkaReference,
        *,
        kill: bool = False,
        start_timeout: float = 180.0,
    ) -> None:
        self.cluster = cluster
        self.nodes: Sequence[KafkaReference] = (
            cluster.nodes if isinstance(cluster, KafkaCluster) else [cluster]
        )
        self.kill = kill
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self._down: dict[int, threading.Thread] = {}
        self.errors: list[str] = []  # restarts that failed, for the operator (and tests) to see

    # -- the FailureInjector protocol

    def fail_leader(self, topic: str, partition: int, duration_s: float) -> None:
        """Stop the node that leads the partition now, for duration_s."""
        self._fail(self.leader_of(topic, partition), duration_s)

    def fail_broker(self, duration_s: float, node: str = "") -> None:
        """Stop the node with that id ("": the cluster's last node), for duration_s."""
        if node == "":
            node_id = self.nodes[-1].node_id
        else:
            try:
                node_id = int(node)
            except ValueError:
                raise BadRequest(f"broker must be a node id, not {node!r}") from None
        self._fail(node_id, duration_s)

    # -- helpers

    def node(self, node_id: int) -> KafkaReference:
        for candidate in self.nodes:
            if candidate.node_id == node_id:
                return candidate
        raise BadRequest(f"no broker with node id {node_id} (ids: {[n.node_id for n in self.nodes]})")

    def admin(self) -> AdminClient:
        conf: dict[str, str | int | float | bool] = dict(self.cluster.client_config())
        return AdminClient(conf)

    def leader_of(self, topic: str, partition: int) -> int:
        try:
            metadata = self.admin().list_topics(topic, timeout=15)
        except Exception as exc:  # KafkaException: the cluster did not answer
            raise ClusterError(f"metadata of {topic}: {exc}") from None
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or partition not in found.partitions:
            raise BadRequest(f"no partition {topic}:{partition}")
        leader = found.partitions[partition].leader
        if leader < 0:
            raise Conflict(f"{topic}:{partition} has no leader right now")
        return int(leader)

    def down(self) -> list[int]:
        """Node ids that are down (stopped, or not restarted yet)."""
        with self._lock:
            return sorted(node_id for node_id, thread in self._down.items() if thread.is_alive())

    def wait(self, timeout: float | None = None) -> None:
        """Until every stopped node has been restarted (or its restart failed: see `errors`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            threads = list(self._down.values())
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _fail(self, node_id: int, duration_s: float) -> None:
        if duration_s <= 0:
            raise BadRequest("duration_s must be positive")
        node = self.node(node_id)
        with self._lock:
            running = self._down.get(node_id)
            if running is not None and running.is_alive():
                raise Conflict(f"broker {node_id} is already down")
            log.warning("failure injection: stopping Kafka node %d for %.1fs", node_id, duration_s)
            if self.kill:
                node.kill()
            else:
                node.terminate()
            thread = threading.Thread(
                target=self._restart, args=(node, duration_s), name=f"kafka-restart-{node_id}", daemon=True
            )
            self._down[node_id] = thread
            thread.start()

    def _restart(self, node: KafkaReference, duration_s: float) -> None:
        node.wait()  # the controlled shutdown's end (SIGKILL past its timeout); a no-op after kill
        time.sleep(duration_s)
        try:
            node.start(self.start_timeout)
            log.warning("failure injection: Kafka node %d is back", node.node_id)
        except Exception as exc:  # reported through `errors`: a thread has no caller to raise to
            self.errors.append(f"node {node.node_id}: {exc}")
            log.error("failure injection: Kafka node %d did not come back: %s", node.node_id, exc)


def kafka_injector(cluster: KafkaCluster | KafkaReference, *, kill: bool = False) -> FailureInjector:
    """The injector to hand to ClusterAdmin(connection, injector) for a harness-run Kafka cluster
    (typed as the protocol, so that mypy checks that KafkaFailureInjector implements it)."""
    return KafkaFailureInjector(cluster, kill=kill)
