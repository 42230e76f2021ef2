"""The classic consumer-group coordinator, as a pure state machine.

No sockets, no asyncio, no clock: every entry point takes `now_ms` and returns an `Outcome`
(see group_results.py). Driving it:

* Call the entry point for each request. If its response is `Pending`, park the request under
  (group_id, member_id, kind); a later `Completion` with that key carries its answer. A newer
  Pending for the same key replaces the older request, which is never answered (as in Kafka:
  a client does not send a second JoinGroup while its first is in flight).
* Deliver every `Completion` of every Outcome, and persist its `records` in order.
* Call `tick(now_ms)` no later than `next_deadline()` (and again after any entry point, which may
  move it earlier). Timers that are due are also fired at the start of every entry point for the
  group it touches, so results never depend on how punctually tick is called.

This module is the membership protocol: JoinGroup, SyncGroup, Heartbeat and LeaveGroup, which
drive the group's rebalance (group_rebalance.py, group_phases.py). The registry it extends
(group_registry.py) has the timers, offsets, admin APIs and replay; group_state.py the data,
group_results.py the answers.

Behaviour follows Kafka's classic GroupCoordinator: states Empty -> PreparingRebalance ->
CompletingRebalance -> Stable, KIP-394 member ids, KIP-345 static members, KIP-211 offset expiry.
"""

from __future__ import annotations

from collections.abc import Sequence

from eventyard.coordinator.group_phases import UNKNOWN_MEMBER_ID, Effects, GroupConfig
from eventyard.coordinator.group_rebalance import JoinRequest
from eventyard.coordinator.group_registry import (
    MAX_GROUP_ID_LENGTH,
    CommitEntry,
    GroupRegistry,
    valid_group_id,
)
from eventyard.coordinator.group_results import (
    Completion,
    DeleteResult,
    FetchedOffset,
    GroupDescription,
    JoinedMember,
    JoinResult,
    Kind,
    LeaveResult,
    ListedGroup,
    MemberDescription,
    MemberLeave,
    OffsetDeleteResult,
    Outcome,
    PartitionResult,
    Pending,
    SyncResult,
)
from eventyard.coordinator.group_state import (
    GroupDeleted,
    GroupMetadata,
    GroupState,
    OffsetCommitted,
    OffsetDeleted,
    ProtocolEntry,
    Record,
)
from eventyard.protocol.error_codes import ErrorCode

# The results, records and config are re-exported: this is where callers import them.
__all__ = [
    "MAX_GROUP_ID_LENGTH",
    "CommitEntry",
    "Completion",
    "DeleteResult",
    "FetchedOffset",
    "GroupConfig",
    "GroupCoordinator",
    "GroupDeleted",
    "GroupDescription",
    "GroupMetadata",
    "GroupState",
    "JoinResult",
    "JoinedMember",
    "Kind",
    "LeaveResult",
    "ListedGroup",
    "MemberDescription",
    "MemberLeave",
    "OffsetCommitted",
    "OffsetDeleteResult",
    "OffsetDeleted",
    "Outcome",
    "PartitionResult",
    "Pending",
    "Record",
    "SyncResult",
]

PREPARING = GroupState.PREPARING_REBALANCE
STABLE = GroupState.STABLE


def _inconsistent(requested: str | None, actual: str | None) -> bool:
    return requested is not None and actual is not None and requested != actual


