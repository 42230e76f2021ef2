"""The data of a classic consumer group: its state, members, committed offsets and log records.

This module holds plain data and the small queries the coordinator (group.py) needs; every
transition that involves timers or responses lives in the coordinator and its rebalance phases
(group_rebalance.py, group_phases.py).
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

CONSUMER_PROTOCOL_TYPE = "consumer"

# One protocol a member supports: its name and its opaque metadata (the subscription).
ProtocolEntry = tuple[str, bytes]


class GroupState(Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


_VALID_PREVIOUS: dict[GroupState, frozenset[GroupState]] = {
    GroupState.PREPARING_REBALANCE: frozenset(
        {GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY}
    ),
    GroupState.COMPLETING_REBALANCE: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.STABLE: frozenset({GroupState.COMPLETING_REBALANCE}),
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.DEAD: frozenset(GroupState),
}


@dataclass(slots=True)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: tuple[ProtocolEntry, ...]
    assignment: bytes = b""
    # The generation whose SyncGroup set `assignment` (-1: never assigned).
    assigned_generation: int = -1
    # A JoinGroup / SyncGroup of this member is parked until the rebalance moves on.
    awaiting_join: bool = False
    awaiting_sync: bool = False
    # Added in the current rebalance and not yet given a generation: it cannot heartbeat.
    is_new: bool = False
    # When the member expires unless it heartbeats; None while it waits for a rebalance.
    heartbeat_deadline: int | None = None

    def metadata(self, protocol_name: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol_name:
                return metadata
        return b""

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def matches(self, protocols: tuple[ProtocolEntry, ...]) -> bool:
        return self.protocols == protocols

    def vote(self, candidates: set[str]) -> str:
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise ValueError(f"member {self.member_id} supports none of {sorted(candidates)}")


@dataclass(frozen=True, slots=True)
class OffsetAndMetadata:
    offset: int
    leader_epoch: int
    metadata: str
    commit_ms: int


@dataclass(slots=True)
class Group:
    group_id: str
    state_since_ms: int
    state: GroupState = GroupState.EMPTY
    previous_state: GroupState = GroupState.DEAD
    generation: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    # Insertion order is join order: it decides leader succession and vote tie-breaks.
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # group instance id -> member id
    # Member ids handed out with MEMBER_ID_REQUIRED, and when they expire if not used.
    pending_members: dict[str, int] = field(default_factory=dict)
    # Members of the current generation that have not sent SyncGroup yet.
    pending_sync: set[str] = field(default_factory=set)
    # Topics the members subscribe to (consumer protocol); None when unknown.
    subscribed_topics: frozenset[str] | None = None
    offsets: dict[tuple[str, int], OffsetAndMetadata] = field(default_factory=dict)
    # Timers. The join timer runs while preparing a rebalance; for a rebalance that started
    # from Empty it is the initial delay, which new joiners extend up to the rebalance timeout.
    join_deadline: int | None = None
    initial_delay_ms: int | None = None
    initial_remaining_ms: int = 0
    new_member_added: bool = False
    sync_deadline: int | None = None

    # -- state ---------------------------------------------------------------------------

    def transition(self, target: GroupState, now_ms: int) -> None:
        if self.state not in _VALID_PREVIOUS[target]:
            raise AssertionError(f"group {self.group_id}: illegal transition {self.state} -> {target}")
        self.previous_state = self.state
        self.state = target
        self.state_since_ms = now_ms

    def can_rebalance(self) -> bool:
        return self.state in _VALID_PREVIOUS[GroupState.PREPARING_REBALANCE]

    # -- membership ----------------------------------------------------------------------

    def add(self, member: Member) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        self.pending_members.pop(member.member_id, None)

    def remove(self, member_id: str) -> None:
        member = self.members.pop(member_id, None)
        if member is not None and member.group_instance_id is not None:
            self.static_members.pop(member.group_instance_id, None)
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        self.pending_members.pop(member_id, None)
        self.pending_sync.discard(member_id)

    def replace_static_member(self, instance_id: str, old_id: str, new_id: str) -> Member:
        old = self.members.pop(old_id)
        new = Member(
            member_id=new_id,
            group_instance_id=instance_id,
            client_id=old.client_id,
            client_host=old.client_host,
            session_timeout_ms=old.session_timeout_ms,
            rebalance_timeout_ms=old.rebalance_timeout_ms,
            protocol_type=old.protocol_type,
            protocols=old.protocols,
            assignment=old.assignment,
            assigned_generation=old.assigned_generation,
        )
        self.members[new_id] = new
        self.static_members[instance_id] = new_id
        if self.leader_id == old_id:
            self.leader_id = new_id
        if old_id in self.pending_sync:
            self.pending_sync.discard(old_id)
            self.pending_sync.add(new_id)
        return new

    def has_all_members_joined(self) -> bool:
        return not self.pending_members and all(m.awaiting_join for m in self.members.values())

    def elect_joined_leader(self) -> bool:
        """Make sure the leader is a member that rejoined; False if no member rejoined."""
        leader = self.members.get(self.leader_id) if self.leader_id is not None else None
        if leader is None:
            return False
        if leader.awaiting_join:
            return True
        for member in self.members.values():
            if member.awaiting_join:
                self.leader_id = member.member_id
                return True
        return False

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def num_awaiting_join(self) -> int:
        return sum(1 for m in self.members.values() if m.awaiting_join)

    # -- protocols -----------------------------------------------------------------------

    def _protocol_counts(self) -> Counter[str]:
        """How many members support each protocol name."""
        return Counter(name for m in self.members.values() for name in set(m.protocol_names()))

    def candidate_protocols(self) -> set[str]:
        return {name for name, count in self._protocol_counts().items() if count == len(self.members)}

    def supports_protocols(self, protocol_type: str, names: list[str]) -> bool:
        if self.state is GroupState.EMPTY:
            return protocol_type != "" and bool(names)
        # Counting (as Kafka does) also accepts any protocol once every member has left.
        counts = self._protocol_counts()
        return self.protocol_type == protocol_type and any(
            counts[name] == len(self.members) for name in names
        )

    def select_protocol(self) -> str:
        """Each member votes for its first protocol all members support; most votes wins."""
        candidates = self.candidate_protocols()
        votes = Counter(m.vote(candidates) for m in self.members.values())
        # Counter keeps first-vote order, so ties go to the protocol of the earliest joiner.
        return max(votes, key=lambda name: votes[name])

    def compute_subscribed_topics(self) -> frozenset[str] | None:
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return None
        if not self.members:
            return frozenset()
        if self.protocol_name is None:
            return None
        topics: set[str] = set()
        for member in self.members.values():
            member_topics = decode_subscription_topics(member.metadata(self.protocol_name))
            if member_topics is None:
                return None
            topics.update(member_topics)
        return frozenset(topics)

    def is_subscribed_to(self, topic: str) -> bool:
        if self.subscribed_topics is None:
            # Unknown (not parsed yet or unparsable): assume the worst for consumer groups.
            return self.protocol_type == CONSUMER_PROTOCOL_TYPE
        return topic in self.subscribed_topics

    # -- timers --------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        deadlines = [d for d in (self.join_deadline, self.sync_deadline) if d is not None]
        deadlines.extend(self.pending_members.values())
        deadlines.extend(
            m.heartbeat_deadline for m in self.members.values() if m.heartbeat_deadline is not None
        )
        return min(deadlines, default=None)

    # -- consistency ---------------------------------------------------------------------

    def invariant_violations(self) -> list[str]:
        """Everything that is wrong with this group's bookkeeping (empty when consistent)."""
        problems: list[str] = []
        state = self.state
        members = self.members.values()
        if state is GroupState.DEAD:
            problems.append("a dead group is still registered")
        if state is GroupState.EMPTY:
            if self.members:
                problems.append("Empty group has members")
            if self.protocol_name is not None:
                problems.append("Empty group has a protocol name")
            if self.join_deadline is not None or self.sync_deadline is not None:
                problems.append("Empty group has a rebalance timer")
        if state in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE):
            if not self.members:
                problems.append(f"{state.value} group has no members")
            if self.protocol_name is None:
                problems.append(f"{state.value} group has no protocol")
            if any(m.awaiting_join for m in members):
                problems.append(f"{state.value} group has a member awaiting join")
            if any(self.protocol_name not in m.protocol_names() for m in members):
                problems.append("a member does not support the group protocol")
        if state is GroupState.PREPARING_REBALANCE and self.join_deadline is None:
            problems.append("preparing a rebalance without a join timer")
        if state is not GroupState.PREPARING_REBALANCE and self.join_deadline is not None:
            problems.append("join timer outside PreparingRebalance")
        if state is not GroupState.COMPLETING_REBALANCE and any(m.awaiting_sync for m in members):
            problems.append("a member awaits sync outside CompletingRebalance")
        if state is GroupState.STABLE:
            if self.generation < 1:
                problems.append("Stable group without a generation")
            stale = [m.member_id for m in members if m.assigned_generation != self.generation]
            if stale:
                problems.append(f"Stable group members without an assignment of this generation: {stale}")
        if self.members and self.leader_id not in self.members:
            problems.append("leader is not a member")
        if not self.members and self.leader_id is not None:
            problems.append("memberless group has a leader")
        if not self.pending_sync <= self.members.keys():
            problems.append("pending sync names a non-member")
        for instance_id, member_id in self.static_members.items():
            member = self.members.get(member_id)
            if member is None or member.group_instance_id != instance_id:
                problems.append(f"static member {instance_id} maps to {member_id}")
        for member in members:
            if member.group_instance_id is not None and (
                self.static_members.get(member.group_instance_id) != member.member_id
            ):
                problems.append(f"static member {member.member_id} missing from the instance map")
            if member.heartbeat_deadline is None and not (member.awaiting_join or member.awaiting_sync):
                problems.append(f"member {member.member_id} has no session timer")
            if member.protocol_type != self.protocol_type:
                problems.append(f"member {member.member_id} has another protocol type")
        if self.pending_members.keys() & self.members.keys():
            problems.append("a member is also pending")
        return problems


