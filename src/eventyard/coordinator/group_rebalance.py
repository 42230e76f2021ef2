"""The rebalance protocol of one classic group: joins, syncs, removals and timers.

`Rebalancer` applies Kafka's classic-group transitions to a `Group` and writes the answers it
owes (to parked JoinGroup/SyncGroup requests) and the records to persist into an `Effects`.
The request entry points, the group registry and the offsets live in group.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import TypeVar

from eventyard.coordinator.group_results import (
    Completion,
    JoinedMember,
    JoinResult,
    Kind,
    Outcome,
    Pending,
    SyncResult,
)
from eventyard.coordinator.group_state import (
    Group,
    GroupMetadata,
    GroupState,
    Member,
    ProtocolEntry,
    Record,
)
from eventyard.protocol.error_codes import ErrorCode

log = logging.getLogger(__name__)

R = TypeVar("R")

UNKNOWN_MEMBER_ID = ""

EMPTY = GroupState.EMPTY
PREPARING = GroupState.PREPARING_REBALANCE
COMPLETING = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE


@dataclass(frozen=True, slots=True)
class GroupConfig:
    # group.initial.rebalance.delay.ms (Kafka's default is 3000; 0 keeps a lone consumer fast)
    initial_rebalance_delay_ms: int = 0
    min_session_timeout_ms: int = 6_000
    max_session_timeout_ms: int = 1_800_000
    max_size: int | None = None  # group.max.size; None = unlimited
    # A new member's JoinGroup is dropped after this long (it cannot heartbeat yet).
    new_member_join_timeout_ms: int = 300_000
    offsets_retention_ms: int = 7 * 24 * 60 * 60 * 1000
    offsets_retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = 4096


class _Timer(IntEnum):
    # The value orders timers that fall due at the same instant.
    SESSION = 0
    PENDING_MEMBER = 1
    JOIN = 2
    SYNC = 3


@dataclass(frozen=True, slots=True)
class JoinRequest:
    group_id: str
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    protocol_type: str
    protocols: tuple[ProtocolEntry, ...]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    require_known_member_id: bool
    supports_skip_assignment: bool
    reason: str


class Effects:
    """Completions and records produced while serving one entry point."""

    __slots__ = ("completions", "records")

    def __init__(self) -> None:
        self.completions: list[Completion] = []
        self.records: list[Record] = []

    def complete(self, group: Group, member_id: str, response: JoinResult | SyncResult) -> None:
        self.completions.append(Completion(group.group_id, member_id, response))

    def take(self, group_id: str, member_id: str, kind: Kind) -> JoinResult | SyncResult | None:
        """Remove and return the completion of the caller's own parked request, if any."""
        for i, c in enumerate(self.completions):
            if c.group_id == group_id and c.member_id == member_id and c.kind is kind:
                del self.completions[i]
                return c.response
        return None

    def outcome(self, response: R) -> Outcome[R]:
        return Outcome(response, self.completions, self.records)


