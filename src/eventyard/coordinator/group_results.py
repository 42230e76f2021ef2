"""What the group coordinator hands back: responses, parked requests and their completions.

Every entry point returns an `Outcome`: the answer to the request itself, the answers to
earlier parked requests that this call completed (`completions`), and the records to persist.
A JoinGroup or SyncGroup that cannot be answered yet returns `Pending`; its answer arrives
later as a `Completion` with the same (group_id, member_id, kind).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

from eventyard.coordinator.group_state import Record
from eventyard.protocol.error_codes import ErrorCode

R = TypeVar("R")


class Kind(Enum):
    JOIN = "join"
    SYNC = "sync"


@dataclass(frozen=True, slots=True)
class JoinedMember:
    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True, slots=True)
class JoinResult:
    """A JoinGroup response. None in protocol_type/protocol_name means null on the wire."""

    error_code: ErrorCode
    member_id: str
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    skip_assignment: bool = False
    members: tuple[JoinedMember, ...] = ()  # only the leader gets them


@dataclass(frozen=True, slots=True)
class SyncResult:
    error_code: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass(frozen=True, slots=True)
class Pending:
    """The request is parked: its answer will come as a Completion with this key."""

    group_id: str
    member_id: str
    kind: Kind


@dataclass(frozen=True, slots=True)
class Completion:
    """The answer to a request that was parked earlier (see Pending)."""

    group_id: str
    member_id: str
    response: JoinResult | SyncResult

    @property
    def kind(self) -> Kind:
        return Kind.JOIN if isinstance(self.response, JoinResult) else Kind.SYNC


@dataclass(slots=True)
class Outcome(Generic[R]):
    response: R
    completions: list[Completion] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MemberLeave:
    member_id: str
    group_instance_id: str | None
    error_code: ErrorCode


@dataclass(frozen=True, slots=True)
class LeaveResult:
    error_code: ErrorCode
    members: tuple[MemberLeave, ...] = ()


@dataclass(frozen=True, slots=True)
class PartitionResult:
    topic: str
    partition: int
    error_code: ErrorCode


@dataclass(frozen=True, slots=True)
class FetchedOffset:
    topic: str
    partition: int
    offset: int  # -1 when nothing is committed
    leader_epoch: int
    metadata: str
    error_code: ErrorCode = ErrorCode.NONE


@dataclass(frozen=True, slots=True)
class OffsetDeleteResult:
    error_code: ErrorCode
    partitions: tuple[PartitionResult, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes  # empty unless the group is Stable
    assignment: bytes  # empty unless the group is Stable


@dataclass(frozen=True, slots=True)
class GroupDescription:
    group_id: str
    error_code: ErrorCode
    state: str
    protocol_type: str
    protocol_data: str  # the protocol name when Stable, else ""
    members: tuple[MemberDescription, ...] = ()


@dataclass(frozen=True, slots=True)
class ListedGroup:
    group_id: str
    protocol_type: str
    state: str
    group_type: str = "classic"


@dataclass(frozen=True, slots=True)
class DeleteResult:
    group_id: str
    error_code: ErrorCode
