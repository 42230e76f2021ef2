"""The KIP-848 consumer group protocol (ConsumerGroupHeartbeat, ConsumerGroupDescribe), a pure state machine.

No sockets, no asyncio, no clock: every entry point takes `now_ms` and returns plain results.
Driving it:

* Answer ConsumerGroupHeartbeat with `heartbeat(...)`; nothing is ever parked.
* Call `tick(now_ms)` no later than `next_deadline()` (and again after any heartbeat, which may
  move it earlier): it removes members whose session or rebalance timeout passed. The timers of
  a group are also fired at the start of every entry point that touches it (when given now_ms),
  so results never depend on how punctually tick is called.
* Route OffsetCommit/OffsetFetch v9 of consumer-protocol members through `validate_commit` /
  `validate_fetch` (the offsets themselves stay in the classic coordinator's store).

Server-side assignment, no global barrier: a membership or subscription change (or a change of
the partition count or id of a subscribed topic) bumps the group epoch; the next heartbeat
computes a new target assignment with the group's assignor (consumer_group_state.py), and
each member then reconciles towards its own target, one heartbeat at a time.

Not durable: groups live in memory only and come back empty after a restart. A member that
heartbeats with a non-zero epoch to a group we no longer know gets UNKNOWN_MEMBER_ID (Kafka,
whose groups survive restarts, answers GROUP_ID_NOT_FOUND, which clients treat as fatal) and
rejoins with epoch 0.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from eventyard.coordinator.consumer_group_state import (
    ASSIGNORS,
    LEAVE_EPOCH,
    NO_PARTITIONS,
    STATIC_LEAVE_EPOCH,
    Assignor,
    ConsumerGroup,
    ConsumerMember,
    Partitions,
    Refused,
    TopicsView,
    flatten,
    group_by_topic,
)
from eventyard.coordinator.group import MAX_GROUP_ID_LENGTH
from eventyard.coordinator.group_results import ListedGroup
from eventyard.protocol.error_codes import ErrorCode

__all__ = [
    "ConsumerGroup",
    "ConsumerGroupConfig",
    "ConsumerGroupCoordinator",
    "ConsumerGroupDescription",
    "ConsumerMember",
    "ConsumerMemberDescription",
    "Expired",
    "HeartbeatResult",
    "TopicsSource",
]

log = logging.getLogger(__name__)

PROTOCOL_TYPE = "consumer"
# Kafka answers INVALID_REQUEST ("GroupId can't be empty.") for the heartbeat; we follow the
# classic APIs. A one-line switch if a reference comparison wants Kafka's code.
EMPTY_GROUP_ID_ERROR = ErrorCode.INVALID_GROUP_ID

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


def _view(topics: TopicsSource) -> TopicsView:
    return topics() if callable(topics) else topics


def _kafka_uuid() -> str:
    """A random member id the way Kafka prints a Uuid: URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


