"""The classic group coordinator, driven with a fake clock (plain integers)."""

from __future__ import annotations

import dataclasses
import itertools
import struct
from collections.abc import Sequence
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventyard.coordinator.group import (
    GroupConfig,
    GroupCoordinator,
    GroupDeleted,
    GroupMetadata,
    JoinResult,
    Kind,
    OffsetCommitted,
    OffsetDeleted,
    Outcome,
    Pending,
    Record,
    SyncResult,
)
from eventyard.coordinator.group_state import Group, GroupState, decode_subscription_topics
from eventyard.protocol.error_codes import ErrorCode

R = TypeVar("R")
Key = tuple[str, str, Kind]

G = "orders"
SESSION = 10_000
REBALANCE = 30_000
ERR = ErrorCode


def subscription(*topics: str) -> bytes:
    """A ConsumerProtocolSubscription v0: version, topics, null user data."""
    out = struct.pack(">hi", 0, len(topics))
    for topic in topics:
        out += struct.pack(">h", len(topic)) + topic.encode()
    return out + struct.pack(">i", -1)


RANGE = [("range", subscription("t1"))]


class Caller:
    """Plays the network layer: parks Pending requests, checks that every Completion answers a
    parked request, keeps the records, and checks the groups' consistency after every call."""

    def __init__(self, config: GroupConfig | None = None) -> None:
        counter = itertools.count(1)
        self.c = GroupCoordinator(config, new_uuid=lambda: f"u{next(counter)}")
        self.parked: set[Key] = set()
        self.answers: dict[Key, JoinResult | SyncResult] = {}
        self.records: list[Record] = []

    def absorb(self, outcome: Outcome[R]) -> R:
        for completion in outcome.completions:
            key = (completion.group_id, completion.member_id, completion.kind)
            assert key in self.parked, f"completion nobody waits for: {completion}"
            self.parked.discard(key)
            self.answers[key] = completion.response
        self.records.extend(outcome.records)
        if isinstance(outcome.response, Pending):
            p = outcome.response
            self.parked.add((p.group_id, p.member_id, p.kind))
        self.check()
        return outcome.response

    def check(self) -> None:
        for group in self.c.groups.values():
            assert group.invariant_violations() == [], group.invariant_violations()
        for group_id, member_id, kind in self.parked:
            # A parked request must belong to a member still waiting, or it would hang forever.
            member = self.c.groups[group_id].members[member_id]
            assert member.awaiting_join if kind is Kind.JOIN else member.awaiting_sync

    def join(
        self,
        member_id: str = "",
        *,
        now: int,
        group: str = G,
        protocols: Sequence[tuple[str, bytes]] = RANGE,
        protocol_type: str = "consumer",
        instance: str | None = None,
        client: str = "client",
        require_known: bool = False,
        skip: bool = True,
        session: int = SESSION,
        rebalance: int = REBALANCE,
    ) -> JoinResult | Pending:
        return self.absorb(
            self.c.join(
                group,
                member_id,
                protocol_type=protocol_type,
                protocols=protocols,
                session_timeout_ms=session,
                rebalance_timeout_ms=rebalance,
                group_instance_id=instance,
                client_id=client,
                client_host="/127.0.0.1",
                require_known_member_id=require_known,
                supports_skip_assignment=skip,
                now_ms=now,
            )
        )

    def sync(
        self,
        member_id: str,
        generation: int,
        *,
        now: int,
        assignments: Sequence[tuple[str, bytes]] = (),
        instance: str | None = None,
        protocol_name: str | None = None,
    ) -> SyncResult | Pending:
        outcome = self.c.sync(
            G,
            member_id,
            generation,
            group_instance_id=instance,
            protocol_type="consumer",
            protocol_name=protocol_name,
            assignments=assignments,
            now_ms=now,
        )
        return self.absorb(outcome)

    def heartbeat(
        self, member_id: str, generation: int, *, now: int, instance: str | None = None
    ) -> ErrorCode:
        return self.absorb(self.c.heartbeat(G, member_id, generation, group_instance_id=instance, now_ms=now))

    def tick(self, now: int) -> None:
        self.absorb(self.c.tick(now))

    def answer(self, member_id: str, kind: Kind, group: str = G) -> JoinResult | SyncResult:
        return self.answers.pop((group, member_id, kind))

    def joined(self, member_id: str) -> JoinResult:
        result = self.answer(member_id, Kind.JOIN)
        assert isinstance(result, JoinResult)
        return result

    def synced(self, member_id: str) -> SyncResult:
        result = self.answer(member_id, Kind.SYNC)
        assert isinstance(result, SyncResult)
        return result

    def group(self, group_id: str = G) -> Group:
        return self.c.groups[group_id]


def immediate_join(caller: Caller, member_id: str = "", **kw: object) -> JoinResult:
    result = caller.join(member_id, **kw)  # type: ignore[arg-type]
    assert isinstance(result, JoinResult), result
    return result


def immediate_sync(caller: Caller, member_id: str, generation: int, **kw: object) -> SyncResult:
    result = caller.sync(member_id, generation, **kw)  # type: ignore[arg-type]
    assert isinstance(result, SyncResult), result
    return result


def pending(result: object) -> Pending:
    assert isinstance(result, Pending), result
    return result


def stable_group(caller: Caller, n: int, *, now: int = 0) -> list[str]:
    """n dynamic members, Stable: at generation 1 for a lone member, else at generation 2 (the
    first member's lone generation is superseded when the others join)."""
    first = immediate_join(caller, now=now, client="m0")
    ids = [first.member_id]
    for i in range(1, n):
        ids.append(pending(caller.join(now=now, client=f"m{i}")).member_id)
    if n > 1:
        # Everyone else was added with a rebalance the first member must rejoin.
        immediate_join(caller, ids[0], now=now)
    generation = caller.group().generation
    assignments = [(m, f"assignment-{m}".encode()) for m in ids]
    for m in ids[1:]:
        assert caller.joined(m).generation_id == generation
        pending(caller.sync(m, generation, now=now))
    immediate_sync(caller, ids[0], generation, now=now, assignments=assignments)
    for m in ids[1:]:
        assert caller.synced(m).assignment == f"assignment-{m}".encode()
    assert caller.group().state is GroupState.STABLE
    return ids


# -- joining -----------------------------------------------------------------------------------


