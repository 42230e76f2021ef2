"""How a classic group moves through a rebalance once requests have set it going.

`RebalancePhases` holds the transitions of Kafka's classic protocol that no single request
owns: entering PreparingRebalance, completing the join phase (electing the leader, the new
generation, answering the parked JoinGroups), removing members, and the timers (sessions,
pending members, the join and sync deadlines) that fire them. `Rebalancer` (group_rebalance.py)
builds on it with the JoinGroup and SyncGroup handling. `Effects` collects the answers owed to
parked requests and the records to persist, as `Outcome`s (group_results.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

from eventyard.coordinator.group_results import (
    Completion,
    JoinedMember,
    JoinResult,
    Kind,
    Outcome,
    SyncResult,
)
from eventyard.coordinator.group_state import Group, GroupMetadata, GroupState, Member, Record
from eventyard.protocol.error_codes import ErrorCode

__all__ = ["UNKNOWN_MEMBER_ID", "Effects", "GroupConfig", "RebalancePhases"]

# The name it logged under before it was split from group_rebalance.py: log output stays the same.
log = logging.getLogger("eventyard.coordinator.group_rebalance")

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


class RebalancePhases:
    """The phases and timers of Kafka's classic rebalance, applied to one group at a time."""

    def __init__(self, config: GroupConfig):
        self.config = config

    # What members are told

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

    def _propagate_assignment(self, group: Group, error: ErrorCode, fx: Effects, now_ms: int) -> None:
        for member in group.members.values():
            if member.awaiting_sync:
                member.awaiting_sync = False
                response = SyncResult(error, group.protocol_type, group.protocol_name, member.assignment)
                fx.complete(group, member.member_id, response)
                # Its session was suspended while it waited.
                member.heartbeat_deadline = now_ms + member.session_timeout_ms

    # The phases: PreparingRebalance until everyone joined, then CompletingRebalance

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

    # Timers

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