class GroupCoordinator(GroupRegistry):
    """All classic groups of one broker and their committed offsets."""

    # ------------------------------------------------------------------------------------
    # JoinGroup

    def join(
        self,
        group_id: str,
        member_id: str,
        *,
        protocol_type: str,
        protocols: Sequence[ProtocolEntry],
        session_timeout_ms: int,
        rebalance_timeout_ms: int = -1,
        group_instance_id: str | None = None,
        client_id: str = "",
        client_host: str = "",
        require_known_member_id: bool = False,
        supports_skip_assignment: bool = True,
        reason: str | None = None,
        now_ms: int,
    ) -> Outcome[JoinResult | Pending]:
        """JoinGroup. `require_known_member_id` is true for v4+, `supports_skip_assignment` for v9+;
        a negative rebalance timeout (v0) means the session timeout."""
        fx = Effects()
        if not valid_group_id(group_id):
            return fx.outcome(JoinResult(ErrorCode.INVALID_GROUP_ID, member_id))
        cfg = self.config
        if not cfg.min_session_timeout_ms <= session_timeout_ms <= cfg.max_session_timeout_ms:
            return fx.outcome(JoinResult(ErrorCode.INVALID_SESSION_TIMEOUT, member_id))
        req = JoinRequest(
            group_id,
            member_id,
            group_instance_id,
            client_id,
            client_host,
            protocol_type,
            tuple((name, bytes(metadata)) for name, metadata in protocols),
            session_timeout_ms,
            rebalance_timeout_ms if rebalance_timeout_ms >= 0 else session_timeout_ms,
            require_known_member_id,
            supports_skip_assignment,
            reason or "not provided",
        )
        group = self._advanced(group_id, now_ms, fx)
        created = False
        if group is None:
            if member_id != UNKNOWN_MEMBER_ID:
                return fx.outcome(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
            group = self._create_group(group_id, now_ms)
            created = True

        response: JoinResult | Pending
        if not self._rb.accepts_joining_member(group, member_id):
            existing = group.members.get(member_id)
            if existing is not None:
                # Over the size limit while preparing: the late rejoiner is the one dropped.
                self._rb.remove_member(group, existing, fx)
                self._rb.after_removal(group, fx, now_ms, f"member {member_id} dropped: group is full")
            response = JoinResult(ErrorCode.GROUP_MAX_SIZE_REACHED, UNKNOWN_MEMBER_ID)
        elif member_id == UNKNOWN_MEMBER_ID:
            response = self._rb.join_new_member(group, req, fx, now_ms)
        else:
            response = self._rb.join_existing_member(group, req, fx, now_ms)

        # Timers that are already due (an initial delay of 0) fire before we answer.
        self._rb.advance(group, now_ms, fx)
        if isinstance(response, Pending):
            own = fx.take(group_id, response.member_id, Kind.JOIN)
            if isinstance(own, JoinResult):
                response = own
        if created:
            self._forget_if_unused(group)
        return fx.outcome(response)

    # ------------------------------------------------------------------------------------
    # SyncGroup, Heartbeat, LeaveGroup

    def sync(
        self,
        group_id: str,
        member_id: str,
        generation_id: int,
        *,
        group_instance_id: str | None = None,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
        assignments: Sequence[tuple[str, bytes]] = (),
        now_ms: int,
    ) -> Outcome[SyncResult | Pending]:
        fx = Effects()
        if not valid_group_id(group_id):
            return fx.outcome(SyncResult(ErrorCode.INVALID_GROUP_ID))
        group = self._advanced(group_id, now_ms, fx)
        if group is None:
            return fx.outcome(SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
        response: SyncResult | Pending
        error = self._rb.validate_member(group, member_id, group_instance_id)
        if error is not None:
            response = SyncResult(error)
        elif generation_id != group.generation:
            response = SyncResult(ErrorCode.ILLEGAL_GENERATION)
        elif _inconsistent(protocol_type, group.protocol_type) or _inconsistent(
            protocol_name, group.protocol_name
        ):
            response = SyncResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        elif group.state is PREPARING:
            response = SyncResult(ErrorCode.REBALANCE_IN_PROGRESS)
        elif group.state is STABLE:
            self._rb.synced(group, member_id)
            assignment = group.members[member_id].assignment
            response = SyncResult(ErrorCode.NONE, group.protocol_type, group.protocol_name, assignment)
        else:
            group.members[member_id].awaiting_sync = True
            self._rb.synced(group, member_id)
            if group.leader_id == member_id:
                self._rb.install_assignment(group, dict(assignments), fx, now_ms)
            response = Pending(group_id, member_id, Kind.SYNC)
        self._rb.advance(group, now_ms, fx)
        if isinstance(response, Pending):
            own = fx.take(group_id, member_id, Kind.SYNC)
            if isinstance(own, SyncResult):
                response = own
        return fx.outcome(response)

    def heartbeat(
        self,
        group_id: str,
        member_id: str,
        generation_id: int,
        *,
        group_instance_id: str | None = None,
        now_ms: int,
    ) -> Outcome[ErrorCode]:
        fx = Effects()
        if not valid_group_id(group_id):
            return fx.outcome(ErrorCode.INVALID_GROUP_ID)
        group = self._advanced(group_id, now_ms, fx)
        if group is None:
            return fx.outcome(ErrorCode.UNKNOWN_MEMBER_ID)
        error = self._rb.validate_member(group, member_id, group_instance_id)
        if error is not None:
            return fx.outcome(error)
        if generation_id != group.generation:
            return fx.outcome(ErrorCode.ILLEGAL_GENERATION)
        member = group.members[member_id]
        member.heartbeat_deadline = now_ms + member.session_timeout_ms
        if group.state is PREPARING:
            return fx.outcome(ErrorCode.REBALANCE_IN_PROGRESS)
        # Kafka answers NONE while completing: members heartbeat between JoinGroup and SyncGroup.
        return fx.outcome(ErrorCode.NONE)

    def leave(
        self, group_id: str, members: Sequence[tuple[str, str | None]], *, now_ms: int
    ) -> Outcome[LeaveResult]:
        """LeaveGroup: members are (member_id, group_instance_id). An empty member id with an
        instance id removes that static member (admin removal). For v0-2 pass one member and
        use its error as the top-level error."""
        fx = Effects()
        if not valid_group_id(group_id):
            return fx.outcome(LeaveResult(ErrorCode.INVALID_GROUP_ID))
        group = self._advanced(group_id, now_ms, fx)
        if group is None:
            unknown = tuple(MemberLeave(m, i, ErrorCode.UNKNOWN_MEMBER_ID) for m, i in members)
            return fx.outcome(LeaveResult(ErrorCode.UNKNOWN_MEMBER_ID, unknown))
        results = []
        removed: list[str] = []
        removed_pending = False
        for member_id, instance_id in members:
            error: ErrorCode | None
            if member_id == UNKNOWN_MEMBER_ID:
                target = group.static_members.get(instance_id) if instance_id is not None else None
                error = ErrorCode.UNKNOWN_MEMBER_ID if target is None else None
            elif member_id in group.pending_members:
                del group.pending_members[member_id]
                removed_pending = True
                target, error = None, None
            else:
                target, error = member_id, self._rb.validate_member(group, member_id, instance_id)
            if error is None and target is not None:
                self._rb.remove_member(group, group.members[target], fx)
                removed.append(target)
            results.append(MemberLeave(member_id, instance_id, error or ErrorCode.NONE))
        if removed:
            self._rb.after_removal(group, fx, now_ms, f"members left: {', '.join(removed)}")
        elif removed_pending:
            self._rb.maybe_complete_join_phase(group, fx, now_ms)
        self._rb.advance(group, now_ms, fx)
        return fx.outcome(LeaveResult(ErrorCode.NONE, tuple(results)))