def test_lone_member_gets_its_first_assignment_without_waiting() -> None:
    caller = Caller()
    required = immediate_join(caller, now=0, require_known=True, client="solo")
    assert required.error_code == ERR.MEMBER_ID_REQUIRED
    assert required.member_id == "solo-u1"
    joined = immediate_join(caller, "solo-u1", now=1, require_known=True)
    assert joined.error_code == ERR.NONE
    assert (joined.generation_id, joined.leader, joined.protocol_name) == (1, "solo-u1", "range")
    assert [m.member_id for m in joined.members] == ["solo-u1"]
    assert joined.members[0].metadata == RANGE[0][1]
    synced = immediate_sync(caller, "solo-u1", 1, now=2, assignments=[("solo-u1", b"\x00\x01raw")])
    assert synced == SyncResult(ERR.NONE, "consumer", "range", b"\x00\x01raw")
    assert caller.group().state is GroupState.STABLE


def test_lone_member_waits_no_longer_than_the_initial_delay() -> None:
    caller = Caller(GroupConfig(initial_rebalance_delay_ms=3000))
    member = pending(caller.join(now=100)).member_id
    assert caller.group().state is GroupState.PREPARING_REBALANCE
    assert caller.c.next_deadline() == 3100
    caller.tick(3099)
    assert caller.parked
    caller.tick(3100)
    result = caller.joined(member)
    assert (result.error_code, result.generation_id, result.leader) == (ERR.NONE, 1, member)


def test_initial_delay_is_extended_while_members_keep_arriving() -> None:
    caller = Caller(GroupConfig(initial_rebalance_delay_ms=3000))
    a = pending(caller.join(now=0, client="a")).member_id
    b = pending(caller.join(now=1000, client="b")).member_id
    caller.tick(3000)  # b arrived during the delay: one more delay
    assert caller.parked and caller.c.next_deadline() == 6000
    caller.tick(6000)
    assert caller.joined(a).generation_id == caller.joined(b).generation_id == 1


def test_three_members_join_and_sync() -> None:
    caller = Caller(GroupConfig(initial_rebalance_delay_ms=100))
    protocols = {
        "a": [("range", subscription("t1")), ("roundrobin", subscription("t1"))],
        "b": [("range", subscription("t2"))],
        "c": [("roundrobin", subscription("t3")), ("range", subscription("t3"))],
    }
    ids = {
        name: pending(caller.join(now=i, client=name, protocols=p)).member_id
        for i, (name, p) in enumerate(protocols.items())
    }
    caller.tick(100)
    caller.tick(200)
    results = {name: caller.joined(m) for name, m in ids.items()}
    leader = ids["a"]
    # Only "range" is supported by all, so it wins whatever each member prefers.
    for name, result in results.items():
        assert (result.error_code, result.generation_id, result.leader) == (ERR.NONE, 1, leader)
        assert result.protocol_name == "range"
        if name == "a":
            assert {m.member_id: m.metadata for m in result.members} == {
                ids[n]: subscription(f"t{i + 1}") for i, n in enumerate("abc")
            }
        else:
            assert result.members == ()
    pending(caller.sync(ids["b"], 1, now=300))
    pending(caller.sync(ids["c"], 1, now=301))
    assignments = [(m, f"\xff{name}".encode("latin-1")) for name, m in ids.items()]
    own = immediate_sync(caller, leader, 1, now=302, assignments=assignments)
    assert own.assignment == "\xffa".encode("latin-1")
    assert caller.synced(ids["b"]).assignment == "\xffb".encode("latin-1")
    assert caller.synced(ids["c"]).assignment == "\xffc".encode("latin-1")
    assert caller.group().state is GroupState.STABLE
    stable = [r for r in caller.records if isinstance(r, GroupMetadata)]
    assert stable[-1].state == "Stable" and stable[-1].generation == 1


def test_protocol_is_chosen_by_votes() -> None:
    caller = Caller(GroupConfig(initial_rebalance_delay_ms=10))
    both = [("roundrobin", b""), ("range", b"")]
    for client, protocols in [("a", both), ("b", both[::-1]), ("c", both)]:
        caller.join(now=0, client=client, protocols=protocols)
    caller.tick(100)
    assert caller.group().protocol_name == "roundrobin"


def test_member_id_required_round_trip_and_expiry_of_unused_ids() -> None:
    caller = Caller()
    first = immediate_join(caller, now=0, require_known=True, client="x")
    assert first.error_code == ERR.MEMBER_ID_REQUIRED
    assert caller.group().pending_members == {"x-u1": SESSION}
    caller.tick(SESSION)  # never came back: the id is forgotten
    assert "x-u1" not in caller.group().pending_members
    assert immediate_join(caller, "x-u1", now=SESSION + 1).error_code == ERR.UNKNOWN_MEMBER_ID
    static = immediate_join(caller, now=SESSION + 2, require_known=True, instance="i-1")
    assert static.error_code == ERR.NONE  # static members skip the round trip
    assert static.member_id == "i-1-u2"


def test_pending_member_id_holds_the_rebalance_until_it_rejoins() -> None:
    caller = Caller()
    a, b = stable_group(caller, 2)
    required = immediate_join(caller, now=10, require_known=True, client="n")
    pending(caller.join(a, now=11))  # the leader rejoins: a rebalance begins
    pending(caller.join(b, now=12))
    assert caller.group().state is GroupState.PREPARING_REBALANCE  # still waiting for "n"
    last = immediate_join(caller, required.member_id, now=13, require_known=True)
    assert {caller.joined(a).generation_id, caller.joined(b).generation_id, last.generation_id} == {3}


def test_lost_join_response_is_answered_again_while_completing() -> None:
    caller = Caller(GroupConfig(initial_rebalance_delay_ms=10))
    a = pending(caller.join(now=0, client="a")).member_id
    b = pending(caller.join(now=0, client="b")).member_id
    caller.tick(100)
    first = caller.joined(b)
    again = immediate_join(caller, b, now=20)
    assert again == first
    assert immediate_join(caller, a, now=21).members  # the leader gets the members again
    assert caller.group().state is GroupState.COMPLETING_REBALANCE


def test_follower_rejoining_stable_with_same_metadata_keeps_the_generation() -> None:
    caller = Caller()
    _, b = stable_group(caller, 2)
    result = immediate_join(caller, b, now=50)
    assert (result.generation_id, result.members) == (2, ())
    assert caller.group().state is GroupState.STABLE