class Rebalancer:
    """Kafka's classic rebalance protocol, applied to one group at a time."""

    def __init__(self, config: GroupConfig, new_uuid: Callable[[], str]):
        self.config = config
        self._new_uuid = new_uuid

    def accepts_joining_member(self, group: Group, member_id: str) -> bool:
        max_size = self.config.max_size
        if max_size is None or group.state is EMPTY:
            return True
        member = group.members.get(member_id)
        if group.state is PREPARING:
            # Counting the members that rejoined lets a shrunken limit drop the last rejoiners.
            return (member is not None and member.awaiting_join) or group.num_awaiting_join() < max_size
        return member is not None or len(group.members) < max_size

    def join_new_member(
        self, group: Group, req: JoinRequest, fx: Effects, now_ms: int
    ) -> JoinResult | Pending:
        if not group.supports_protocols(req.protocol_type, [name for name, _ in req.protocols]):
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, UNKNOWN_MEMBER_ID)
        prefix = req.group_instance_id if req.group_instance_id is not None else req.client_id
        new_id = f"{prefix}-{self._new_uuid()}"
        if req.group_instance_id is not None:
            old_id = group.static_members.get(req.group_instance_id)
            if old_id is not None:
                return self._replace_static_member(group, req, old_id, new_id, fx, now_ms)
            return self._add_member_and_rebalance(group, req, new_id, fx, now_ms)
        if req.require_known_member_id:
            # KIP-394: hand out the id first, so a client that times out does not leave a ghost.
            group.pending_members[new_id] = now_ms + req.session_timeout_ms
            return JoinResult(ErrorCode.MEMBER_ID_REQUIRED, new_id)
        return self._add_member_and_rebalance(group, req, new_id, fx, now_ms)

    def join_existing_member(
        self, group: Group, req: JoinRequest, fx: Effects, now_ms: int
    ) -> JoinResult | Pending:
        member_id = req.member_id
        if not group.supports_protocols(req.protocol_type, [name for name, _ in req.protocols]):
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id)
        if member_id in group.pending_members and req.group_instance_id is None:
            return self._add_member_and_rebalance(group, req, member_id, fx, now_ms)
        error = self.validate_member(group, member_id, req.group_instance_id)
        if error is not None:
            return JoinResult(error, member_id)
        member = group.members[member_id]
        is_leader = group.leader_id == member_id
        if group.state is COMPLETING and member.matches(req.protocols):
            # It lost the JoinGroup response: answer again with the current generation.
            return self.current_generation(group, member_id, with_members=is_leader)
        if group.state is STABLE and not is_leader and member.matches(req.protocols):
            # A follower with unchanged metadata just needs the generation to SyncGroup.
            return self.current_generation(group, member_id, with_members=False)
        # Preparing: it rejoins. Otherwise the leader rejoining (topic metadata may have changed)
        # or changed metadata forces a rebalance.
        self._update_member(member, req)
        self._maybe_prepare_rebalance_or_complete_join(
            group, fx, now_ms, f"member {member_id} rejoined ({req.reason})"
        )
        return Pending(group.group_id, member_id, Kind.JOIN)

    def _add_member_and_rebalance(
        self, group: Group, req: JoinRequest, member_id: str, fx: Effects, now_ms: int
    ) -> Pending:
        member = Member(
            member_id=member_id,
            group_instance_id=req.group_instance_id,
            client_id=req.client_id,
            client_host=req.client_host,
            session_timeout_ms=req.session_timeout_ms,
            rebalance_timeout_ms=req.rebalance_timeout_ms,
            protocol_type=req.protocol_type,
            protocols=req.protocols,
            awaiting_join=True,
            is_new=True,
            # A new member cannot heartbeat; a JoinGroup that waits too long is dropped instead.
            heartbeat_deadline=now_ms + self.config.new_member_join_timeout_ms,
        )
        if group.state is PREPARING and group.previous_state is EMPTY:
            group.new_member_added = True
        group.add(member)
        self._maybe_prepare_rebalance_or_complete_join(
            group, fx, now_ms, f"new member {member_id} ({req.reason})"
        )
        return Pending(group.group_id, member_id, Kind.JOIN)

    def _replace_static_member(
        self, group: Group, req: JoinRequest, old_id: str, new_id: str, fx: Effects, now_ms: int
    ) -> JoinResult | Pending:
        """KIP-345: a static member came back under a new member id; fence the old one."""
        instance_id = group.members[old_id].group_instance_id
        assert instance_id is not None
        old = group.members[old_id]
        if old.awaiting_join:
            fx.complete(group, old_id, JoinResult(ErrorCode.FENCED_INSTANCE_ID, old_id))
        if old.awaiting_sync:
            fx.complete(group, old_id, SyncResult(ErrorCode.FENCED_INSTANCE_ID))
        previous_leader = group.leader_id or ""
        member = group.replace_static_member(instance_id, old_id, new_id)
        self._update_member(member, req)
        member.heartbeat_deadline = now_ms + member.session_timeout_ms
        reason = f"static member {instance_id} rejoined as {new_id} ({req.reason})"
        if group.state is STABLE:
            if group.protocol_name != group.select_protocol():
                self._prepare_rebalance(group, fx, now_ms, reason)
                return Pending(group.group_id, new_id, Kind.JOIN)
            # Same protocol: keep the generation and the assignment, no rebalance.
            member.awaiting_join = False
            fx.records.append(self.metadata_record(group, now_ms))
            if not req.supports_skip_assignment:
                # Before v9 a leader cannot be told to skip assigning: name the old leader id so
                # that the restarted member acts as a follower.
                result = self.current_generation(group, new_id, with_members=False)
                return replace(result, leader=previous_leader)
            is_leader = group.leader_id == new_id
            result = self.current_generation(group, new_id, with_members=is_leader)
            return replace(result, skip_assignment=is_leader)
        if group.state is COMPLETING:
            # The leader may have assigned to the old id already: start over.
            self._prepare_rebalance(group, fx, now_ms, reason)
        else:
            self.maybe_complete_join_phase(group, fx, now_ms)
        return Pending(group.group_id, new_id, Kind.JOIN)

    def _update_member(self, member: Member, req: JoinRequest) -> None:
        member.protocols = req.protocols
        member.session_timeout_ms = req.session_timeout_ms
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.awaiting_join = True

    def current_generation(self, group: Group, member_id: str, *, with_members: bool) -> JoinResult:
        return JoinResult(
            ErrorCode.NONE,
            member_id,
            group.generation,
            group.protocol_type,
            group.protocol_name,
            group.leader_id or "",
            members=self._joined_members(group) if with_members else (),
        )

    def _joined_members(self, group: Group) -> tuple[JoinedMember, ...]:
        return tuple(
            JoinedMember(m.member_id, m.group_instance_id, m.metadata(group.protocol_name))
            for m in group.members.values()
        )

    def synced(self, group: Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync:
            group.sync_deadline = None

    def install_assignment(
        self, group: Group, assignment: dict[str, bytes], fx: Effects, now_ms: int
    ) -> None:
        """The leader's SyncGroup: store each member's bytes untouched and answer all waiters."""
        for member in group.members.values():
            # Kafka hands an empty assignment to a member the leader left out.
            member.assignment = assignment.get(member.member_id, b"")
            member.assigned_generation = group.generation
        self._propagate_assignment(group, ErrorCode.NONE, fx, now_ms)
        group.transition(STABLE, now_ms)
        fx.records.append(self.metadata_record(group, now_ms))

    def _propagate_assignment(self, group: Group, error: ErrorCode, fx: Effects, now_ms: int) -> None:
        for member in group.members.values():
            if member.awaiting_sync:
                member.awaiting_sync = False
                response = SyncResult(error, group.protocol_type, group.protocol_name, member.assignment)
                fx.complete(group, member.member_id, response)
                # Its session was suspended while it waited.
                member.heartbeat_deadline = now_ms + member.session_timeout_ms

    def validate_member(
        self, group: Group, member_id: str, group_instance_id: str | None
    ) -> ErrorCode | None:
        if group_instance_id is not None:
            current = group.static_members.get(group_instance_id)
            if current is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if current != member_id:
                return ErrorCode.FENCED_INSTANCE_ID
        if member_id not in group.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return None

    # Rebalance machinery

    def _maybe_prepare_rebalance_or_complete_join(
        self, group: Group, fx: Effects, now_ms: int, reason: str
    ) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, fx, now_ms, reason)
        else:
            self.maybe_complete_join_phase(group, fx, now_ms)

    def _prepare_rebalance(self, group: Group, fx: Effects, now_ms: int, reason: str) -> None:
        if group.state is COMPLETING:
            # Members waiting in SyncGroup must rejoin instead.
            for member in group.members.values():
                member.assignment = b""
            self._propagate_assignment(group, ErrorCode.REBALANCE_IN_PROGRESS, fx, now_ms)
        group.sync_deadline = None
        initial = group.state is EMPTY
        group.transition(PREPARING, now_ms)
        log.info(
            "group %s: preparing rebalance (generation %d): %s", group.group_id, group.generation, reason
        )
        if initial:
            # A new group waits a little for more members, extended while they keep arriving.
            delay = self.config.initial_rebalance_delay_ms
            group.new_member_added = False
            group.initial_delay_ms = delay
            group.initial_remaining_ms = max(group.rebalance_timeout_ms() - delay, 0)
            group.join_deadline = now_ms + delay
        elif group.has_all_members_joined():
            self._complete_join(group, fx, now_ms)
        else:
            group.initial_delay_ms = None
            group.join_deadline = now_ms + group.rebalance_timeout_ms()

    def maybe_complete_join_phase(self, group: Group, fx: Effects, now_ms: int) -> None:
        # The initial rebalance of a new group always waits for its delay timer.
        if group.state is PREPARING and group.previous_state is not EMPTY and group.has_all_members_joined():
            self._complete_join(group, fx, now_ms)

    def _complete_join(self, group: Group, fx: Effects, now_ms: int) -> None:
        group.join_deadline = None
        group.initial_delay_ms = None
        for member in list(group.members.values()):
            # Static members keep their place until their session expires.
            if not member.awaiting_join and member.group_instance_id is None:
                self.remove_member(group, member, fx)
        if group.members and not group.elect_joined_leader():
            # Only static members that have not rejoined are left: give them more time.
            group.join_deadline = now_ms + max(group.rebalance_timeout_ms(), 1)
            return
        group.generation += 1
        group.pending_sync.clear()
        if not group.members:
            group.protocol_name = None
            group.transition(EMPTY, now_ms)
            group.subscribed_topics = group.compute_subscribed_topics()
            fx.records.append(self.metadata_record(group, now_ms))
            return
        group.protocol_name = group.select_protocol()
        group.subscribed_topics = group.compute_subscribed_topics()
        group.transition(COMPLETING, now_ms)
        for member in group.members.values():
            if member.awaiting_join:
                member.awaiting_join = False
                is_leader = member.member_id == group.leader_id
                fx.complete(
                    group,
                    member.member_id,
                    self.current_generation(group, member.member_id, with_members=is_leader),
                )
            member.is_new = False
            member.heartbeat_deadline = now_ms + member.session_timeout_ms
            group.pending_sync.add(member.member_id)
        group.sync_deadline = now_ms + group.rebalance_timeout_ms()

    def remove_member(self, group: Group, member: Member, fx: Effects) -> None:
        """Drop a member, answering its parked requests so the caller holds no orphans."""
        if member.awaiting_join:
            member.awaiting_join = False
            fx.complete(group, member.member_id, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, UNKNOWN_MEMBER_ID))
        if member.awaiting_sync:
            member.awaiting_sync = False
            fx.complete(group, member.member_id, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
        group.remove(member.member_id)

    def after_removal(self, group: Group, fx: Effects, now_ms: int, reason: str) -> None:
        if group.state in (STABLE, COMPLETING):
            self._prepare_rebalance(group, fx, now_ms, reason)
        elif group.state is PREPARING:
            self.maybe_complete_join_phase(group, fx, now_ms)

    def advance(self, group: Group, now_ms: int, fx: Effects) -> None:
        """Fire the group's due timers in deadline order, each at its own deadline, so that the
        result does not depend on when the caller ticks."""
        while (timer := self._due_timer(group, now_ms)) is not None:
            at, kind, member_id = timer
            if kind is _Timer.SESSION:
                self._expire_session(group, group.members[member_id], fx, at)
            elif kind is _Timer.PENDING_MEMBER:
                del group.pending_members[member_id]
                self.maybe_complete_join_phase(group, fx, at)
            elif kind is _Timer.JOIN:
                self._join_timer_fired(group, fx, at)
            else:
                self._sync_timer_fired(group, fx, at)

    def _due_timer(self, group: Group, now_ms: int) -> tuple[int, _Timer, str] | None:
        candidates: list[tuple[int, _Timer, str]] = []
        for member in group.members.values():
            if member.heartbeat_deadline is not None and member.heartbeat_deadline <= now_ms:
                candidates.append((member.heartbeat_deadline, _Timer.SESSION, member.member_id))
        for member_id, deadline in group.pending_members.items():
            if deadline <= now_ms:
                candidates.append((deadline, _Timer.PENDING_MEMBER, member_id))
        if group.join_deadline is not None and group.join_deadline <= now_ms:
            candidates.append((group.join_deadline, _Timer.JOIN, ""))
        if group.sync_deadline is not None and group.sync_deadline <= now_ms:
            candidates.append((group.sync_deadline, _Timer.SYNC, ""))
        return min(candidates, default=None)

    def _expire_session(self, group: Group, member: Member, fx: Effects, at: int) -> None:
        if not member.is_new and (member.awaiting_join or member.awaiting_sync):
            # Waiting for the rebalance counts as alive; the timer restarts when it completes.
            member.heartbeat_deadline = None
            return
        log.info("group %s: member %s expired", group.group_id, member.member_id)
        self.remove_member(group, member, fx)
        self.after_removal(group, fx, at, f"member {member.member_id} session expired")

    def _join_timer_fired(self, group: Group, fx: Effects, at: int) -> None:
        delay = group.initial_delay_ms
        if delay is not None and group.new_member_added and group.initial_remaining_ms != 0:
            # Members keep arriving at a new group: wait one more delay, within the rebalance timeout.
            group.new_member_added = False
            next_delay = min(self.config.initial_rebalance_delay_ms, group.initial_remaining_ms)
            group.initial_remaining_ms = max(group.initial_remaining_ms - delay, 0)
            group.initial_delay_ms = next_delay
            group.join_deadline = at + next_delay
        else:
            self._complete_join(group, fx, at)

    def _sync_timer_fired(self, group: Group, fx: Effects, at: int) -> None:
        group.sync_deadline = None
        if group.state in (COMPLETING, STABLE) and group.pending_sync:
            late = sorted(group.pending_sync)
            for member_id in late:
                self.remove_member(group, group.members[member_id], fx)
            self._prepare_rebalance(group, fx, at, f"no SyncGroup from {', '.join(late)}")

    def metadata_record(self, group: Group, now_ms: int) -> GroupMetadata:
        return GroupMetadata(
            group.group_id,
            group.protocol_type,
            group.protocol_name,
            group.generation,
            group.state.value,
            group.leader_id,
            tuple(group.members),
            now_ms,
        )
