"""The KIP-848 groups of one broker: the registry, its timers, and everything that reads it.

`ConsumerGroupRegistry` is the base of `ConsumerGroupCoordinator` (consumer_group.py), which adds
the one way members get in and change things, ConsumerGroupHeartbeat. Here: removing members
(by timer, or when they leave), `tick` / `next_deadline`, the OffsetCommit/OffsetFetch v9
checks of member epochs, and the admin APIs (ConsumerGroupDescribe, ListGroups, DeleteGroups).
Pure state, no IO, like the rest of the coordinator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from eventyard.coordinator.consumer_group_assignors import (
    ASSIGNORS,
    NO_PARTITIONS,
    Assignor,
    Partitions,
    TopicsView,
    group_by_topic,
)
from eventyard.coordinator.consumer_group_results import (
    ConsumerGroupDescription,
    ConsumerMemberDescription,
    DescribedPartitions,
    Expired,
)
from eventyard.coordinator.consumer_group_state import ConsumerGroup, ConsumerMember
from eventyard.coordinator.group_results import ListedGroup
from eventyard.protocol.error_codes import ErrorCode

__all__ = ["PROTOCOL_TYPE", "ConsumerGroupConfig", "ConsumerGroupRegistry", "TopicsSource", "topics_view"]

# The name it logged under before it was split from consumer_group.py: log output stays the same.
log = logging.getLogger("eventyard.coordinator.consumer_group")

PROTOCOL_TYPE = "consumer"

# The topics the assignors may use: name -> (topic id, partition count), or a callable giving it.
TopicsSource = TopicsView | Callable[[], TopicsView]


@dataclass(frozen=True, slots=True)
class ConsumerGroupConfig:
    heartbeat_interval_ms: int = 5_000  # group.consumer.heartbeat.interval.ms
    session_timeout_ms: int = 45_000  # group.consumer.session.timeout.ms
    # For a join without a rebalance timeout (-1), which Kafka refuses with INVALID_REQUEST.
    default_rebalance_timeout_ms: int = 300_000
    max_size: int | None = None  # group.consumer.max.size; None = unlimited
    assignors: tuple[Assignor, ...] = ASSIGNORS  # the first is the default


def topics_view(topics: TopicsSource) -> TopicsView:
    return topics() if callable(topics) else topics


class ConsumerGroupRegistry:
    """All consumer-protocol (KIP-848) groups of one broker, without the heartbeat."""

    def __init__(
        self,
        config: ConsumerGroupConfig | None = None,
        *,
        is_classic_group: Callable[[str], bool] = lambda group_id: False,
    ) -> None:
        self.config = config or ConsumerGroupConfig()
        self.groups: dict[str, ConsumerGroup] = {}
        self._is_classic_group = is_classic_group
        self._assignors = {a.name: a for a in self.config.assignors}
        self._assignor_names = [a.name for a in self.config.assignors]

    def _remove_member(self, group: ConsumerGroup, member: ConsumerMember, reason: str) -> None:
        group.remove(member.member_id)
        group.epoch += 1
        # Drop the topics nobody subscribes to any more now, so the next heartbeat does not bump again.
        remaining = group.subscribed_topics()
        group.subscription_metadata = {t: v for t, v in group.subscription_metadata.items() if t in remaining}
        log.info(
            "group %s: member %s removed (%s), epoch %d",
            group.group_id,
            member.member_id,
            reason,
            group.epoch,
        )

    # ------------------------------------------------------------------------------------
    # Timers

    def tick(self, now_ms: int) -> list[Expired]:
        """Remove every member whose session or rebalance timeout has passed."""
        expired: list[Expired] = []
        for group in list(self.groups.values()):
            expired.extend(self._advance(group, now_ms))
        return expired

    def next_deadline(self) -> int | None:
        """The earliest time at which tick() has something to do, or None."""
        deadlines = [
            d
            for g in self.groups.values()
            for m in g.members.values()
            for d in (m.session_deadline, m.rebalance_deadline)
            if d is not None
        ]
        return min(deadlines, default=None)

    def _advance(self, group: ConsumerGroup, now_ms: int) -> list[Expired]:
        due = sorted(
            (deadline, member.member_id, reason)
            for member in group.members.values()
            for deadline, reason in (
                (member.session_deadline, "session timeout"),
                (member.rebalance_deadline, "revocation not done within the rebalance timeout"),
            )
            if deadline is not None and deadline <= now_ms
        )
        expired = []
        for _, member_id, reason in due:
            member = group.members.get(member_id)
            if member is not None:  # both of its timers may be due
                self._remove_member(group, member, reason)
                expired.append(Expired(group.group_id, member_id, reason))
        return expired

    # ------------------------------------------------------------------------------------
    # Offsets (validation only; the offsets live in the classic coordinator's store)

    def validate_commit(
        self, group_id: str, member_id: str, member_epoch: int, *, now_ms: int | None = None
    ) -> ErrorCode:
        """OffsetCommit v9+ into a consumer group. A negative epoch (admin / manual commits) is
        accepted while the group has no members; otherwise only the member's current epoch is
        (Kafka 4.x: even one epoch behind is STALE_MEMBER_EPOCH)."""
        group = self._group(group_id, now_ms)
        if group is None:
            return ErrorCode.GROUP_ID_NOT_FOUND
        if member_epoch < 0 and not group.members:
            return ErrorCode.NONE
        return self._check_member_epoch(group, member_id, member_epoch)

    def validate_fetch(
        self, group_id: str, member_id: str | None, member_epoch: int, *, now_ms: int | None = None
    ) -> ErrorCode:
        """OffsetFetch v9+: without a member id and epoch (admin clients) anything goes; with
        them, they must match. GROUP_ID_NOT_FOUND: Kafka then answers with no offsets."""
        if member_id is None and member_epoch < 0:
            return ErrorCode.NONE
        group = self._group(group_id, now_ms)
        if group is None:
            return ErrorCode.GROUP_ID_NOT_FOUND
        return self._check_member_epoch(group, member_id or "", member_epoch)

    @staticmethod
    def _check_member_epoch(group: ConsumerGroup, member_id: str, member_epoch: int) -> ErrorCode:
        member = group.members.get(member_id)
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if member_epoch != member.epoch:
            return ErrorCode.STALE_MEMBER_EPOCH
        return ErrorCode.NONE

    # ------------------------------------------------------------------------------------
    # Admin: ConsumerGroupDescribe, ListGroups, DeleteGroups

    def describe(
        self, group_ids: Iterable[str], topics: TopicsSource, *, now_ms: int | None = None
    ) -> list[ConsumerGroupDescription]:
        """ConsumerGroupDescribe v0. Topics that no longer exist are left out of assignments."""
        names = {topic_id: name for name, (topic_id, _) in topics_view(topics).items()}

        def described(partitions: Partitions) -> tuple[DescribedPartitions, ...]:
            return tuple(
                (topic_id, names[topic_id], tuple(ps))
                for topic_id, ps in group_by_topic(partitions)
                if topic_id in names
            )

        out = []
        for group_id in group_ids:
            group = self._group(group_id, now_ms)
            if not group_id.strip():
                out.append(
                    ConsumerGroupDescription(group_id, ErrorCode.INVALID_GROUP_ID, "GroupId can't be empty.")
                )
            elif group is None:
                what = "is not a consumer group" if self._is_classic_group(group_id) else "not found"
                out.append(
                    ConsumerGroupDescription(
                        group_id, ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} {what}."
                    )
                )
            else:
                members = tuple(
                    ConsumerMemberDescription(
                        m.member_id,
                        m.instance_id,
                        m.rack_id,
                        m.epoch,
                        m.client_id,
                        m.client_host,
                        tuple(sorted(m.subscribed_topic_names)),
                        None,
                        described(m.assigned),
                        described(group.target.get(m.member_id, NO_PARTITIONS)),
                    )
                    for m in group.members.values()
                )
                out.append(
                    ConsumerGroupDescription(
                        group_id,
                        ErrorCode.NONE,
                        None,
                        group.state(),
                        group.epoch,
                        group.assignment_epoch,
                        group.preferred_assignor(self._assignor_names),
                        members,
                    )
                )
        return out

    def list_groups(
        self,
        states_filter: Iterable[str] = (),
        types_filter: Iterable[str] = (),
        *,
        now_ms: int | None = None,
    ) -> list[ListedGroup]:
        """ListGroups entries (type "consumer"); both filters match case-insensitively."""
        states = {s.strip().lower() for s in states_filter}
        types = {t.strip().lower() for t in types_filter}
        if types and "consumer" not in types:
            return []
        listed = []
        for group_id in list(self.groups):
            group = self._group(group_id, now_ms)
            assert group is not None
            state = group.state()
            if not states or state.lower() in states:
                listed.append(ListedGroup(group_id, PROTOCOL_TYPE, state, group_type="consumer"))
        return listed

    def delete(self, group_id: str, *, now_ms: int | None = None) -> ErrorCode:
        """DeleteGroups for one group: only an empty group goes."""
        group = self._group(group_id, now_ms)
        if group is None:
            return ErrorCode.GROUP_ID_NOT_FOUND
        if group.members:
            return ErrorCode.NON_EMPTY_GROUP
        del self.groups[group_id]
        return ErrorCode.NONE

    def is_group(self, group_id: str) -> bool:
        return group_id in self.groups

    def _group(self, group_id: str, now_ms: int | None) -> ConsumerGroup | None:
        group = self.groups.get(group_id)
        if group is not None and now_ms is not None:
            self._advance(group, now_ms)
        return group