def test_inconsistent_group_protocol() -> None:
    caller = Caller()
    stable_group(caller, 1)
    assert (
        immediate_join(caller, now=1, protocol_type="connect").error_code == ERR.INCONSISTENT_GROUP_PROTOCOL
    )
    other = [("roundrobin", b"")]
    assert immediate_join(caller, now=1, protocols=other).error_code == ERR.INCONSISTENT_GROUP_PROTOCOL
    assert (
        immediate_join(caller, now=1, group="new", protocols=[]).error_code == ERR.INCONSISTENT_GROUP_PROTOCOL
    )
    assert immediate_join(caller, now=1, group="new", protocol_type="").error_code == (
        ERR.INCONSISTENT_GROUP_PROTOCOL
    )
    assert "new" not in caller.c.groups  # a failed first join leaves no group behind
    assert caller.group().state is GroupState.STABLE
    member = next(iter(caller.group().members))
    wrong = immediate_sync(caller, member, 1, now=2, protocol_name="roundrobin")
    assert wrong.error_code == ERR.INCONSISTENT_GROUP_PROTOCOL


def test_joining_a_rebalance_that_everyone_left() -> None:
    caller = Caller(GroupConfig(initial_rebalance_delay_ms=3000))
    first = pending(caller.join(now=0, client="a")).member_id
    caller.absorb(caller.c.leave(G, [(first, None)], now_ms=10))
    assert caller.joined(first).error_code == ERR.UNKNOWN_MEMBER_ID
    assert caller.group().state is GroupState.PREPARING_REBALANCE and not caller.group().members
    other = pending(caller.join(now=20, client="b", protocols=[("roundrobin", b"")])).member_id
    caller.tick(6000)  # b arrived during the initial delay, so it ran twice
    assert caller.joined(other).protocol_name == "roundrobin"


def test_invalid_group_id_and_session_timeout() -> None:
    caller = Caller()
    assert immediate_join(caller, now=0, group="").error_code == ERR.INVALID_GROUP_ID
    assert caller.c.sync("", "m", 1, now_ms=0).response.error_code == ERR.INVALID_GROUP_ID
    assert caller.c.heartbeat("", "m", 1, now_ms=0).response == ERR.INVALID_GROUP_ID
    assert caller.c.leave("", [("m", None)], now_ms=0).response.error_code == ERR.INVALID_GROUP_ID
    assert immediate_join(caller, now=0, session=1000).error_code == ERR.INVALID_SESSION_TIMEOUT
    assert immediate_join(caller, now=0, session=2_000_000).error_code == ERR.INVALID_SESSION_TIMEOUT
    assert caller.c.groups == {}


def test_unknown_member_on_join_of_a_missing_group() -> None:
    caller = Caller()
    assert immediate_join(caller, "ghost", now=0).error_code == ERR.UNKNOWN_MEMBER_ID
    assert caller.c.groups == {}


def test_group_max_size() -> None:
    caller = Caller(GroupConfig(max_size=2))
    stable_group(caller, 2)
    full = immediate_join(caller, now=5)
    assert (full.error_code, full.member_id) == (ERR.GROUP_MAX_SIZE_REACHED, "")
    assert len(caller.group().members) == 2


# -- timeouts ----------------------------------------------------------------------------------


def test_member_that_stops_heartbeating_is_removed_and_a_rebalance_follows() -> None:
    caller = Caller()
    a, b = stable_group(caller, 2, now=0)
    for now in range(3000, 10_000, 3000):
        assert caller.heartbeat(b, 2, now=now) == ERR.NONE
    # a's session (10s from its sync at 0) runs out at 10_000 while b keeps heartbeating.
    assert caller.heartbeat(b, 2, now=12_000) == ERR.REBALANCE_IN_PROGRESS
    assert a not in caller.group().members
    assert caller.group().state is GroupState.PREPARING_REBALANCE
    rejoined = immediate_join(caller, b, now=12_001)
    assert (rejoined.generation_id, rejoined.leader) == (3, b)
    assert caller.heartbeat(a, 2, now=12_002) == ERR.UNKNOWN_MEMBER_ID


def test_expiry_happens_at_the_deadline_even_if_tick_is_late() -> None:
    caller = Caller()
    a, _ = stable_group(caller, 2, now=0)
    assert caller.c.next_deadline() == SESSION
    caller.tick(SESSION * 5)  # both expired long ago; the group is empty again
    assert caller.group().state is GroupState.EMPTY
    assert caller.group().state_since_ms == SESSION  # as of the expiry, not of the late tick
    assert caller.heartbeat(a, 2, now=SESSION * 5) == ERR.UNKNOWN_MEMBER_ID


def test_member_that_does_not_rejoin_within_the_rebalance_timeout_is_dropped() -> None:
    caller = Caller()
    a, b = stable_group(caller, 2, now=0)
    pending(caller.join(a, now=1000))  # the leader rejoins: everyone must
    assert caller.heartbeat(b, 2, now=2000) == ERR.REBALANCE_IN_PROGRESS
    assert caller.group().join_deadline == 1000 + REBALANCE
    for now in range(5000, 1000 + REBALANCE, 5000):
        assert caller.heartbeat(b, 2, now=now) == ERR.REBALANCE_IN_PROGRESS  # alive, but not rejoining
    caller.tick(1000 + REBALANCE)
    result = caller.joined(a)
    assert (result.generation_id, [m.member_id for m in result.members]) == (3, [a])
    assert b not in caller.group().members
    assert caller.heartbeat(b, 2, now=1000 + REBALANCE) == ERR.UNKNOWN_MEMBER_ID


def test_new_member_dropped_when_its_join_waits_too_long() -> None:
    caller = Caller(GroupConfig(new_member_join_timeout_ms=5_000))
    a, _ = stable_group(caller, 2)
    newcomer = pending(caller.join(now=100, client="n")).member_id
    caller.heartbeat(a, 2, now=4000)
    caller.tick(5100)
    result = caller.joined(newcomer)
    assert (result.error_code, result.member_id) == (ERR.UNKNOWN_MEMBER_ID, "")
    assert newcomer not in caller.group().members


def test_leader_that_never_syncs_is_removed_and_waiting_members_must_rejoin() -> None:
    caller = Caller(GroupConfig(initial_rebalance_delay_ms=10))
    a = pending(caller.join(now=0, client="a")).member_id
    b = pending(caller.join(now=0, client="b")).member_id
    caller.tick(100)  # b arrived during the initial delay, which ran twice: done at 20
    caller.joined(a)
    caller.joined(b)
    pending(caller.sync(b, 1, now=120))
    for now in range(5000, 20 + REBALANCE, 5000):
        # Heartbeats are fine while completing; the leader stays alive but never syncs.
        assert caller.heartbeat(a, 1, now=now) == ERR.NONE
        assert caller.heartbeat(b, 1, now=now) == ERR.NONE
    caller.tick(20 + REBALANCE)
    assert caller.synced(b).error_code == ERR.REBALANCE_IN_PROGRESS
    assert a not in caller.group().members
    assert immediate_join(caller, b, now=20 + REBALANCE + 1).generation_id == 2


