"""Partitions as KIP-848 groups handle them, and the server-side assignors that compute targets.

Partitions are (topic id, partition) pairs; an assignment is a frozenset of them (`Partitions`),
and `group_by_topic` / `flatten` convert to and from the wire shape.

An `Assignor` turns the members' subscriptions (and their previous target, for stickiness) into a
target assignment: "uniform" (balanced and sticky, the default) and "range" (per topic,
contiguous ranges, like the classic range assignor). Pure functions of their input: the group
(consumer_group_state.py) decides when to call one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ASSIGNORS",
    "NO_PARTITIONS",
    "Assignor",
    "MemberSpec",
    "Partitions",
    "RangeAssignor",
    "TopicPartition",
    "TopicsView",
    "UniformAssignor",
    "flatten",
    "group_by_topic",
]

TopicPartition = tuple[uuid.UUID, int]
Partitions = frozenset[TopicPartition]
# What the assignors know of a topic: its name -> (topic id, partition count).
TopicsView = Mapping[str, tuple[uuid.UUID, int]]

NO_PARTITIONS: Partitions = frozenset()


def group_by_topic(partitions: Iterable[TopicPartition]) -> list[tuple[uuid.UUID, list[int]]]:
    """The wire shape of an assignment: [(topic id, sorted partitions)], sorted by topic id."""
    by_topic: dict[uuid.UUID, list[int]] = {}
    for topic_id, partition in partitions:
        by_topic.setdefault(topic_id, []).append(partition)
    return [(topic_id, sorted(by_topic[topic_id])) for topic_id in sorted(by_topic)]


def flatten(topic_partitions: Iterable[tuple[uuid.UUID, Iterable[int]]]) -> Partitions:
    return frozenset((topic_id, p) for topic_id, partitions in topic_partitions for p in partitions)


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """One member as an assignor sees it."""

    member_id: str
    instance_id: str | None
    topics: frozenset[str]  # subscribed topics that exist (keys of the TopicsView)
    current: Partitions  # its current target: the assignor keeps what it can of it


class Assignor(Protocol):
    @property
    def name(self) -> str: ...

    def assign(self, members: Sequence[MemberSpec], topics: TopicsView) -> dict[str, Partitions]:
        """A target for every member (possibly empty); no partition goes to two members."""
        ...


def _partitions_of(topics: TopicsView, names: Iterable[str]) -> list[TopicPartition]:
    out: list[TopicPartition] = []
    for name in sorted(names):
        topic_id, count = topics[name]
        out.extend((topic_id, p) for p in range(count))
    return out


class UniformAssignor:
    """Spreads partitions so that member loads differ by at most one where subscriptions allow.

    Sticky: a member keeps the partitions of its previous target that it still subscribes to,
    then unassigned partitions go to the least loaded eligible member, then partitions move
    one at a time from the most to the least loaded members until no move helps.
    """

    name = "uniform"

    def assign(self, members: Sequence[MemberSpec], topics: TopicsView) -> dict[str, Partitions]:
        ordered = sorted(members, key=lambda m: m.member_id)
        eligible = {m.member_id: frozenset(topics[t][0] for t in m.topics) for m in ordered}
        subscribers: dict[uuid.UUID, list[str]] = {}
        for m in ordered:
            for topic_id in eligible[m.member_id]:
                subscribers.setdefault(topic_id, []).append(m.member_id)
        valid = set(_partitions_of(topics, {t for m in ordered for t in m.topics}))
        load: dict[str, set[TopicPartition]] = {m.member_id: set() for m in ordered}
        taken: set[TopicPartition] = set()
        for m in ordered:
            for tp in sorted(m.current):
                if tp in valid and tp not in taken and tp[0] in eligible[m.member_id]:
                    load[m.member_id].add(tp)
                    taken.add(tp)
        # Partitions with the fewest candidates first, so that narrow subscriptions get served.
        free = sorted(valid - taken, key=lambda tp: (len(subscribers[tp[0]]), tp))
        for tp in free:
            member_id = min(subscribers[tp[0]], key=lambda m: (len(load[m]), m))
            load[member_id].add(tp)
        self._balance(load, eligible)
        return {member_id: frozenset(tps) for member_id, tps in load.items()}

    @staticmethod
    def _balance(load: dict[str, set[TopicPartition]], eligible: dict[str, frozenset[uuid.UUID]]) -> None:
        # Every move goes from a member with n partitions to one with at most n - 2, which
        # strictly lowers the sum of squared loads: the loop ends.
        while True:
            by_load = sorted(load, key=lambda m: (len(load[m]), m))
            moved = False
            for donor in reversed(by_load):
                for receiver in by_load:
                    if len(load[receiver]) >= len(load[donor]) - 1:
                        break
                    movable = [tp for tp in load[donor] if tp[0] in eligible[receiver]]
                    if movable:
                        tp = max(movable)
                        load[donor].discard(tp)
                        load[receiver].add(tp)
                        moved = True
                        break
                if moved:
                    break
            if not moved:
                return


class RangeAssignor:
    """Per topic, the subscribed members (static ones first, by instance id) get contiguous
    ranges; the first (partitions % members) get one partition more. Not sticky."""

    name = "range"

    def assign(self, members: Sequence[MemberSpec], topics: TopicsView) -> dict[str, Partitions]:
        result: dict[str, set[TopicPartition]] = {m.member_id: set() for m in members}
        for name in sorted({t for m in members for t in m.topics}):
            topic_id, count = topics[name]
            subscribed = sorted(
                (m for m in members if name in m.topics),
                key=lambda m: (m.instance_id is None, m.instance_id or "", m.member_id),
            )
            per_member, extra = divmod(count, len(subscribed))
            start = 0
            for i, m in enumerate(subscribed):
                n = per_member + (1 if i < extra else 0)
                result[m.member_id].update((topic_id, p) for p in range(start, start + n))
                start += n
        return {member_id: frozenset(tps) for member_id, tps in result.items()}


ASSIGNORS: tuple[Assignor, ...] = (UniformAssignor(), RangeAssignor())
