"""The rebalance protocol of one classic group, as requests drive it: JoinGroup and SyncGroup.

`Rebalancer` applies what a JoinGroup (new member, known member, KIP-394 pending member,
KIP-345 static member back under a new id) or a SyncGroup (the leader's assignment) does to a
`Group`, and writes the answers it owes (to parked JoinGroup/SyncGroup requests) and the records
to persist into an `Effects`. The phases and timers it sets going are in group_phases.py; the
request entry points, the group registry and the offsets in group.py and group_registry.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from eventyard.coordinator.group_phases import (
    COMPLETING,
    EMPTY,
    PREPARING,
    STABLE,
    UNKNOWN_MEMBER_ID,
    Effects,
    GroupConfig,
    RebalancePhases,
)
from eventyard.coordinator.group_results import JoinResult, Kind, Pending, SyncResult
from eventyard.coordinator.group_state import Group, Member, ProtocolEntry
from eventyard.protocol.error_codes import ErrorCode

# Effects, GroupConfig and UNKNOWN_MEMBER_ID are re-exported: they were defined here before.
__all__ = ["UNKNOWN_MEMBER_ID", "Effects", "GroupConfig", "JoinRequest", "Rebalancer"]


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


class Rebalancer(RebalancePhases):
    """Kafka's classic rebalance protocol, applied to one group at a time."""

    def __init__(self, config: GroupConfig, new_uuid: Callable[[], str]):
        super().__init__(config)
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

    def _maybe_prepare_rebalance_or_complete_join(
        self, group: Group, fx: Effects, now_ms: int, reason: str
    ) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, fx, now_ms, reason)
        else:
            self.maybe_complete_join_phase(group, fx, now_ms)
