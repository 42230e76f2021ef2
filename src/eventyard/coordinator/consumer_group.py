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
computes a new target assignment with the group's assignor (consumer_group_assignors.py), and
each member then reconciles towards its own target, one heartbeat at a time
(consumer_group_reconcile.py).

This module is the heartbeat: validating it, joining, leaving, and moving the member on. The
registry it extends (consumer_group_registry.py) has the timers, the offset checks and the admin
APIs; consumer_group_state.py the group's data and rules, consumer_group_results.py the answers.

Not durable: groups live in memory only and come back empty after a restart. A member that
heartbeats with a non-zero epoch to a group we no longer know gets UNKNOWN_MEMBER_ID (Kafka,
whose groups survive restarts, answers GROUP_ID_NOT_FOUND, which clients treat as fatal) and
rejoins with epoch 0.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Callable, Sequence

from eventyard.coordinator.consumer_group_assignors import NO_PARTITIONS, flatten, group_by_topic
from eventyard.coordinator.consumer_group_registry import (
    ConsumerGroupConfig,
    ConsumerGroupRegistry,
    TopicsSource,
    topics_view,
)
from eventyard.coordinator.consumer_group_results import (
    ConsumerGroupDescription,
    ConsumerMemberDescription,
    Expired,
    HeartbeatResult,
)
from eventyard.coordinator.consumer_group_state import (
    LEAVE_EPOCH,
    STATIC_LEAVE_EPOCH,
    ConsumerGroup,
    ConsumerMember,
    Refused,
)
from eventyard.coordinator.group_registry import MAX_GROUP_ID_LENGTH
from eventyard.protocol.error_codes import ErrorCode

# The results, the config and the group data are re-exported: this is where callers import them.
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

# Kafka answers INVALID_REQUEST ("GroupId can't be empty.") for the heartbeat; we follow the
# classic APIs. A one-line switch if a reference comparison wants Kafka's code.
EMPTY_GROUP_ID_ERROR = ErrorCode.INVALID_GROUP_ID


def _kafka_uuid() -> str:
    """A random member id the way Kafka prints a Uuid: URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


class ConsumerGroupCoordinator(ConsumerGroupRegistry):
    """All consumer-protocol (KIP-848) groups of one broker."""

    def __init__(
        self,
        config: ConsumerGroupConfig | None = None,
        *,
        is_classic_group: Callable[[str], bool] = lambda group_id: False,
        new_member_id: Callable[[], str] = _kafka_uuid,
    ) -> None:
        super().__init__(config, is_classic_group=is_classic_group)
        self._new_member_id = new_member_id

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
        view = topics_view(topics)
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