class ConsumerGroupCoordinator:
    """All consumer-protocol (KIP-848) groups of one broker."""

    def __init__(
        self,
        config: ConsumerGroupConfig | None = None,
        *,
        is_classic_group: Callable[[str], bool] = lambda group_id: False,
        new_member_id: Callable[[], str] = _kafka_uuid,
    ) -> None:
        self.config = config or ConsumerGroupConfig()
        self.groups: dict[str, ConsumerGroup] = {}
        self._is_classic_group = is_classic_group
        self._new_member_id = new_member_id
        self._assignors = {a.name: a for a in self.config.assignors}
        self._assignor_names = [a.name for a in self.config.assignors]

    # ------------------------------------------------------------------------------------
    # ConsumerGroupHeartbeat

    def heartbeat(
        self,
        group_id: str,
        member_id: str,
        member_epoch: int,
        *,
        instance_id: str | None = None,
        rack_id: str | None = None,
        rebalance_timeout_ms: int = -1,
        subscribed_topic_names: Sequence[str] | None = None,
        subscribed_topic_regex: str | None = None,
        server_assignor: str | None = None,
        owned_partitions: Sequence[tuple[uuid.UUID, Sequence[int]]] | None = None,
        topics: TopicsSource,
        version: int = 1,
        client_id: str = "",
        client_host: str = "",
        now_ms: int,
    ) -> HeartbeatResult:
        """ConsumerGroupHeartbeat v0-1. None means "unchanged since the last heartbeat" for the
        optional fields, as on the wire. Epoch 0 joins (v0: an empty member id gets one
        generated), -1 leaves, -2 leaves for a static member that keeps its slot and partitions
        until its session times out."""
        try:
            self._validate(
                group_id, member_id, member_epoch, instance_id, rack_id, subscribed_topic_names,
                subscribed_topic_regex, server_assignor, owned_partitions, version,
            )  # fmt: skip
            group = self.groups.get(group_id)
            if group is None and self._is_classic_group(group_id):
                raise Refused(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")
            if group is not None:
                self._advance(group, now_ms)
            owned = None if owned_partitions is None else flatten(owned_partitions)
            if member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
                return self._leave(group, group_id, member_id, member_epoch, instance_id)
            if group is None:
                if member_epoch != 0:
                    raise Refused(ErrorCode.UNKNOWN_MEMBER_ID, f"Consumer group {group_id} not found.")
                group = ConsumerGroup(group_id)
            if not member_id:
                member_id = self._new_member_id()
            existing = group.find_member(member_id, member_epoch, instance_id, owned, self.config.max_size)
        except Refused as refused:
            return HeartbeatResult(refused.code, refused.message)

        if existing is None:
            timeout = (
                rebalance_timeout_ms
                if rebalance_timeout_ms >= 0
                else self.config.default_rebalance_timeout_ms
            )
            member = ConsumerMember(member_id, instance_id, timeout)
            old_topics: frozenset[str] | None = None
            group.add(member)
            self.groups[group_id] = group
            log.info("group %s: member %s joins (instance %s)", group_id, member_id, instance_id)
        else:
            member = existing
            old_topics = member.subscribed_topic_names
        old_assignor = group.preferred_assignor(self._assignor_names)
        old_assigned, old_epoch = member.assigned, member.epoch
        if rack_id is not None:
            member.rack_id = rack_id
        if rebalance_timeout_ms >= 0:
            member.rebalance_timeout_ms = rebalance_timeout_ms
        if server_assignor is not None:
            member.server_assignor = server_assignor
        if subscribed_topic_names is not None:
            member.subscribed_topic_names = frozenset(subscribed_topic_names)
        member.client_id, member.client_host = client_id, client_host

        bump = member.subscribed_topic_names != old_topics
        bump |= group.preferred_assignor(self._assignor_names) != old_assignor
        view = _view(topics)
        metadata = {name: view[name] for name in sorted(group.subscribed_topics()) if name in view}
        if metadata != group.subscription_metadata:
            # New partitions, or a topic created, deleted or recreated under a new id.
            group.subscription_metadata = metadata
            bump = True
        if bump:
            group.epoch += 1
            log.info("group %s: epoch %d", group_id, group.epoch)
        if group.epoch > group.assignment_epoch:
            group.assign(self._assignors[group.preferred_assignor(self._assignor_names)])
        if owned is not None or member_epoch == 0:
            member.reported_owned = owned or NO_PARTITIONS  # a (re)joining member owns nothing
        group.reconcile_member(member, now_ms)
        member.session_deadline = now_ms + self.config.session_timeout_ms

        full_request = rebalance_timeout_ms != -1 and subscribed_topic_names is not None and owned is not None
        # Kafka sends the assignment on a (re)join, a full request or a change; we also send it
        # when the member came with its previous epoch (it lost the response that had it).
        send = (
            member_epoch == 0 or full_request or member.assigned != old_assigned or member_epoch != old_epoch
        )
        return HeartbeatResult(
            ErrorCode.NONE,
            member_id=member.member_id,
            member_epoch=member.epoch,
            heartbeat_interval_ms=self.config.heartbeat_interval_ms,
            assignment=group_by_topic(member.assigned) if send else None,
        )

    def _validate(
        self,
        group_id: str,
        member_id: str,
        epoch: int,
        instance_id: str | None,
        rack_id: str | None,
        names: Sequence[str] | None,
        regex: str | None,
        assignor: str | None,
        owned: Sequence[tuple[uuid.UUID, Sequence[int]]] | None,
        version: int,
    ) -> None:
        invalid = ErrorCode.INVALID_REQUEST
        if not group_id.strip() or len(group_id) > MAX_GROUP_ID_LENGTH:
            raise Refused(EMPTY_GROUP_ID_ERROR, "GroupId can't be empty.")
        if (version >= 1 or epoch > 0 or epoch == LEAVE_EPOCH) and not member_id.strip():
            raise Refused(invalid, "MemberId can't be empty.")
        if instance_id is not None and not instance_id.strip():
            raise Refused(invalid, "InstanceId can't be empty.")
        if rack_id is not None and not rack_id.strip():
            raise Refused(invalid, "RackId can't be empty.")
        if epoch == 0:
            if owned:
                raise Refused(invalid, "TopicPartitions must be empty when (re-)joining.")
            if names is None and not regex:
                raise Refused(invalid, "SubscribedTopicNames must be set in first request.")
        elif epoch == STATIC_LEAVE_EPOCH and instance_id is None:
            raise Refused(invalid, "InstanceId can't be null.")
        elif epoch < STATIC_LEAVE_EPOCH:
            raise Refused(invalid, "MemberEpoch is invalid.")
        if regex:
            raise Refused(
                invalid, "SubscribedTopicRegex is not supported by this broker: subscribe to names."
            )
        if assignor is not None and assignor not in self._assignors:
            supported = ", ".join(self._assignor_names)
            raise Refused(
                ErrorCode.UNSUPPORTED_ASSIGNOR,
                f"ServerAssignor {assignor} is not supported. Supported assignors: {supported}.",
            )

    def _leave(
        self, group: ConsumerGroup | None, group_id: str, member_id: str, epoch: int, instance_id: str | None
    ) -> HeartbeatResult:
        if group is None:
            raise Refused(ErrorCode.UNKNOWN_MEMBER_ID, f"Consumer group {group_id} not found.")
        if instance_id is None:
            member = group.members.get(member_id)
            if member is None:
                raise Refused(ErrorCode.UNKNOWN_MEMBER_ID, f"Member {member_id} is not in group {group_id}.")
        else:
            current_id = group.static_members.get(instance_id)
            if current_id is None:
                raise Refused(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
            if current_id != member_id:
                raise Refused(
                    ErrorCode.FENCED_INSTANCE_ID,
                    f"Static member {member_id} with instance id {instance_id} was fenced by member "
                    f"{current_id}.",
                )
            member = group.members[current_id]
        if epoch == STATIC_LEAVE_EPOCH:
            # It keeps its assignment (nobody else gets it) until it is back or its session ends;
            # what it was revoking it has stopped using.
            group.set_partitions(member, member.assigned, NO_PARTITIONS)
            member.epoch = STATIC_LEAVE_EPOCH
            member.rebalance_deadline = None
            log.info("group %s: static member %s (%s) left for now", group_id, member_id, instance_id)
        else:
            self._remove_member(group, member, "left the group")
        return HeartbeatResult(ErrorCode.NONE, member_id=member_id, member_epoch=epoch)

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
        names = {topic_id: name for name, (topic_id, _) in _view(topics).items()}

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
