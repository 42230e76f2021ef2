"""The data of a KIP-848 consumer group and the rules a heartbeat applies to it.

`ConsumerGroup` / `ConsumerMember` hold a group's epochs, members, target assignment and who
holds which partition; `find_member` and `check_epoch` decide which member a heartbeat comes from
(or refuse it), `assign` computes a new target with an assignor (consumer_group_assignors.py) and
`reconcile_member` moves a member one step towards it (consumer_group_reconcile.py).

Plain data and pure functions; the entry points, timers and registry live in consumer_group.py
and consumer_group_registry.py. The names of the assignor and reconciliation modules are
re-exported here, where they were defined before those modules were split off.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from eventyard.coordinator.consumer_group_assignors import (
    ASSIGNORS,
    NO_PARTITIONS,
    Assignor,
    MemberSpec,
    Partitions,
    RangeAssignor,
    TopicPartition,
    TopicsView,
    UniformAssignor,
    flatten,
    group_by_topic,
)
from eventyard.coordinator.consumer_group_reconcile import MemberState, Reconciled, reconcile
from eventyard.protocol.error_codes import ErrorCode

__all__ = [
    "ASSIGNORS",
    "LEAVE_EPOCH",
    "NO_PARTITIONS",
    "STATIC_LEAVE_EPOCH",
    "Assignor",
    "ConsumerGroup",
    "ConsumerMember",
    "MemberSpec",
    "MemberState",
    "Partitions",
    "RangeAssignor",
    "Reconciled",
    "Refused",
    "TopicPartition",
    "TopicsView",
    "UniformAssignor",
    "check_epoch",
    "flatten",
    "group_by_topic",
    "reconcile",
]

log = logging.getLogger(__name__)

LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2


class Refused(Exception):
    """A request the group turns down with this error."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class ConsumerMember:
    member_id: str
    instance_id: str | None
    rebalance_timeout_ms: int
    subscribed_topic_names: frozenset[str] = frozenset()
    rack_id: str | None = None
    server_assignor: str | None = None
    client_id: str = ""
    client_host: str = ""
    epoch: int = 0
    # The epoch before the last bump: a heartbeat with it is accepted (the response was lost).
    previous_epoch: int = -1
    state: MemberState = MemberState.STABLE
    assigned: Partitions = NO_PARTITIONS
    pending_revocation: Partitions = NO_PARTITIONS
    # What it last said it owns: a heartbeat without owned partitions means "unchanged". (Kafka
    # reads null as "unknown", which stalls a client that skipped an assignment it never got to
    # use: its owned set never changes, so it never reports that it let go of it.)
    reported_owned: Partitions | None = None
    session_deadline: int = 0
    # Set while it must revoke partitions: it is removed if it has not by then.
    rebalance_deadline: int | None = None