# -- static membership -------------------------------------------------------------------------


def static_group(caller: Caller, protocols: Sequence[tuple[str, bytes]] = RANGE) -> tuple[str, str]:
    a = immediate_join(caller, now=0, instance="inst-a", protocols=protocols).member_id
    b = pending(caller.join(now=0, instance="inst-b", protocols=protocols)).member_id
    immediate_join(caller, a, now=0, instance="inst-a", protocols=protocols)
    caller.joined(b)
    pending(caller.sync(b, 2, now=1, instance="inst-b"))
    immediate_sync(caller, a, 2, now=1, instance="inst-a", assignments=[(a, b"A"), (b, b"B")])
    caller.synced(b)
    return a, b


def test_static_member_restart_replaces_it_without_a_rebalance_and_fences_the_old_id() -> None:
    caller = Caller()
    a, b = static_group(caller)
    records_before = len(caller.records)
    restarted = immediate_join(caller, now=500, instance="inst-b")
    new_b = restarted.member_id
    assert new_b != b and new_b.startswith("inst-b-")
    assert (restarted.error_code, restarted.generation_id, restarted.leader) == (ERR.NONE, 2, a)
    assert restarted.members == () and not restarted.skip_assignment
    assert caller.group().state is GroupState.STABLE
    assert any(isinstance(r, GroupMetadata) for r in caller.records[records_before:])
    # The old incarnation is fenced everywhere; the new one carries on with the old assignment.
    assert caller.heartbeat(b, 2, now=600, instance="inst-b") == ERR.FENCED_INSTANCE_ID
    assert immediate_sync(caller, b, 2, now=600, instance="inst-b").error_code == ERR.FENCED_INSTANCE_ID
    commit = caller.c.commit(G, b, 2, [("t1", 0, 5, -1, None)], group_instance_id="inst-b", now_ms=600)
    assert commit.response[0].error_code == ERR.FENCED_INSTANCE_ID
    assert caller.heartbeat(new_b, 2, now=600, instance="inst-b") == ERR.NONE
    assert immediate_sync(caller, new_b, 2, now=600, instance="inst-b").assignment == b"B"
    assert caller.heartbeat(a, 2, now=600, instance="inst-a") == ERR.NONE


def test_static_leader_restart_is_told_to_skip_assignment() -> None:
    caller = Caller()
    _, b = static_group(caller)
    restarted = immediate_join(caller, now=500, instance="inst-a")
    assert restarted.leader == restarted.member_id and restarted.skip_assignment
    assert {m.member_id for m in restarted.members} == {restarted.member_id, b}
    old_clients = immediate_join(caller, now=600, instance="inst-a", skip=False)
    # Before v9 the leader cannot skip assigning: it is told the previous id leads.
    assert old_clients.leader == restarted.member_id != old_clients.member_id
    assert old_clients.members == ()
    assert caller.group().state is GroupState.STABLE


def test_static_member_restart_with_a_new_protocol_rebalances() -> None:
    caller = Caller()
    both = [("range", b""), ("roundrobin", b"")]
    a, _ = static_group(caller, both)
    # New metadata that keeps "range" selectable changes nothing: no rebalance.
    same = immediate_join(
        caller, now=400, instance="inst-b", protocols=[("range", b"v2"), ("roundrobin", b"")]
    )
    assert same.generation_id == 2 and caller.group().state is GroupState.STABLE
    # Dropping "range" changes the selected protocol: the group must rebalance.
    new_b = pending(caller.join(now=500, instance="inst-b", protocols=[("roundrobin", b"")])).member_id
    assert caller.group().state is GroupState.PREPARING_REBALANCE
    assert immediate_join(caller, a, now=501, instance="inst-a", protocols=both).protocol_name == "roundrobin"
    assert caller.joined(new_b).generation_id == 3


def test_static_restart_while_its_join_is_parked_fences_the_parked_request() -> None:
    caller = Caller()
    a, b = static_group(caller)
    pending(caller.join(a, now=100, instance="inst-a"))  # leader rejoin: rebalance
    new_a = pending(caller.join(now=102, instance="inst-a")).member_id
    old = caller.joined(a)
    assert old.error_code == ERR.FENCED_INSTANCE_ID
    assert immediate_join(caller, b, now=103, instance="inst-b").generation_id == 3
    assert caller.joined(new_a).generation_id == 3


def test_static_member_that_does_not_rejoin_keeps_its_place_until_its_session_ends() -> None:
    caller = Caller()
    a, b = static_group(caller)
    pending(caller.join(a, now=100, instance="inst-a"))
    for now in range(5000, 100 + REBALANCE, 5000):
        assert caller.heartbeat(b, 2, now=now, instance="inst-b") == ERR.REBALANCE_IN_PROGRESS
    caller.tick(100 + REBALANCE)
    # b is static: not dropped at the rebalance timeout, so the group moves on with it.
    result = caller.joined(a)
    assert {m.member_id for m in result.members} == {a, b}
    assert b in caller.group().members


def test_admin_removal_of_a_static_member_by_instance_id() -> None:
    caller = Caller()
    _, b = static_group(caller)
    left = caller.absorb(caller.c.leave(G, [("", "inst-b"), ("", "inst-zzz")], now_ms=10))
    assert [m.error_code for m in left.members] == [ERR.NONE, ERR.UNKNOWN_MEMBER_ID]
    assert b not in caller.group().members and "inst-b" not in caller.group().static_members


# -- heartbeat / sync / commit errors ----------------------------------------------------------


def test_errors_on_heartbeat_sync_and_commit() -> None:
    caller = Caller()
    assert caller.heartbeat("ghost", 0, now=0) == ERR.UNKNOWN_MEMBER_ID  # no group at all
    a, b = stable_group(caller, 2)
    assert caller.heartbeat("ghost", 2, now=1) == ERR.UNKNOWN_MEMBER_ID
    assert caller.heartbeat(a, 1, now=1) == ERR.ILLEGAL_GENERATION
    assert caller.heartbeat(a, 2, now=1, instance="nope") == ERR.UNKNOWN_MEMBER_ID
    assert immediate_sync(caller, "ghost", 2, now=1).error_code == ERR.UNKNOWN_MEMBER_ID
    assert immediate_sync(caller, a, 7, now=1).error_code == ERR.ILLEGAL_GENERATION

    def commit(member: str, generation: int, now: int) -> ErrorCode:
        outcome = caller.c.commit(G, member, generation, [("t1", 0, 1, -1, "")], now_ms=now)
        return caller.absorb(outcome)[0].error_code

    assert commit("ghost", 2, 1) == ERR.UNKNOWN_MEMBER_ID
    assert commit(a, 1, 1) == ERR.ILLEGAL_GENERATION
    assert commit("", -1, 1) == ERR.UNKNOWN_MEMBER_ID  # standalone commits need an empty group
    assert commit(a, 2, 1) == ERR.NONE

    pending(caller.join(a, now=2))  # Preparing
    assert caller.heartbeat(b, 2, now=3) == ERR.REBALANCE_IN_PROGRESS
    assert immediate_sync(caller, b, 2, now=3).error_code == ERR.REBALANCE_IN_PROGRESS
    assert commit(b, 2, 3) == ERR.NONE  # the old generation may still commit while preparing
    immediate_join(caller, b, now=4)  # everyone rejoined: Completing, generation 3
    assert caller.group().state is GroupState.COMPLETING_REBALANCE
    assert caller.heartbeat(b, 3, now=5) == ERR.NONE
    assert commit(b, 3, 5) == ERR.REBALANCE_IN_PROGRESS
    assert commit(b, 2, 5) == ERR.ILLEGAL_GENERATION


