"""Failure injection (Eventyard only), for testing clients and a managed service's failover: two
broker configs, set with IncrementalAlterConfigs (SET) or AlterConfigs on the BROKER resource, are
actions rather than settings. They are transient: never stored, and forgotten on restart.

- `eventyard.fail.partition` = `<topic>:<partition>:<duration_ms>`: the partition loses its leader
  for the duration. Metadata shows leader -1 with LEADER_NOT_AVAILABLE, and Produce, Fetch and
  ListOffsets answer NOT_LEADER_OR_FOLLOWER; then it comes back by itself. Nothing is lost: a
  produce is refused before anything is appended. Failing it again while it is down extends the
  outage to the later of the two ends.
- `eventyard.fail.broker` = `<duration_ms>`: the broker answers the request, then closes every
  client connection and its listeners for the duration, then listens again on the same ports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from eventyard.broker.partition import Partition
    from eventyard.broker.session import Session
    from eventyard.broker.topics import TopicRegistry

log = logging.getLogger(__name__)

FAIL_PARTITION = "eventyard.fail.partition"
FAIL_BROKER = "eventyard.fail.broker"
FAILURE_CONFIGS = (FAIL_PARTITION, FAIL_BROKER)
MAX_DURATION_MS = 3_600_000  # an hour: a longer outage is more likely a typo than a test


class FaultError(ValueError):
    """A failure-injection value that cannot be applied (INVALID_CONFIG)."""


class Network(Protocol):
    """What the broker may ask of its network side (the Server)."""

    def fail(self, duration_s: float) -> None:
        """After the current answer is sent: drop every connection, stop listening for a while."""

    def close_connections(self, which: Callable[[Session], bool], reason: str) -> None:
        """After the current answer is sent: close the connections whose session `which` picks."""


@dataclass(frozen=True, slots=True)
class PartitionFailure:
    topic: str
    partition: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class BrokerFailure:
    duration_ms: int


Failure = PartitionFailure | BrokerFailure


def _duration(text: str, key: str) -> int:
    try:
        duration = int(text.strip())
    except ValueError:
        raise FaultError(
            f"{key}: the duration must be a whole number of milliseconds, not {text!r}"
        ) from None
    if not 0 < duration <= MAX_DURATION_MS:
        raise FaultError(f"{key}: the duration must be between 1 and {MAX_DURATION_MS} ms, not {duration}")
    return duration


def parse(key: str, value: str | None) -> Failure:
    """The failure a config asks for; FaultError with the reason when the value is not valid."""
    text = value or ""
    if key == FAIL_BROKER:
        return BrokerFailure(_duration(text, key))
    if key != FAIL_PARTITION:
        raise FaultError(f"unknown failure {key!r}")
    parts = text.rsplit(":", 2)  # topic names have no ':', but split from the right anyway
    if len(parts) != 3 or not parts[0]:
        raise FaultError(f"{key} takes <topic>:<partition>:<duration_ms>, not {text!r}")
    topic, index, duration = parts
    if not index.strip().isdigit():
        raise FaultError(f"{key}: the partition must be a number, not {index!r}")
    return PartitionFailure(topic, int(index), _duration(duration, key))


class FaultInjector:
    """The failures in progress: partitions taken offline, each with the timer that restores it."""

    def __init__(self, topics: TopicRegistry) -> None:
        self.topics = topics
        self.network: Network | None = None
        self._restores: dict[Partition, tuple[float, asyncio.TimerHandle]] = {}

    def check(self, failure: Failure) -> None:
        """Raise FaultError if the failure cannot be injected (an unknown partition, no network)."""
        if isinstance(failure, PartitionFailure):
            if self.topics.partition(failure.topic, failure.partition) is None:
                raise FaultError(
                    f"{FAIL_PARTITION}: topic {failure.topic!r} has no partition {failure.partition}"
                )
        elif self.network is None:
            raise FaultError(f"{FAIL_BROKER}: this broker has no network to fail")

    def inject(self, failure: Failure) -> None:
        self.check(failure)
        if isinstance(failure, BrokerFailure):
            assert self.network is not None
            log.warning("injected failure: the broker goes down for %d ms", failure.duration_ms)
            self.network.fail(failure.duration_ms / 1000)
            return
        partition = self.topics.partition(failure.topic, failure.partition)
        assert partition is not None
        loop = asyncio.get_running_loop()
        until = loop.time() + failure.duration_ms / 1000
        previous = self._restores.pop(partition, None)
        if previous is not None:
            previous[1].cancel()
            until = max(until, previous[0])
        log.warning(
            "injected failure: %s-%d has no leader for %d ms",
            partition.topic,
            partition.index,
            failure.duration_ms,
        )
        partition.online = False
        partition.wake_fetchers()  # long polls answer at once, with NOT_LEADER_OR_FOLLOWER
        self._restores[partition] = (until, loop.call_at(until, self._restore, partition))

    def _restore(self, partition: Partition) -> None:
        self._restores.pop(partition, None)
        partition.online = True
        log.warning("injected failure over: %s-%d has its leader back", partition.topic, partition.index)

    def close(self) -> None:
        for _, timer in self._restores.values():
            timer.cancel()
        self._restores.clear()
