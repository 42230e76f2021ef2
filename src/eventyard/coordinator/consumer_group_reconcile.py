"""How a KIP-848 member moves from its current assignment towards its target, one heartbeat at a time.

`reconcile` is the rule as KIP-848 describes it: partitions leave the target first (the member
must confirm it released them before anything else happens), and a partition another member
still holds is only handed over once that member has released it. A pure function of the
member's state, its target and who holds what; the group (consumer_group_state.py) applies it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from eventyard.coordinator.consumer_group_assignors import NO_PARTITIONS, Partitions, TopicPartition

__all__ = ["MemberState", "Reconciled", "reconcile"]


class MemberState(Enum):
    STABLE = "stable"
    # Waits for the member to confirm it released the partitions pending revocation.
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    # Some target partitions are still held by other members.
    UNRELEASED_PARTITIONS = "unreleased_partitions"


@dataclass(frozen=True, slots=True)
class Reconciled:
    state: MemberState
    epoch: int
    assigned: Partitions  # what the member is told it owns
    pending_revocation: Partitions  # what it must give up before it moves on


def reconcile(
    *,
    member_id: str,
    state: MemberState,
    epoch: int,
    assigned: Partitions,
    pending_revocation: Partitions,
    target_epoch: int,
    target: Partitions,
    subscribed_topic_ids: frozenset[uuid.UUID],
    owners: Mapping[TopicPartition, str],
    owned: Partitions | None,
) -> Reconciled:
    """The member's next step towards `target`. `owners` maps every partition held by some
    member (assigned or pending revocation) to that member; `owned` is what the member reported
    in this heartbeat (None: not reported, so it is assumed to still own everything)."""
    current = Reconciled(state, epoch, assigned, pending_revocation)
    if state is MemberState.STABLE and epoch == target_epoch:
        return current
    if state is MemberState.UNREVOKED_PARTITIONS and _still_owns(owned, pending_revocation):
        return current
    # A topic it no longer subscribes to is revoked even before the target says so.
    target = frozenset(tp for tp in target if tp[0] in subscribed_topic_ids)
    keep = assigned & target
    revoke = assigned - keep
    if revoke and _still_owns(owned, revoke):
        # Revocation first: the member keeps its epoch until it confirms the release.
        return Reconciled(MemberState.UNREVOKED_PARTITIONS, epoch, keep, revoke)
    wanted = target - keep
    # Free, or held by this member itself (pending revocation it has just confirmed).
    available = frozenset(tp for tp in wanted if owners.get(tp, member_id) == member_id)
    state = MemberState.UNRELEASED_PARTITIONS if available != wanted else MemberState.STABLE
    return Reconciled(state, target_epoch, keep | available, NO_PARTITIONS)


def _still_owns(owned: Partitions | None, partitions: Partitions) -> bool:
    return owned is None or not owned.isdisjoint(partitions)