# -- leave -------------------------------------------------------------------------------------


def test_batched_leave() -> None:
    caller = Caller()
    a, b, c = stable_group(caller, 3)
    left = caller.absorb(caller.c.leave(G, [(a, None), (b, None), ("ghost", None), (c, "wrong")], now_ms=10))
    assert left.error_code == ERR.NONE
    assert [(m.member_id, m.error_code) for m in left.members] == [
        (a, ERR.NONE),
        (b, ERR.NONE),
        ("ghost", ERR.UNKNOWN_MEMBER_ID),
        (c, ERR.UNKNOWN_MEMBER_ID),
    ]
    assert caller.group().state is GroupState.PREPARING_REBALANCE
    rejoined = immediate_join(caller, c, now=11)
    assert (rejoined.generation_id, [m.member_id for m in rejoined.members]) == (3, [c])
    last = caller.absorb(caller.c.leave(G, [(c, None)], now_ms=12))
    assert last.members[0].error_code == ERR.NONE
    assert caller.group().state is GroupState.EMPTY
    assert caller.group().generation == 4
    missing = caller.absorb(caller.c.leave("nope", [("x", None)], now_ms=13))
    assert missing.error_code == ERR.UNKNOWN_MEMBER_ID


def test_leave_while_completing_sends_waiting_members_back_to_join() -> None:
    caller = Caller(GroupConfig(initial_rebalance_delay_ms=10))
    ids = [pending(caller.join(now=0, client=n)).member_id for n in "abc"]
    caller.tick(100)
    for m in ids:
        caller.joined(m)
    pending(caller.sync(ids[1], 1, now=20))
    caller.absorb(caller.c.leave(G, [(ids[2], None)], now_ms=21))
    assert caller.synced(ids[1]).error_code == ERR.REBALANCE_IN_PROGRESS
    assert caller.group().state is GroupState.PREPARING_REBALANCE


def test_leave_of_a_member_with_a_parked_join_answers_it() -> None:
    caller = Caller()
    a, b = stable_group(caller, 2)
    pending(caller.join(a, now=1))
    caller.absorb(caller.c.leave(G, [(a, None)], now_ms=2))
    assert caller.joined(a).error_code == ERR.UNKNOWN_MEMBER_ID
    assert caller.group().state is GroupState.PREPARING_REBALANCE
    assert immediate_join(caller, b, now=3).generation_id == 3


# -- state transitions -------------------------------------------------------------------------


def test_every_state_transition() -> None:
    caller = Caller(GroupConfig(initial_rebalance_delay_ms=10))
    state = lambda: caller.group().state  # noqa: E731
    a = pending(caller.join(now=0, client="a")).member_id
    assert state() is GroupState.PREPARING_REBALANCE  # Empty -> PreparingRebalance
    caller.tick(10)
    assert state() is GroupState.COMPLETING_REBALANCE  # PreparingRebalance -> CompletingRebalance
    immediate_sync(caller, a, 1, now=11, assignments=[(a, b"x")])
    assert state() is GroupState.STABLE  # CompletingRebalance -> Stable
    b = pending(caller.join(now=12, client="b")).member_id
    assert state() is GroupState.PREPARING_REBALANCE  # Stable -> PreparingRebalance
    immediate_join(caller, a, now=13)
    assert state() is GroupState.COMPLETING_REBALANCE
    caller.joined(b)
    caller.absorb(caller.c.leave(G, [(b, None)], now_ms=14))
    assert state() is GroupState.PREPARING_REBALANCE  # CompletingRebalance -> PreparingRebalance
    caller.absorb(caller.c.leave(G, [(a, None)], now_ms=15))
    assert state() is GroupState.EMPTY  # PreparingRebalance -> Empty
    group = caller.group()
    deleted = caller.absorb(caller.c.delete_groups([G], now_ms=16))
    assert deleted[0].error_code == ERR.NONE
    assert group.state is GroupState.DEAD and G not in caller.c.groups  # Empty -> Dead
    with pytest.raises(AssertionError):
        Group("x", 0).transition(GroupState.STABLE, 0)


# -- offsets -----------------------------------------------------------------------------------


def test_commit_and_fetch() -> None:
    caller = Caller()
    a, _ = stable_group(caller, 2)
    outcome = caller.c.commit(
        G,
        a,
        2,
        [("t1", 0, 42, 3, "meta"), ("t1", 1, 7, -1, None), ("t2", 0, 9, -1, "x" * 4097)],
        now_ms=100,
    )
    results = caller.absorb(outcome)
    assert [r.error_code for r in results] == [ERR.NONE, ERR.NONE, ERR.OFFSET_METADATA_TOO_LARGE]
    assert outcome.records == [
        OffsetCommitted(G, "t1", 0, 42, 3, "meta", 100),
        OffsetCommitted(G, "t1", 1, 7, -1, "", 100),
    ]
    fetched = caller.absorb(caller.c.fetch_offsets(G, [("t1", 0), ("t2", 0)], now_ms=101))
    assert [(f.offset, f.leader_epoch, f.metadata) for f in fetched] == [(42, 3, "meta"), (-1, -1, "")]
    everything = caller.absorb(caller.c.fetch_offsets(G, None, now_ms=101))
    assert [(f.topic, f.partition, f.offset) for f in everything] == [("t1", 0, 42), ("t1", 1, 7)]
    assert caller.absorb(caller.c.fetch_offsets("other", None, now_ms=101)) == []
    assert caller.absorb(caller.c.fetch_offsets("other", [("t1", 0)], now_ms=101))[0].offset == -1