def decode_subscription_topics(metadata: bytes) -> list[str] | None:
    """Topics of a ConsumerProtocolSubscription (any version: all start with v0's layout).

    int16 version, int32 topic count, then int16-length-prefixed UTF-8 names. None when the
    bytes do not parse, which callers treat as "subscription unknown".
    """
    try:
        version, count = struct.unpack_from(">hi", metadata, 0)
        if version < 0 or count < 0:
            return None
        pos = 6
        topics = []
        for _ in range(count):
            (length,) = struct.unpack_from(">h", metadata, pos)
            pos += 2
            if length < 0 or pos + length > len(metadata):
                return None
            topics.append(metadata[pos : pos + length].decode("utf-8"))
            pos += length
        return topics
    except (struct.error, UnicodeDecodeError):
        return None


# -- records: what the coordinator asks its owner to persist, and replays on restart ---------


@dataclass(frozen=True, slots=True)
class OffsetCommitted:
    group_id: str
    topic: str
    partition: int
    offset: int
    leader_epoch: int
    metadata: str
    commit_ms: int


@dataclass(frozen=True, slots=True)
class OffsetDeleted:
    group_id: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupMetadata:
    """The group's shape when it became Stable or Empty (members are not restored on replay)."""

    group_id: str
    protocol_type: str | None
    protocol_name: str | None
    generation: int
    state: str
    leader_id: str | None
    member_ids: tuple[str, ...]
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class GroupDeleted:
    group_id: str


Record = OffsetCommitted | OffsetDeleted | GroupMetadata | GroupDeleted