@dataclass(slots=True)
class ConsumerGroup:
    group_id: str
    epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    target: dict[str, Partitions] = field(default_factory=dict)
    # Who holds each partition (assigned or pending revocation): it goes to nobody else meanwhile.
    owners: dict[TopicPartition, str] = field(default_factory=dict)
    # The subscribed topics that exist, as of the last heartbeat: a change bumps the epoch.
    subscription_metadata: dict[str, tuple[uuid.UUID, int]] = field(default_factory=dict)

    def state(self) -> str:
        if not self.members:
            return "Empty"
        if self.epoch > self.assignment_epoch:
            return "Assigning"
        for m in self.members.values():
            if m.state is not MemberState.STABLE or m.epoch != self.assignment_epoch:
                return "Reconciling"
        return "Stable"

    def subscribed_topics(self) -> set[str]:
        return {t for m in self.members.values() for t in m.subscribed_topic_names}

    def subscribed_topic_ids(self, member: ConsumerMember) -> frozenset[uuid.UUID]:
        meta = self.subscription_metadata
        return frozenset(meta[t][0] for t in member.subscribed_topic_names if t in meta)

    def preferred_assignor(self, names: Sequence[str]) -> str:
        """The assignor most members ask for (ties: the earlier configured), else the default."""
        counts = Counter(m.server_assignor for m in self.members.values() if m.server_assignor is not None)
        if not counts:
            return names[0]
        return max(counts, key=lambda name: (counts[name], -names.index(name)))

    def add(self, member: ConsumerMember) -> None:
        self.members[member.member_id] = member
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id

    def set_partitions(self, member: ConsumerMember, assigned: Partitions, pending: Partitions) -> None:
        for tp in member.assigned | member.pending_revocation:
            del self.owners[tp]
        member.assigned, member.pending_revocation = assigned, pending
        for tp in assigned | pending:
            self.owners[tp] = member.member_id

    def remove(self, member_id: str) -> ConsumerMember:
        member = self.members.pop(member_id)
        if member.instance_id is not None and self.static_members.get(member.instance_id) == member_id:
            del self.static_members[member.instance_id]
        self.target.pop(member_id, None)
        for tp in member.assigned | member.pending_revocation:
            del self.owners[tp]
        return member

    def rename(self, old: ConsumerMember, new_id: str) -> ConsumerMember:
        """A static member back under a new member id: it inherits the old one's partitions and
        target (KIP-848: a static member's restart moves nothing)."""
        new = dataclasses.replace(old, member_id=new_id, epoch=0, previous_epoch=0, rebalance_deadline=None)
        del self.members[old.member_id]
        self.add(new)
        if old.member_id in self.target:
            self.target[new_id] = self.target.pop(old.member_id)
        for tp in new.assigned | new.pending_revocation:
            self.owners[tp] = new_id
        return new

    # -- the rules of a heartbeat -----------------------------------------------------------

    def find_member(
        self,
        member_id: str,
        epoch: int,
        instance_id: str | None,
        owned: Partitions | None,
        max_size: int | None,
    ) -> ConsumerMember | None:
        """The member a heartbeat (epoch >= 0) comes from, or None for a new member (a join)."""
        if instance_id is None:
            member = self.members.get(member_id)
            if member is None:
                if epoch != 0:
                    raise Refused(
                        ErrorCode.UNKNOWN_MEMBER_ID, f"Member {member_id} is not in group {self.group_id}."
                    )
                self._check_capacity(max_size)
            elif epoch != 0:
                check_epoch(member, epoch, owned)
            # Epoch 0 from a known member: it rejoins having dropped everything (Kafka fences it
            # until its session expires); it simply gets its current assignment back.
            return member
        current_id = self.static_members.get(instance_id)
        existing = self.members[current_id] if current_id is not None else None
        if epoch == 0:
            other = self.members.get(member_id)
            if other is not None and other.instance_id != instance_id:
                raise Refused(ErrorCode.INVALID_REQUEST, f"Member {member_id} has another instance id.")
            if existing is None:
                self._check_capacity(max_size)
                return None
            if existing.epoch == STATIC_LEAVE_EPOCH:
                log.info("group %s: static member %s is back as %s", self.group_id, instance_id, member_id)
                return self.rename(existing, member_id)
            if existing.member_id == member_id:
                return existing  # the same member rejoining, as for a dynamic member
            raise Refused(
                ErrorCode.UNRELEASED_INSTANCE_ID,
                f"Static member {member_id} with instance id {instance_id} cannot join the group "
                f"because the instance id is owned by {existing.member_id} member.",
            )
        if existing is None:
            raise Refused(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
        if existing.member_id != member_id:
            raise Refused(
                ErrorCode.FENCED_INSTANCE_ID,
                f"Static member {member_id} with instance id {instance_id} was fenced by member "
                f"{existing.member_id}.",
            )
        check_epoch(existing, epoch, owned)
        return existing

    def _check_capacity(self, max_size: int | None) -> None:
        if max_size is not None and len(self.members) >= max_size:
            raise Refused(
                ErrorCode.GROUP_MAX_SIZE_REACHED,
                f"The consumer group has reached its maximum capacity of {max_size} members.",
            )

    def assign(self, assignor: Assignor) -> None:
        """A new target assignment, for the current group epoch."""
        meta = self.subscription_metadata
        specs = [
            MemberSpec(
                m.member_id,
                m.instance_id,
                frozenset(t for t in m.subscribed_topic_names if t in meta),
                self.target.get(m.member_id, NO_PARTITIONS),
            )
            for m in self.members.values()
        ]
        self.target = assignor.assign(specs, meta)
        self.assignment_epoch = self.epoch

    def reconcile_member(self, member: ConsumerMember, now_ms: int) -> None:
        """Move the member one step towards its target (see `reconcile`)."""
        step = reconcile(
            member_id=member.member_id,
            state=member.state,
            epoch=member.epoch,
            assigned=member.assigned,
            pending_revocation=member.pending_revocation,
            target_epoch=self.assignment_epoch,
            target=self.target.get(member.member_id, NO_PARTITIONS),
            subscribed_topic_ids=self.subscribed_topic_ids(member),
            owners=self.owners,
            owned=member.reported_owned,
        )
        if step == Reconciled(member.state, member.epoch, member.assigned, member.pending_revocation):
            return
        self.set_partitions(member, step.assigned, step.pending_revocation)
        if step.epoch != member.epoch:
            member.previous_epoch, member.epoch = member.epoch, step.epoch
        member.state = step.state
        revoking = step.state is MemberState.UNREVOKED_PARTITIONS
        member.rebalance_deadline = now_ms + member.rebalance_timeout_ms if revoking else None

    # -- consistency ---------------------------------------------------------------------

    def invariant_violations(self) -> list[str]:
        """Everything that is wrong with this group's bookkeeping (empty when consistent)."""
        problems: list[str] = []
        held: dict[TopicPartition, str] = {}
        for m in self.members.values():
            if m.assigned & m.pending_revocation:
                problems.append(f"{m.member_id} has partitions both assigned and pending revocation")
            for tp in m.assigned | m.pending_revocation:
                if tp in held:
                    problems.append(f"{tp} held by {held[tp]} and {m.member_id}")
                held[tp] = m.member_id
            if m.pending_revocation and m.state is not MemberState.UNREVOKED_PARTITIONS:
                problems.append(f"{m.member_id} revokes partitions in state {m.state}")
            if m.epoch > self.assignment_epoch:
                problems.append(f"{m.member_id} is ahead of the assignment epoch")
            if m.instance_id is not None and self.static_members.get(m.instance_id) != m.member_id:
                problems.append(f"static member {m.member_id} missing from the instance map")
        if held != self.owners:
            problems.append("the owners map does not match the members' partitions")
        if not self.target.keys() <= self.members.keys():
            problems.append("a target names a non-member")
        targeted = [tp for t in self.target.values() for tp in t]
        if len(targeted) != len(set(targeted)):
            problems.append("a partition is in two targets")
        if self.assignment_epoch > self.epoch:
            problems.append("the assignment epoch is ahead of the group epoch")
        return problems


def check_epoch(member: ConsumerMember, epoch: int, owned: Partitions | None) -> None:
    """FENCED_MEMBER_EPOCH unless `epoch` is the member's, or its previous one while it owns
    nothing beyond its assignment (the response that bumped it was lost)."""
    if epoch > member.epoch:
        relation = "greater"
    elif epoch < member.epoch and (
        epoch != member.previous_epoch or owned is None or not owned <= member.assigned
    ):
        relation = "smaller"
    else:
        return
    raise Refused(
        ErrorCode.FENCED_MEMBER_EPOCH,
        f"The consumer group member has a {relation} member epoch ({epoch}) than the one known by "
        f"the group coordinator ({member.epoch}). The member must abandon all its partitions and rejoin.",
    )