def test_commit_keeps_a_member_alive() -> None:
    caller = Caller()
    a, b = stable_group(caller, 2)
    for now in range(5000, 25_000, 5000):
        caller.absorb(caller.c.commit(G, a, 2, [("t1", 0, now, -1, "")], now_ms=now))
        caller.heartbeat(b, 2, now=now)
    assert a in caller.group().members


def test_simple_commits_on_an_empty_group() -> None:
    caller = Caller()
    refused = caller.absorb(caller.c.commit("simple", "", 3, [("t", 0, 1, -1, "")], now_ms=0))
    assert refused[0].error_code == ERR.ILLEGAL_GENERATION and "simple" not in caller.c.groups
    ok = caller.absorb(caller.c.commit("simple", "", -1, [("t", 0, 10, -1, "m")], now_ms=0))
    assert ok[0].error_code == ERR.NONE
    assert caller.group("simple").state is GroupState.EMPTY
    assert caller.absorb(caller.c.fetch_offsets("simple", [("t", 0)], now_ms=1))[0].offset == 10
    listed = caller.absorb(caller.c.list_groups(now_ms=1))
    assert [(g.group_id, g.protocol_type, g.state) for g in listed] == [("simple", "", "Empty")]
    # Once consumers are active, a standalone commit is refused.
    member = immediate_join(caller, now=2, group="simple").member_id
    refused_now = caller.absorb(caller.c.commit("simple", "", -1, [("t", 0, 11, -1, "")], now_ms=3))
    assert refused_now[0].error_code == ERR.UNKNOWN_MEMBER_ID
    assert caller.c.commit("simple", member, 1, [("t", 0, 12, -1, "")], now_ms=3).response[0].error_code == (
        ERR.REBALANCE_IN_PROGRESS
    )


def test_offsets_expire_after_the_group_is_empty_for_the_retention_period() -> None:
    config = GroupConfig(offsets_retention_ms=100_000, offsets_retention_check_interval_ms=1000)
    caller = Caller(config)
    (a,) = stable_group(caller, 1)
    caller.absorb(caller.c.commit(G, a, 1, [("t1", 0, 5, -1, "")], now_ms=10))
    for now in range(5000, 50_000, 5000):
        caller.heartbeat(a, 1, now=now)
    left = caller.absorb(caller.c.leave(G, [(a, None)], now_ms=50_000))
    assert left.members[0].error_code == ERR.NONE
    assert caller.group().state is GroupState.EMPTY
    caller.tick(149_999)
    assert caller.absorb(caller.c.fetch_offsets(G, [("t1", 0)], now_ms=149_999))[0].offset == 5
    caller.tick(150_999)  # the next retention check
    assert G not in caller.c.groups
    assert caller.records[-2:] == [OffsetDeleted(G, "t1", 0), GroupDeleted(G)]


def test_offset_expiry_of_standalone_and_stable_groups_uses_commit_time() -> None:
    config = GroupConfig(offsets_retention_ms=100_000, offsets_retention_check_interval_ms=1000)
    caller = Caller(config)
    caller.absorb(caller.c.commit("simple", "", -1, [("t", 0, 1, -1, "")], now_ms=0))
    caller.absorb(caller.c.commit("simple", "", -1, [("t", 1, 1, -1, "")], now_ms=50_000))
    (a,) = stable_group(caller, 1, now=0)  # subscribes to t1 only
    caller.absorb(caller.c.commit(G, a, 1, [("t1", 0, 1, -1, ""), ("gone", 0, 1, -1, "")], now_ms=0))
    for now in range(5000, 100_001, 5000):
        caller.heartbeat(a, 1, now=now)
    caller.tick(100_000)
    assert [f.partition for f in caller.absorb(caller.c.fetch_offsets("simple", None, now_ms=100_000))] == [1]
    assert [f.topic for f in caller.absorb(caller.c.fetch_offsets(G, None, now_ms=100_000))] == ["t1"]


def test_delete_offsets() -> None:
    caller = Caller()
    assert caller.absorb(caller.c.delete_offsets("none", [("t", 0)], now_ms=0)).error_code == (
        ERR.GROUP_ID_NOT_FOUND
    )
    (a,) = stable_group(caller, 1)  # subscribed to t1
    caller.absorb(caller.c.commit(G, a, 1, [("t1", 0, 1, -1, ""), ("t2", 0, 1, -1, "")], now_ms=1))
    result = caller.absorb(caller.c.delete_offsets(G, [("t1", 0), ("t2", 0), ("t3", 0)], now_ms=2))
    assert result.error_code == ERR.NONE
    assert [p.error_code for p in result.partitions] == [ERR.GROUP_SUBSCRIBED_TO_TOPIC, ERR.NONE, ERR.NONE]
    assert caller.records[-1] == OffsetDeleted(G, "t2", 0)
    immediate_join(caller, now=3, group="connect", protocol_type="connect")
    assert caller.absorb(caller.c.delete_offsets("connect", [("t", 0)], now_ms=4)).error_code == (
        ERR.NON_EMPTY_GROUP
    )
    caller.absorb(caller.c.leave(G, [(a, None)], now_ms=5))
    emptied = caller.absorb(caller.c.delete_offsets(G, [("t1", 0)], now_ms=6))
    assert emptied.partitions[0].error_code == ERR.NONE


# -- admin -------------------------------------------------------------------------------------


def test_delete_groups() -> None:
    caller = Caller()
    stable_group(caller, 1)
    caller.absorb(caller.c.commit("simple", "", -1, [("t", 0, 1, -1, "")], now_ms=0))
    results = caller.absorb(caller.c.delete_groups([G, "simple", "missing"], now_ms=1))
    assert [(r.group_id, r.error_code) for r in results] == [
        (G, ERR.NON_EMPTY_GROUP),
        ("simple", ERR.NONE),
        ("missing", ERR.GROUP_ID_NOT_FOUND),
    ]
    assert "simple" not in caller.c.groups
    assert caller.records[-2:] == [OffsetDeleted("simple", "t", 0), GroupDeleted("simple")]


def test_list_groups_with_state_filter() -> None:
    caller = Caller(GroupConfig(initial_rebalance_delay_ms=1000))
    caller.absorb(caller.c.commit("empty", "", -1, [("t", 0, 1, -1, "")], now_ms=0))
    caller.join(now=0, group="preparing")

    def listed(*states: str, types: Sequence[str] = ()) -> list[tuple[str, str]]:
        groups = caller.absorb(caller.c.list_groups(states, types, now_ms=0))
        return sorted((g.group_id, g.state) for g in groups)

    assert listed() == [("empty", "Empty"), ("preparing", "PreparingRebalance")]
    assert listed("preparingrebalance") == [("preparing", "PreparingRebalance")]
    assert listed("Empty", "Stable") == [("empty", "Empty")]
    assert listed(types=["consumer"]) == []
    assert len(listed(types=["Classic"])) == 2


