"""The classic groups of one broker at rest: the registry, its timers, offsets and admin APIs.

`GroupRegistry` is the base of `GroupCoordinator` (group.py), which adds the membership protocol
(JoinGroup, SyncGroup, Heartbeat, LeaveGroup). Here: creating and deleting groups, `tick` /
`next_deadline`, the committed offsets (OffsetCommit, OffsetFetch, OffsetDelete, KIP-211
expiry), the admin APIs (DescribeGroups, ListGroups, DeleteGroups) and `replay` of the records
persisted before a restart. The same contract as group.py: no IO, no clock; every entry point
takes `now_ms` and returns an `Outcome`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence

from eventyard.coordinator.group_phases import Effects, GroupConfig
from eventyard.coordinator.group_rebalance import Rebalancer
from eventyard.coordinator.group_results import (
    DeleteResult,
    FetchedOffset,
    GroupDescription,
    ListedGroup,
    MemberDescription,
    OffsetDeleteResult,
    Outcome,
    PartitionResult,
)
from eventyard.coordinator.group_state import (
    CONSUMER_PROTOCOL_TYPE,
    Group,
    GroupDeleted,
    GroupState,
    OffsetAndMetadata,
    OffsetCommitted,
    OffsetDeleted,
    Record,
)
from eventyard.protocol.error_codes import ErrorCode

__all__ = ["MAX_GROUP_ID_LENGTH", "CommitEntry", "GroupRegistry", "valid_group_id"]

EMPTY = GroupState.EMPTY
PREPARING = GroupState.PREPARING_REBALANCE
COMPLETING = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD

# (topic, partition, offset, leader epoch, metadata); None metadata is stored as "".
CommitEntry = tuple[str, int, int, int, str | None]


# Kafka sets no limit of its own; a group id this long is a mistake, and it is kept in every
# journal record and log line, so it is refused like an empty one.
MAX_GROUP_ID_LENGTH = 255


def valid_group_id(group_id: str) -> bool:
    return 0 < len(group_id) <= MAX_GROUP_ID_LENGTH


class GroupRegistry:
    """All classic groups of one broker and their committed offsets, without the membership APIs."""

    def __init__(self, config: GroupConfig | None = None, *, new_uuid: Callable[[], str] | None = None):
        self.config = config or GroupConfig()
        self.groups: dict[str, Group] = {}
        self._rb = Rebalancer(self.config, new_uuid or (lambda: str(uuid.uuid4())))
        self._next_retention_check: int | None = None

    # ------------------------------------------------------------------------------------
    # Timers

    def tick(self, now_ms: int) -> Outcome[None]:
        """Fire every timer that is due: session and join timeouts, the end of a rebalance
        delay, sync timeouts, and (every retention check interval) offset expiry."""
        fx = Effects()
        for group in list(self.groups.values()):
            self._rb.advance(group, now_ms, fx)
        due = self._next_retention_check
        if due is not None and now_ms >= due:
            self._expire_offsets(fx, now_ms)
            self._next_retention_check = now_ms + self.config.offsets_retention_check_interval_ms
        return fx.outcome(None)

    def next_deadline(self) -> int | None:
        """The earliest time at which tick() has something to do, or None."""
        deadlines = [d for g in self.groups.values() if (d := g.next_deadline()) is not None]
        if self.groups and self._next_retention_check is not None:
            deadlines.append(self._next_retention_check)
        return min(deadlines, default=None)

    def _advanced(self, group_id: str, now_ms: int, fx: Effects) -> Group | None:
        group = self.groups.get(group_id)
        if group is not None:
            self._rb.advance(group, now_ms, fx)
        return group

    # ------------------------------------------------------------------------------------
    # Offsets

    def commit(
        self,
        group_id: str,
        member_id: str,
        generation_id: int,
        offsets: Sequence[CommitEntry],
        *,
        group_instance_id: str | None = None,
        now_ms: int,
    ) -> Outcome[list[PartitionResult]]:
        """OffsetCommit. Generation -1 with no member id is a standalone ("simple") commit,
        accepted only while the group has no members; it creates the group if needed."""
        fx = Effects()
        group = self._advanced(group_id, now_ms, fx)
        created = False
        error: ErrorCode | None
        if group is None and generation_id >= 0:
            error = ErrorCode.ILLEGAL_GENERATION  # v9+ callers may prefer GROUP_ID_NOT_FOUND
        else:
            if group is None:
                group = self._create_group(group_id, now_ms)
                created = True
            error = self._validate_commit(group, member_id, group_instance_id, generation_id)
        results = []
        limit = self.config.offset_metadata_max_bytes
        for topic, partition, offset, leader_epoch, metadata in offsets:
            text = metadata or ""
            code = error
            if code is None and len(text.encode()) > limit:
                code = ErrorCode.OFFSET_METADATA_TOO_LARGE
            if code is None and group is not None:
                group.offsets[(topic, partition)] = OffsetAndMetadata(offset, leader_epoch, text, now_ms)
                fx.records.append(
                    OffsetCommitted(group_id, topic, partition, offset, leader_epoch, text, now_ms)
                )
            results.append(PartitionResult(topic, partition, code or ErrorCode.NONE))
        if group is not None:
            member = group.members.get(member_id)
            if error is None and member is not None and group.state in (STABLE, PREPARING):
                # A commit proves the member alive, as a heartbeat would.
                member.heartbeat_deadline = now_ms + member.session_timeout_ms
            if created:
                self._forget_if_unused(group)
        return fx.outcome(results)

    def _validate_commit(
        self, group: Group, member_id: str, group_instance_id: str | None, generation_id: int
    ) -> ErrorCode | None:
        if generation_id < 0 and group.state is EMPTY:
            return None
        if generation_id >= 0 or member_id or group_instance_id is not None:
            error = self._rb.validate_member(group, member_id, group_instance_id)
            if error is not None:
                return error
            if generation_id != group.generation:
                return ErrorCode.ILLEGAL_GENERATION
        elif group.state is not EMPTY:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.state is COMPLETING:
            # The member knows the new generation but has no assignment yet.
            return ErrorCode.REBALANCE_IN_PROGRESS
        return None

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[tuple[str, int]] | None, *, now_ms: int
    ) -> Outcome[list[FetchedOffset]]:
        """OffsetFetch of the given (topic, partition)s, or of everything committed (None).
        Partitions without a commit answer offset -1."""
        fx = Effects()
        group = self._advanced(group_id, now_ms, fx)
        committed = group.offsets if group is not None else {}
        keys = sorted(committed) if partitions is None else list(partitions)
        results = []
        for topic, partition in keys:
            o = committed.get((topic, partition))
            if o is None:
                results.append(FetchedOffset(topic, partition, -1, -1, ""))
            else:
                results.append(FetchedOffset(topic, partition, o.offset, o.leader_epoch, o.metadata))
        return fx.outcome(results)

    def delete_offsets(
        self, group_id: str, partitions: Iterable[tuple[str, int]], *, now_ms: int
    ) -> Outcome[OffsetDeleteResult]:
        """OffsetDelete: refused for topics an active consumer group subscribes to."""
        fx = Effects()
        group = self._advanced(group_id, now_ms, fx)
        if group is None:
            return fx.outcome(OffsetDeleteResult(ErrorCode.GROUP_ID_NOT_FOUND))
        if group.state is not EMPTY and group.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return fx.outcome(OffsetDeleteResult(ErrorCode.NON_EMPTY_GROUP))
        results = []
        for topic, partition in partitions:
            if group.state is not EMPTY and group.is_subscribed_to(topic):
                results.append(PartitionResult(topic, partition, ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC))
                continue
            if group.offsets.pop((topic, partition), None) is not None:
                fx.records.append(OffsetDeleted(group_id, topic, partition))
            results.append(PartitionResult(topic, partition, ErrorCode.NONE))
        return fx.outcome(OffsetDeleteResult(ErrorCode.NONE, tuple(results)))

    def _expire_offsets(self, fx: Effects, now_ms: int) -> None:
        """KIP-211: a group's offsets expire once it has been Empty for the retention period;
        standalone groups' offsets, and a Stable consumer group's offsets of topics it no
        longer subscribes to, expire by commit time. Empty groups left with nothing go away."""
        retention = self.config.offsets_retention_ms
        for group in list(self.groups.values()):
            stable_consumer = (
                group.state is STABLE
                and group.protocol_type == CONSUMER_PROTOCOL_TYPE
                and group.subscribed_topics is not None
            )
            for (topic, partition), o in list(group.offsets.items()):
                if group.protocol_type is None:
                    base = o.commit_ms
                elif group.state is EMPTY:
                    base = group.state_since_ms
                elif stable_consumer and not group.is_subscribed_to(topic):
                    base = o.commit_ms
                else:
                    continue
                if now_ms - base >= retention:
                    del group.offsets[(topic, partition)]
                    fx.records.append(OffsetDeleted(group.group_id, topic, partition))
            if group.state is EMPTY and not group.offsets and not group.pending_members:
                self._delete_group(group, fx, now_ms)

    # ------------------------------------------------------------------------------------
    # Admin: DescribeGroups, ListGroups, DeleteGroups

    def describe(self, group_id: str, *, now_ms: int) -> Outcome[GroupDescription]:
        fx = Effects()
        group = self._advanced(group_id, now_ms, fx)
        if group is None:
            return fx.outcome(GroupDescription(group_id, ErrorCode.NONE, DEAD.value, "", ""))
        stable = group.state is STABLE
        members = tuple(
            MemberDescription(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.metadata(group.protocol_name) if stable else b"",
                m.assignment if stable else b"",
            )
            for m in group.members.values()
        )
        protocol_data = (group.protocol_name or "") if stable else ""
        return fx.outcome(
            GroupDescription(
                group_id, ErrorCode.NONE, group.state.value, group.protocol_type or "", protocol_data, members
            )
        )

    def list_groups(
        self, states_filter: Iterable[str] = (), types_filter: Iterable[str] = (), *, now_ms: int
    ) -> Outcome[list[ListedGroup]]:
        """ListGroups; both filters match case-insensitively, and these groups are all "classic"."""
        fx = Effects()
        for group in list(self.groups.values()):
            self._rb.advance(group, now_ms, fx)
        states = {s.strip().lower() for s in states_filter}
        types = {t.strip().lower() for t in types_filter}
        if types and "classic" not in types:
            return fx.outcome([])
        listed = [
            ListedGroup(g.group_id, g.protocol_type or "", g.state.value)
            for g in self.groups.values()
            if not states or g.state.value.lower() in states
        ]
        return fx.outcome(listed)

    def delete_groups(self, group_ids: Iterable[str], *, now_ms: int) -> Outcome[list[DeleteResult]]:
        fx = Effects()
        results = []
        for group_id in group_ids:
            group = self._advanced(group_id, now_ms, fx)
            if group is None:
                results.append(DeleteResult(group_id, ErrorCode.GROUP_ID_NOT_FOUND))
            elif group.state is not EMPTY:
                results.append(DeleteResult(group_id, ErrorCode.NON_EMPTY_GROUP))
            else:
                self._delete_group(group, fx, now_ms)
                results.append(DeleteResult(group_id, ErrorCode.NONE))
        return fx.outcome(results)

    # ------------------------------------------------------------------------------------
    # Durability

    def replay(self, record: Record, now_ms: int) -> None:
        """Rebuild state from a persisted record, in log order, before serving requests.
        Offsets come back exactly; a group comes back Empty with its protocol type and
        generation (its members rejoin), Empty since the record's time, or since now_ms if
        it had members when written."""
        if isinstance(record, GroupDeleted):
            self.groups.pop(record.group_id, None)
            return
        group = self.groups.get(record.group_id)
        if isinstance(record, OffsetDeleted):
            if group is not None:
                group.offsets.pop((record.topic, record.partition), None)
            return
        if group is None:
            group = self._create_group(record.group_id, now_ms)
        if isinstance(record, OffsetCommitted):
            group.offsets[(record.topic, record.partition)] = OffsetAndMetadata(
                record.offset, record.leader_epoch, record.metadata, record.commit_ms
            )
        else:
            group.protocol_type = record.protocol_type
            group.generation = record.generation
            group.state_since_ms = record.timestamp_ms if not record.member_ids else now_ms
            group.subscribed_topics = group.compute_subscribed_topics()

    # ------------------------------------------------------------------------------------
    # Helpers

    def _create_group(self, group_id: str, now_ms: int) -> Group:
        group = self.groups[group_id] = Group(group_id, state_since_ms=now_ms)
        if self._next_retention_check is None:
            self._next_retention_check = now_ms + self.config.offsets_retention_check_interval_ms
        return group

    def _forget_if_unused(self, group: Group) -> None:
        """Drop a group this request created if nothing came of it (it was never persisted)."""
        if group.state is EMPTY and not group.members and not group.pending_members and not group.offsets:
            del self.groups[group.group_id]

    def _delete_group(self, group: Group, fx: Effects, now_ms: int) -> None:
        for topic, partition in group.offsets:
            fx.records.append(OffsetDeleted(group.group_id, topic, partition))
        group.offsets.clear()
        fx.records.append(GroupDeleted(group.group_id))
        group.transition(DEAD, now_ms)
        del self.groups[group.group_id]
