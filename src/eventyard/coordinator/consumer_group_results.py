"""What the KIP-848 consumer group coordinator answers: heartbeat responses, expiries, descriptions.

Plain frozen data: the broker's handlers (broker/handlers/consumer_groups.py) put them on the wire.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from eventyard.protocol.error_codes import ErrorCode

__all__ = [
    "ConsumerGroupDescription",
    "ConsumerMemberDescription",
    "DescribedPartitions",
    "Expired",
    "HeartbeatResult",
]


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    """A ConsumerGroupHeartbeat response; assignment None means "unchanged" (null on the wire)."""

    error_code: ErrorCode
    error_message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: list[tuple[uuid.UUID, list[int]]] | None = None


@dataclass(frozen=True, slots=True)
class Expired:
    """A member removed by a timer."""

    group_id: str
    member_id: str
    reason: str


# (topic id, topic name, partitions), as ConsumerGroupDescribe lists an assignment.
DescribedPartitions = tuple[uuid.UUID, str, tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class ConsumerMemberDescription:
    member_id: str
    instance_id: str | None
    rack_id: str | None
    member_epoch: int
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    assignment: tuple[DescribedPartitions, ...]
    target_assignment: tuple[DescribedPartitions, ...]


@dataclass(frozen=True, slots=True)
class ConsumerGroupDescription:
    group_id: str
    error_code: ErrorCode
    error_message: str | None = None
    group_state: str = "Dead"
    group_epoch: int = 0
    assignment_epoch: int = 0
    assignor_name: str = ""
    members: tuple[ConsumerMemberDescription, ...] = ()