def test_describe() -> None:
    caller = Caller()
    a, b = stable_group(caller, 2)
    described = caller.absorb(caller.c.describe(G, now_ms=1))
    assert (described.state, described.protocol_type, described.protocol_data) == (
        "Stable",
        "consumer",
        "range",
    )
    by_id = {m.member_id: m for m in described.members}
    assert by_id[a].assignment == f"assignment-{a}".encode() and by_id[a].metadata == RANGE[0][1]
    assert by_id[b].client_id == "m1" and by_id[b].client_host == "/127.0.0.1"
    pending(caller.join(a, now=2))
    preparing = caller.absorb(caller.c.describe(G, now_ms=3))
    assert preparing.protocol_data == "" and all(m.assignment == b"" for m in preparing.members)
    dead = caller.absorb(caller.c.describe("nope", now_ms=3))
    assert (dead.error_code, dead.state) == (ERR.NONE, "Dead")


# -- durability --------------------------------------------------------------------------------


def test_replay_of_records_rebuilds_offsets_exactly() -> None:
    config = GroupConfig(offsets_retention_ms=1_000_000, offsets_retention_check_interval_ms=1000)
    caller = Caller(config)
    (a,) = stable_group(caller, 1)
    caller.absorb(caller.c.commit(G, a, 1, [("t1", p, p * 10, 2, f"m{p}") for p in range(3)], now_ms=5))
    caller.absorb(caller.c.commit(G, a, 1, [("t1", 0, 99, 3, "later")], now_ms=6))
    caller.absorb(caller.c.commit(G, a, 1, [("t2", 0, 1, -1, "")], now_ms=6))
    caller.absorb(caller.c.delete_offsets(G, [("t2", 0)], now_ms=7))
    for group in ("s1", "s2", "s3"):
        caller.absorb(caller.c.commit(group, "", -1, [("x", 0, 1, -1, group)], now_ms=8))
    caller.absorb(caller.c.delete_groups(["s2"], now_ms=9))
    caller.absorb(caller.c.leave(G, [(a, None)], now_ms=10))
    caller.tick(1_000_008)  # s1 and s3 expire by commit time; G has been empty only since 10
    assert set(caller.c.groups) == {G}

    restored = GroupCoordinator(config)
    for record in caller.records:
        restored.replay(record, now_ms=2_000_000)

    def snapshot(c: GroupCoordinator) -> dict[str, list[tuple[str, int, int, int, str]]]:
        return {
            g: [
                (f.topic, f.partition, f.offset, f.leader_epoch, f.metadata)
                for f in c.fetch_offsets(g, None, now_ms=0).response
            ]
            for g in c.groups
        }

    assert snapshot(restored) == snapshot(caller.c)
    assert snapshot(restored)[G][0] == ("t1", 0, 99, 3, "later")
    group = restored.groups[G]
    assert (group.state, group.protocol_type, group.generation) == (GroupState.EMPTY, "consumer", 2)
    assert group.state_since_ms == 10  # empty since the recorded time, so expiry stays on schedule


def test_replayed_group_that_had_members_counts_as_empty_from_the_restart() -> None:
    caller = Caller()
    (a,) = stable_group(caller, 1)
    caller.absorb(caller.c.commit(G, a, 1, [("t1", 0, 1, -1, "")], now_ms=5))
    restored = GroupCoordinator()
    for record in caller.records:
        restored.replay(record, now_ms=777)
    assert restored.groups[G].state_since_ms == 777
    # Members rejoin from scratch after a restart.
    again = restored.join(
        G, "", protocol_type="consumer", protocols=RANGE, session_timeout_ms=SESSION, now_ms=800
    )
    assert isinstance(again.response, JoinResult) and again.response.generation_id == 2


def test_decode_subscription_topics() -> None:
    assert decode_subscription_topics(subscription("a", "bb")) == ["a", "bb"]
    assert decode_subscription_topics(b"") is None
    assert decode_subscription_topics(struct.pack(">hi", 0, 3) + b"\x00") is None
    assert decode_subscription_topics(struct.pack(">hih", 0, 1, 5) + b"ab") is None


# -- less travelled rebalance paths -------------------------------------------------------------


def test_static_restart_fences_a_parked_sync_of_the_old_incarnation() -> None:
    caller = Caller()
    a, b = static_group(caller)
    pending(caller.join(a, now=100, instance="inst-a"))
    immediate_join(caller, b, now=101, instance="inst-b")  # generation 3, completing
    caller.joined(a)
    pending(caller.sync(b, 3, now=102, instance="inst-b"))
    new_b = pending(caller.join(now=103, instance="inst-b")).member_id
    assert caller.synced(b).error_code == ERR.FENCED_INSTANCE_ID
    # The leader may already have assigned to the old id, so the group starts over.
    assert caller.group().state is GroupState.PREPARING_REBALANCE
    assert immediate_join(caller, a, now=104, instance="inst-a").generation_id == 4
    assert caller.joined(new_b).generation_id == 4


def test_rebalance_waits_for_static_members_when_nobody_rejoined() -> None:
    caller = Caller()
    a, b = static_group(caller)
    c = pending(caller.join(now=100, client="c")).member_id
    caller.absorb(caller.c.leave(G, [(c, None)], now_ms=200))
    assert caller.group().state is GroupState.PREPARING_REBALANCE
    for now in range(5000, 2 * REBALANCE, 5000):
        caller.heartbeat(a, 2, now=now, instance="inst-a")
        caller.heartbeat(b, 2, now=now, instance="inst-b")
    # The rebalance timed out with no member rejoined: it is postponed, not completed.
    assert caller.group().state is GroupState.PREPARING_REBALANCE
    assert caller.group().join_deadline == 100 + 2 * REBALANCE
    pending(caller.join(a, now=2 * REBALANCE, instance="inst-a"))
    caller.tick(100 + 2 * REBALANCE)
    result = caller.joined(a)
    assert (result.generation_id, {m.member_id for m in result.members}) == (3, {a, b})


def test_leaving_with_a_parked_sync_answers_it() -> None:
    caller = Caller(GroupConfig(initial_rebalance_delay_ms=10))
    a = pending(caller.join(now=0, client="a")).member_id
    b = pending(caller.join(now=0, client="b")).member_id
    caller.tick(100)
    caller.joined(a)
    caller.joined(b)
    pending(caller.sync(b, 1, now=101))
    caller.absorb(caller.c.leave(G, [(b, None)], now_ms=102))
    assert caller.synced(b).error_code == ERR.UNKNOWN_MEMBER_ID


