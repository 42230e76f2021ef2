"""Failure injection behind one seam: the control plane asks for a lost partition leader or a lost
broker; how that happens depends on the cluster. Eventyard takes transient broker configs over the
Kafka protocol; an Apache Kafka cluster in tests (eventyard.testing.KafkaCluster) needs an injector
that stops and restarts one of its nodes, plugged in through the same protocol."""

from __future__ import annotations

from typing import Protocol

from eventyard.platform.wire_admin import Connection, set_broker_config


class FailureInjector(Protocol):
    def fail_leader(self, topic: str, partition: int, duration_s: float) -> None:
        """The partition has no leader for duration_s, then recovers by itself."""
        ...

    def fail_broker(self, duration_s: float, node: str = "") -> None:
        """A broker drops its clients and stops accepting for duration_s, then comes back."""
        ...


class EventyardFailureInjector:
    """Eventyard's transient broker configs eventyard.fail.partition / eventyard.fail.broker."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def fail_leader(self, topic: str, partition: int, duration_s: float) -> None:
        value = f"{topic}:{partition}:{int(duration_s * 1000)}"
        set_broker_config(self.connection, "", "eventyard.fail.partition", value)

    def fail_broker(self, duration_s: float, node: str = "") -> None:
        set_broker_config(self.connection, node, "eventyard.fail.broker", str(int(duration_s * 1000)))


class NoFailureInjector:
    """For clusters without an injector of their own: every request is refused (HTTP 409)."""

    def fail_leader(self, topic: str, partition: int, duration_s: float) -> None:
        raise NotImplementedError("this cluster has no failure injector")

    def fail_broker(self, duration_s: float, node: str = "") -> None:
        raise NotImplementedError("this cluster has no failure injector")