def test_leave_of_a_pending_member_id() -> None:
    caller = Caller()
    a, b = stable_group(caller, 2)
    n = immediate_join(caller, now=10, require_known=True, client="n").member_id
    pending(caller.join(a, now=11))
    pending(caller.join(b, now=12))
    left = caller.absorb(caller.c.leave(G, [(n, None)], now_ms=13))
    assert left.members[0].error_code == ERR.NONE
    # It was the last one the rebalance waited for.
    assert caller.joined(a).generation_id == caller.joined(b).generation_id == 3


def test_a_lowered_max_size_drops_the_last_rejoiners() -> None:
    caller = Caller()
    a, b, c = stable_group(caller, 3)
    lowered = dataclasses.replace(caller.c.config, max_size=2)
    caller.c.config = caller.c._rb.config = lowered
    pending(caller.join(a, now=10))
    pending(caller.join(b, now=11))
    refused = immediate_join(caller, c, now=12)
    assert refused.error_code == ERR.GROUP_MAX_SIZE_REACHED
    assert c not in caller.group().members
    assert caller.joined(a).generation_id == 3


# -- properties --------------------------------------------------------------------------------

# "act" is a well-behaved client's next step; the others are arbitrary, often ill-timed, calls.
OPS = ("act",) * 8 + (
    "join",
    "join_fresh",
    "sync",
    "heartbeat",
    "leave",
    "commit",
    "commit_simple",
    "tick",
    "restart",
)


class Client:
    """What a consumer remembers about its membership, and what it would do next."""

    def __init__(self, name: str, instance: str | None) -> None:
        self.name = name
        self.instance = instance
        self.forget()

    def forget(self) -> None:
        self.member_id = ""
        self.generation = -1
        self.synced_generation = -1
        self.must_join = True

    def learn(self, result: object) -> None:
        if isinstance(result, (JoinResult, SyncResult)) and result.error_code in (
            ERR.UNKNOWN_MEMBER_ID,
            ERR.FENCED_INSTANCE_ID,
        ):
            self.forget()
        elif isinstance(result, JoinResult):
            if result.error_code in (ERR.NONE, ERR.MEMBER_ID_REQUIRED):
                self.member_id = result.member_id
            if result.error_code == ERR.NONE:
                self.generation = result.generation_id
                self.must_join = False
        elif isinstance(result, SyncResult):
            if result.error_code == ERR.NONE:
                self.synced_generation = self.generation
            elif result.error_code in (ERR.REBALANCE_IN_PROGRESS, ERR.ILLEGAL_GENERATION):
                self.must_join = True
        elif result in (ERR.REBALANCE_IN_PROGRESS, ERR.ILLEGAL_GENERATION):
            self.must_join = True
        elif result in (ERR.UNKNOWN_MEMBER_ID, ERR.FENCED_INSTANCE_ID):
            self.forget()


@settings(max_examples=300, deadline=None)
@given(
    delay=st.sampled_from([0, 3000]),
    steps=st.lists(
        st.tuples(
            st.sampled_from(OPS),
            st.integers(0, 3),
            # Mostly quick succession, sometimes long enough for sessions and rebalances to time out.
            st.one_of(st.integers(0, 1500), st.integers(0, 1500), st.integers(0, 40_000)),
            st.booleans(),
            st.sampled_from(["range", "roundrobin"]),
        ),
        max_size=100,
    ),
)
def test_random_operations_never_leave_a_group_inconsistent(
    delay: int, steps: list[tuple[str, int, int, bool, str]]
) -> None:
    caller = Caller(GroupConfig(initial_rebalance_delay_ms=delay, max_size=3))
    clients = [Client("c0", None), Client("c1", None), Client("c2", "static-2"), Client("c3", "static-3")]
    now = 0
    for op, who, delta, flag, protocol in steps:
        now += delta
        client = clients[who]
        protocols = [(protocol, subscription("t1")), ("range", subscription("t2"))]
        parked = {kind for g, m, kind in caller.parked if m == client.member_id}
        if op == "act":
            if parked:
                continue  # waiting for its JoinGroup / SyncGroup answer
            if client.must_join:
                op = "join"
            elif client.synced_generation != client.generation:
                op = "sync"
            else:
                op, flag = "heartbeat", True
        if op in ("join", "join_fresh"):
            member_id = "" if op == "join_fresh" else client.member_id
            result = caller.join(
                member_id,
                now=now,
                client=client.name,
                instance=client.instance,
                protocols=protocols,
                require_known=flag,
            )
            if isinstance(result, Pending):
                client.member_id = result.member_id
            client.learn(result)
        elif op == "sync":
            group = caller.c.groups.get(G)
            assignments = [(m, m.encode()) for m in group.members] if group is not None else []
            client.learn(
                caller.sync(
                    client.member_id,
                    client.generation,
                    now=now,
                    instance=client.instance,
                    assignments=assignments,
                )
            )
        elif op == "heartbeat":
            generation = client.generation if flag else client.generation + 1
            client.learn(caller.heartbeat(client.member_id, generation, now=now, instance=client.instance))
        elif op == "leave":
            caller.absorb(caller.c.leave(G, [(client.member_id, client.instance)], now_ms=now))
            client.forget()
        elif op == "commit":
            entry = [("t1", who, delta, -1, None)]
            outcome = caller.c.commit(
                G, client.member_id, client.generation, entry, group_instance_id=client.instance, now_ms=now
            )
            caller.absorb(outcome)
        elif op == "commit_simple":
            caller.absorb(caller.c.commit(G, "", -1, [("t9", who, delta, -1, "")], now_ms=now))
        elif op == "restart":
            client.forget()
        else:
            deadline = caller.c.next_deadline()
            if deadline is not None and not flag:
                now = max(now, deadline)
            caller.tick(now)
        # Answers to parked requests reach their clients.
        for key in [k for k in caller.answers if k[0] == G]:
            response = caller.answers.pop(key)
            for c in clients:
                if c.member_id == key[1]:
                    c.learn(response)
        group = caller.c.groups.get(G)
        if group is not None and group.state is GroupState.STABLE:
            assert all(m.assigned_generation == group.generation for m in group.members.values())
    # Driving only by next_deadline, every parked request is eventually answered.
    for _ in range(200):
        deadline = caller.c.next_deadline()
        if not caller.parked or deadline is None:
            break
        now = max(now, deadline)
        caller.tick(now)
    assert not caller.parked
