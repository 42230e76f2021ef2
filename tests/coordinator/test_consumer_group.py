"""The KIP-848 consumer group coordinator, driven with a fake clock and simulated clients."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from eventyard.coordinator.consumer_group import (
    ConsumerGroupConfig,
    ConsumerGroupCoordinator,
    HeartbeatResult,
    TopicsSource,
)
from eventyard.coordinator.consumer_group_state import (
    ConsumerGroup,
    MemberSpec,
    MemberState,
    Partitions,
    RangeAssignor,
    UniformAssignor,
    flatten,
    group_by_topic,
)
from eventyard.protocol.error_codes import ErrorCode

ERR = ErrorCode
G = "payments"
A = uuid.UUID(int=0xA)
B = uuid.UUID(int=0xB)
SESSION = 45_000
REBALANCE = 60_000
INTERVAL = 5_000


def parts(topic_id: uuid.UUID, *partitions: int) -> Partitions:
    return frozenset((topic_id, p) for p in partitions)


class Client:
    """A consumer that does what it is told: it consumes the last assignment it received, at
    once or (lazy) only once it has reconciled, as a real client finishes revoking (callbacks,
    commits) some time after the response. It reports its owned partitions whenever they changed
    since it last sent them (or on a full request), and rejoins with epoch 0 after
    FENCED_MEMBER_EPOCH / UNKNOWN_MEMBER_ID."""

    def __init__(
        self,
        member_id: str,
        topics: tuple[str, ...],
        *,
        instance_id: str | None = None,
        version: int = 1,
        assignor: str | None = None,
        lazy: bool = False,
    ) -> None:
        self.member_id = member_id
        self.assignor = assignor
        self.lazy = lazy
        self.assignment: Partitions = frozenset()  # the last one received
        self.topics = topics
        self.instance_id = instance_id
        self.version = version
        self.epoch = 0
        self.owned: Partitions = frozenset()
        self.sent_owned: Partitions | None = None
        self.sent_topics: tuple[str, ...] | None = None
        self.last_ok: int | None = None

    def reconcile(self) -> None:
        self.owned = self.assignment

    def reset(self) -> None:
        self.epoch = 0
        self.owned = self.assignment = frozenset()
        self.sent_owned = None
        self.sent_topics = None
        self.last_ok = None

    def beat(self, world: World, *, full: bool = False) -> HeartbeatResult:
        joining = self.epoch == 0
        send_topics = joining or full or self.topics != self.sent_topics
        send_owned = joining or full or self.owned != self.sent_owned
        owned = frozenset() if joining else self.owned
        r = world.coordinator.heartbeat(
            G,
            self.member_id,
            self.epoch,
            instance_id=self.instance_id,
            rebalance_timeout_ms=REBALANCE if joining or full else -1,
            subscribed_topic_names=list(self.topics) if send_topics else None,
            server_assignor=self.assignor if joining or full else None,
            owned_partitions=group_by_topic(owned) if send_owned else None,
            topics=world.topics_source,
            version=self.version,
            client_id="client",
            client_host="/10.0.0.1",
            now_ms=world.now,
        )
        if r.error_code == ERR.NONE:
            assert r.member_id is not None
            assert r.heartbeat_interval_ms == INTERVAL
            self.member_id = r.member_id
            self.epoch = r.member_epoch
            self.last_ok = world.now
            if send_topics:
                self.sent_topics = self.topics
            if send_owned:
                self.sent_owned = owned
            if r.assignment is not None:
                self.assignment = flatten(r.assignment)
                if not self.lazy:
                    self.reconcile()
        elif r.error_code in (ERR.FENCED_MEMBER_EPOCH, ERR.UNKNOWN_MEMBER_ID):
            self.reset()
        world.check()
        return r

    def leave(self, world: World, epoch: int = -1) -> HeartbeatResult:
        self.owned = self.assignment = frozenset()  # a leaving consumer stops consuming first
        r = world.coordinator.heartbeat(
            G,
            self.member_id,
            epoch,
            instance_id=self.instance_id,
            topics=world.topics_source,
            now_ms=world.now,
        )
        world.check()
        return r


class World:
    """The coordinator, the topics, a fake clock and the clients that are alive; `check` runs
    after every step: group bookkeeping is consistent and no partition is consumed twice."""

    def __init__(
        self, config: ConsumerGroupConfig | None = None, is_classic_group: Callable[[str], bool] | None = None
    ) -> None:
        ids = itertools.count(1)
        self.coordinator = ConsumerGroupCoordinator(
            config or ConsumerGroupConfig(session_timeout_ms=SESSION, heartbeat_interval_ms=INTERVAL),
            is_classic_group=is_classic_group or (lambda group_id: False),
            new_member_id=lambda: f"gen-{next(ids)}",
        )
        self.topics: dict[str, tuple[uuid.UUID, int]] = {"a": (A, 6), "b": (B, 3)}
        self.now = 0
        self.clients: list[Client] = []

    def topics_source(self) -> dict[str, tuple[uuid.UUID, int]]:
        return dict(self.topics)

    def client(
        self, member_id: str, *topics: str, instance_id: str | None = None, assignor: str | None = None
    ) -> Client:
        c = Client(member_id, topics or ("a",), instance_id=instance_id, assignor=assignor)
        self.clients.append(c)
        return c

    def advance(self, ms: int) -> None:
        self.now += ms
        for c in self.clients:
            # A client whose session ran out knows it and stops consuming, as the server drops it.
            if c.last_ok is not None and self.now >= c.last_ok + SESSION:
                c.reset()
        self.coordinator.tick(self.now)
        self.check()

    def check(self) -> None:
        for group in self.coordinator.groups.values():
            assert group.invariant_violations() == []
        group = self.coordinator.groups.get(G)
        consumed: dict[tuple[uuid.UUID, int], str] = {}
        for c in self.clients:
            for tp in c.owned:
                assert tp not in consumed, f"{tp} consumed by {consumed[tp]} and {c.member_id}"
                consumed[tp] = c.member_id
            if c.owned:
                assert group is not None
                member = group.members[c.member_id]
                assert c.owned <= member.assigned | member.pending_revocation

    @property
    def group(self) -> ConsumerGroup:
        return self.coordinator.groups[G]

    def round(self, ms: int = 1_000) -> None:
        self.advance(ms)
        for c in self.clients:
            c.reconcile()
            self.check()
            c.beat(self)

    def settle(self, max_rounds: int = 10) -> int:
        """Heartbeat everyone until the group is stable; the number of rounds it took."""
        for n in range(1, max_rounds + 1):
            self.round()
            if self.group.state() == "Stable" and all(c.epoch == self.group.epoch for c in self.clients):
                return n
        raise AssertionError(
            f"not stable after {max_rounds} rounds: {self.coordinator.describe([G], self.topics)}"
        )


def loads(world: World) -> list[int]:
    return sorted(len(c.owned) for c in world.clients)


# -- joining --------------------------------------------------------------------------------


def test_a_lone_member_gets_every_partition_in_its_first_response() -> None:
    w = World()
    c = w.client("m1", "a", "b")
    r = c.beat(w)
    assert r.error_code == ERR.NONE and r.member_id == "m1"
    assert r.member_epoch == 1 == w.group.epoch == w.group.assignment_epoch
    assert r.assignment == [(A, [0, 1, 2, 3, 4, 5]), (B, [0, 1, 2])]
    assert w.group.state() == "Stable"
    # Nothing changed: the next heartbeat carries no assignment.
    r = c.beat(w)
    assert (r.member_epoch, r.assignment) == (1, None)


def test_v0_member_ids_are_generated_and_v1_members_bring_their_own() -> None:
    w = World()
    r = Client("", ("a",), version=0).beat(w)
    assert r.error_code == ERR.NONE and r.member_id == "gen-1"
    assert Client("", ("a",), version=1).beat(w).error_code == ERR.INVALID_REQUEST
    default = ConsumerGroupCoordinator()
    r = default.heartbeat(G, "", 0, subscribed_topic_names=["a"], topics={}, version=0, now_ms=0)
    assert r.member_id is not None and len(r.member_id) == 22  # Kafka's base64 Uuid


def test_members_join_one_by_one_balanced_and_never_sharing_a_partition() -> None:
    w = World()
    w.client("m1").beat(w)
    assert loads(w) == [6]
    w.client("m2").beat(w)
    w.settle()
    assert loads(w) == [3, 3]
    w.client("m3").beat(w)
    rounds = w.settle()
    assert loads(w) == [2, 2, 2]
    assert rounds <= 3
    assert w.group.state() == "Stable"


def test_a_partition_moves_only_after_its_owner_released_it() -> None:
    w = World()
    m1, m2 = w.client("m1"), w.client("m2")
    m1.beat(w)
    r = m2.beat(w)  # epoch 2: m2's target is 3 partitions, all still held by m1
    assert (r.member_epoch, r.assignment) == (2, [])
    assert w.group.members["m2"].state is MemberState.UNRELEASED_PARTITIONS
    r = m1.beat(w)  # m1 must give up 3 partitions first: its epoch stays until it confirms
    assert r.member_epoch == 1 and r.assignment is not None and len(flatten(r.assignment)) == 3
    assert w.group.members["m1"].state is MemberState.UNREVOKED_PARTITIONS
    assert w.coordinator.describe([G], w.topics)[0].group_state == "Reconciling"
    assert m2.beat(w).assignment is None  # still held by m1 (pending revocation)
    r = m1.beat(w)  # reports it no longer owns them
    assert (r.member_epoch, r.assignment) == (2, None)
    r = m2.beat(w)
    assert r.assignment is not None and len(flatten(r.assignment)) == 3
    assert w.group.state() == "Stable"


def test_without_owned_partitions_a_member_still_owns_what_it_last_reported() -> None:
    w = World()
    m1, m2 = w.client("m1"), w.client("m2")
    m1.beat(w)
    m2.beat(w)
    m1.beat(w)  # reports all 6, is asked to revoke 3
    r = w.coordinator.heartbeat(G, "m1", 1, topics=w.topics, now_ms=w.now)  # owned: null = unchanged
    assert (r.error_code, r.member_epoch, r.assignment) == (ERR.NONE, 1, None)
    assert w.group.members["m1"].state is MemberState.UNREVOKED_PARTITIONS
    assert m1.beat(w).member_epoch == 2  # it reports the 3 it kept: done


def test_a_partition_revoked_before_the_member_used_it_needs_no_confirmation() -> None:
    w = World()
    m1, m2, m3 = w.client("m1"), Client("m2", ("a",), lazy=True), w.client("m3")
    w.clients.append(m2)
    m1.beat(w)
    m2.beat(w)
    m1.beat(w)
    m1.beat(w)  # m1 released 3 partitions
    m2.beat(w)  # m2 is given them, but (lazy) has not started on them
    assert m2.assignment and not m2.owned
    m3.beat(w)  # the target moves some of them on to m3
    r = m2.beat(w)  # m2 owns nothing new (owned: null) so it moves on without a round trip
    assert r.member_epoch == w.group.epoch
    assert w.group.members["m2"].state is not MemberState.UNREVOKED_PARTITIONS
    m2.reconcile()
    w.settle()
    assert loads(w) == [2, 2, 2]


# -- leaving, timeouts ------------------------------------------------------------------------


def test_leave_gives_the_partitions_to_the_others() -> None:
    w = World()
    m1, m2, m3 = w.client("m1"), w.client("m2"), w.client("m3")
    for c in (m1, m2, m3):
        c.beat(w)
    w.settle()
    epoch = w.group.epoch
    r = m3.leave(w)
    assert (r.error_code, r.member_id, r.member_epoch, r.assignment) == (ERR.NONE, "m3", -1, None)
    w.clients.remove(m3)
    assert w.group.epoch == epoch + 1
    assert w.coordinator.describe([G], w.topics)[0].group_state == "Assigning"
    w.settle()
    assert loads(w) == [3, 3]


def test_a_silent_member_is_removed_after_its_session_timeout() -> None:
    w = World()
    m1, m2 = w.client("m1"), w.client("m2")
    m1.beat(w)
    m2.beat(w)
    w.settle()
    w.clients.remove(m2)  # it crashes
    deadline = w.coordinator.next_deadline()
    assert deadline == w.group.members["m2"].session_deadline
    w.now = deadline - 1
    assert w.coordinator.tick(w.now) == []
    m1.beat(w)
    w.now = deadline
    expired = w.coordinator.tick(w.now)
    assert [(e.member_id, e.reason) for e in expired] == [("m2", "session timeout")]
    assert m1.beat(w).assignment is not None
    assert loads(w) == [6]


def test_due_timers_fire_without_tick_when_the_group_is_touched() -> None:
    w = World()
    m1, m2 = w.client("m1"), w.client("m2")
    m1.beat(w)
    m2.beat(w)
    w.settle()
    w.clients.remove(m2)
    w.now += SESSION - 1
    m1.beat(w)
    w.now += 2
    r = m1.beat(w)  # m2 expires first, so m1 gets its partitions in this very response
    assert r.assignment is not None and len(m1.owned) == 6
    assert "m2" not in w.group.members


def test_a_member_that_does_not_revoke_in_time_is_removed() -> None:
    w = World()
    m1, m2 = w.client("m1"), w.client("m2")
    m1.beat(w)
    m2.beat(w)
    m1.beat(w)  # asked to revoke half of its partitions
    stuck = w.group.members["m1"]
    assert stuck.rebalance_deadline == w.now + REBALANCE
    # It keeps heartbeating, but still claims the partitions it must give up.
    for _ in range(REBALANCE // INTERVAL - 1):
        w.now += INTERVAL
        r = w.coordinator.heartbeat(
            G, "m1", 1, owned_partitions=group_by_topic(stuck.assigned | stuck.pending_revocation),
            topics=w.topics, now_ms=w.now,
        )  # fmt: skip
        assert r.error_code == ERR.NONE
        m2.beat(w)
    w.now += INTERVAL
    expired = w.coordinator.tick(w.now)
    assert [e.member_id for e in expired] == ["m1"]
    w.clients.remove(m1)
    m2.beat(w)
    assert loads(w) == [6]


# -- static members -------------------------------------------------------------------------


def test_a_static_member_that_restarts_gets_its_partitions_back_without_a_rebalance() -> None:
    w = World()
    s = w.client("s-1", instance_id="pod-0")
    d = w.client("d-1")
    s.beat(w)
    d.beat(w)
    w.settle()
    before, epoch = s.owned, w.group.epoch
    r = s.leave(w, epoch=-2)
    assert (r.error_code, r.member_epoch) == (ERR.NONE, -2)
    assert w.group.members["s-1"].epoch == -2 and w.group.epoch == epoch
    d.beat(w)
    assert d.owned and not (d.owned & before)  # nobody takes the restarting member's partitions
    w.clients.remove(s)
    s2 = w.client("s-2", instance_id="pod-0")
    r = s2.beat(w)
    assert r.error_code == ERR.NONE and flatten(r.assignment or []) == before
    assert w.group.epoch == epoch and "s-1" not in w.group.members
    # The old incarnation is fenced out.
    old = w.coordinator.heartbeat(G, "s-1", epoch, instance_id="pod-0", topics=w.topics, now_ms=w.now)
    assert old.error_code == ERR.FENCED_INSTANCE_ID


def test_a_static_member_that_does_not_come_back_is_removed_after_its_session() -> None:
    w = World()
    s, d = w.client("s-1", instance_id="pod-0"), w.client("d-1")
    s.beat(w)
    d.beat(w)
    w.settle()
    s.leave(w, epoch=-2)
    w.clients.remove(s)
    for _ in range(SESSION // INTERVAL + 1):
        w.round(INTERVAL)
    assert "s-1" not in w.group.members
    w.settle()
    assert loads(w) == [6]


def test_an_instance_id_in_use_cannot_join_twice() -> None:
    w = World()
    s1 = w.client("s-1", instance_id="pod-0")
    s1.beat(w)
    r = Client("s-2", ("a",), instance_id="pod-0").beat(w)
    assert r.error_code == ERR.UNRELEASED_INSTANCE_ID
    r = w.coordinator.heartbeat(G, "s-2", 1, instance_id="pod-9", topics=w.topics, now_ms=0)
    assert r.error_code == ERR.UNKNOWN_MEMBER_ID
    # A member id is not up for grabs under another instance id either.
    w.client("d-1").beat(w)
    assert Client("d-1", ("a",), instance_id="pod-1").beat(w).error_code == ERR.INVALID_REQUEST
    # The same member rejoining (it dropped everything) gets its assignment back.
    s1.reset()
    r = s1.beat(w)
    assert r.error_code == ERR.NONE and r.member_epoch == w.group.members["s-1"].epoch


# -- epochs and members ---------------------------------------------------------------------


def test_wrong_epochs_are_fenced_and_a_lost_response_is_forgiven() -> None:
    w = World()
    m1, m2 = w.client("m1"), w.client("m2")
    m1.beat(w)
    m2.beat(w)
    m1.beat(w)
    m1.beat(w)  # revoked: epoch 1 -> 2
    assert w.group.members["m1"].epoch == 2
    hb = w.coordinator.heartbeat
    r = hb(G, "m1", 3, owned_partitions=group_by_topic(m1.owned), topics=w.topics, now_ms=w.now)
    assert r.error_code == ERR.FENCED_MEMBER_EPOCH and r.error_message and "greater" in r.error_message
    # Epoch 1 is m1's previous one: fine if it owns no more than its assignment (it lost a response).
    r = hb(G, "m1", 1, owned_partitions=group_by_topic(m1.owned), topics=w.topics, now_ms=w.now)
    assert r.error_code == ERR.NONE and r.member_epoch == 2 and r.assignment is not None
    r = hb(G, "m1", 1, owned_partitions=None, topics=w.topics, now_ms=w.now)
    assert r.error_code == ERR.FENCED_MEMBER_EPOCH
    everything = group_by_topic(parts(A, *range(6)))
    r = hb(G, "m1", 1, owned_partitions=everything, topics=w.topics, now_ms=w.now)
    assert r.error_code == ERR.FENCED_MEMBER_EPOCH
    # A fenced client drops everything and rejoins with epoch 0: it gets its assignment back.
    m1.reset()
    r = m1.beat(w)
    assert r.error_code == ERR.NONE and r.member_epoch == 2 and len(m1.owned) == 3


def test_unknown_members_and_groups() -> None:
    w = World()
    hb = w.coordinator.heartbeat
    r = hb(G, "ghost", 3, topics=w.topics, now_ms=0)
    assert r.error_code == ERR.UNKNOWN_MEMBER_ID  # no such group (e.g. after a restart)
    assert not w.coordinator.is_group(G)
    assert hb(G, "ghost", -1, topics=w.topics, now_ms=0).error_code == ERR.UNKNOWN_MEMBER_ID
    w.client("m1").beat(w)
    assert hb(G, "ghost", 1, topics=w.topics, now_ms=0).error_code == ERR.UNKNOWN_MEMBER_ID
    assert hb(G, "ghost", -1, topics=w.topics, now_ms=0).error_code == ERR.UNKNOWN_MEMBER_ID


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"group_id": ""}, ERR.INVALID_GROUP_ID),
        ({"group_id": "  "}, ERR.INVALID_GROUP_ID),
        ({"member_id": ""}, ERR.INVALID_REQUEST),
        ({"instance_id": ""}, ERR.INVALID_REQUEST),
        ({"rack_id": " "}, ERR.INVALID_REQUEST),
        ({"subscribed_topic_names": None}, ERR.INVALID_REQUEST),
        ({"owned_partitions": [(A, [0])]}, ERR.INVALID_REQUEST),
        ({"subscribed_topic_regex": "a.*"}, ERR.INVALID_REQUEST),
        ({"server_assignor": "sticky"}, ERR.UNSUPPORTED_ASSIGNOR),
        ({"member_epoch": -2}, ERR.INVALID_REQUEST),  # a static leave needs an instance id
        ({"member_epoch": -3}, ERR.INVALID_REQUEST),
    ],
)
def test_invalid_requests(kwargs: dict[str, object], code: ErrorCode) -> None:
    request: dict[str, object] = {
        "group_id": G,
        "member_id": "m1",
        "member_epoch": 0,
        "subscribed_topic_names": ["a"],
        "rebalance_timeout_ms": REBALANCE,
        "owned_partitions": [],
        "topics": {"a": (A, 1)},
        "now_ms": 0,
    } | kwargs
    coordinator = ConsumerGroupCoordinator()
    r = coordinator.heartbeat(**request)  # type: ignore[arg-type]
    assert r.error_code == code and r.error_message
    assert (r.member_id, r.assignment) == (None, None)
    assert coordinator.groups == {}


def test_a_classic_group_id_is_not_a_consumer_group() -> None:
    w = World(is_classic_group=lambda group_id: group_id == G)
    r = w.client("m1").beat(w)
    assert r.error_code == ERR.GROUP_ID_NOT_FOUND
    assert w.coordinator.describe([G], w.topics)[0].error_message == f"Group {G} is not a consumer group."


def test_the_group_size_limit() -> None:
    w = World(ConsumerGroupConfig(max_size=2, heartbeat_interval_ms=INTERVAL))
    assert w.client("m1").beat(w).error_code == ERR.NONE
    assert w.client("m2").beat(w).error_code == ERR.NONE
    extra = Client("m3", ("a",))
    assert extra.beat(w).error_code == ERR.GROUP_MAX_SIZE_REACHED


# -- subscriptions and topics ---------------------------------------------------------------


def test_new_partitions_of_a_subscribed_topic_are_assigned() -> None:
    w = World()
    m1, m2 = w.client("m1"), w.client("m2")
    m1.beat(w)
    m2.beat(w)
    w.settle()
    epoch = w.group.epoch
    w.topics["a"] = (A, 10)
    w.settle()
    assert w.group.epoch == epoch + 1
    assert loads(w) == [5, 5]
    assert m1.owned | m2.owned == parts(A, *range(10))


def test_a_topic_created_after_the_subscription_is_picked_up() -> None:
    w = World()
    del w.topics["b"]
    c = w.client("m1", "a", "b")
    c.beat(w)
    assert c.owned == parts(A, *range(6))
    w.topics["b"] = (B, 2)
    c.beat(w)
    assert c.owned == parts(A, *range(6)) | parts(B, 0, 1)


def test_unsubscribing_from_a_topic_revokes_its_partitions() -> None:
    w = World()
    c = w.client("m1", "a", "b")
    c.beat(w)
    c.topics = ("a",)
    r = c.beat(w)  # b's partitions are revoked first...
    assert r.assignment == [(A, [0, 1, 2, 3, 4, 5])]
    assert w.group.members["m1"].state is MemberState.UNREVOKED_PARTITIONS
    c.beat(w)  # ...and once released the member reaches the new epoch
    assert w.group.state() == "Stable" and c.epoch == w.group.epoch == 2


def test_range_assignor() -> None:
    w = World()
    m1, m2 = w.client("m1", "a", "b", assignor="range"), w.client("m2", "a", "b")
    m1.beat(w)
    m2.beat(w)
    w.settle()
    assert m1.owned == parts(A, 0, 1, 2) | parts(B, 0, 1)
    assert m2.owned == parts(A, 3, 4, 5) | parts(B, 2)
    assert w.coordinator.describe([G], w.topics)[0].assignor_name == "range"


def test_uniform_assignor_is_balanced_and_sticky() -> None:
    topics = {"a": (A, 7), "b": (B, 5)}
    uniform = UniformAssignor()
    specs = [MemberSpec(f"m{i}", None, frozenset({"a", "b"}), frozenset()) for i in range(3)]
    first = uniform.assign(specs, topics)
    assert sorted(len(p) for p in first.values()) == [4, 4, 4]
    assert frozenset().union(*first.values()) == parts(A, *range(7)) | parts(B, *range(5))
    # A fourth member takes a share; everyone else keeps what it had, minus what it gave.
    specs = [MemberSpec(s.member_id, None, s.topics, first[s.member_id]) for s in specs]
    specs.append(MemberSpec("m3", None, frozenset({"a", "b"}), frozenset()))
    second = uniform.assign(specs, topics)
    assert sorted(len(p) for p in second.values()) == [3, 3, 3, 3]
    for member_id in ("m0", "m1", "m2"):
        assert second[member_id] <= first[member_id]


def test_uniform_assignor_with_different_subscriptions() -> None:
    topics = {"a": (A, 4), "b": (B, 4)}
    specs = [
        MemberSpec("m0", None, frozenset({"a"}), frozenset()),
        MemberSpec("m1", None, frozenset({"a", "b"}), frozenset()),
        MemberSpec("m2", None, frozenset({"b"}), frozenset()),
    ]
    result = UniformAssignor().assign(specs, topics)
    assert all(tp[0] == A for tp in result["m0"]) and all(tp[0] == B for tp in result["m2"])
    assert sorted(len(p) for p in result.values()) == [2, 3, 3]
    assert sum(len(p) for p in result.values()) == 8


def test_range_assignor_puts_static_members_first() -> None:
    specs = [
        MemberSpec("z", "pod-0", frozenset({"a"}), frozenset()),
        MemberSpec("a", None, frozenset({"a"}), frozenset()),
    ]
    result = RangeAssignor().assign(specs, {"a": (A, 3)})
    assert result == {"z": parts(A, 0, 1), "a": parts(A, 2)}


# -- offsets --------------------------------------------------------------------------------


def test_validate_commit_and_fetch() -> None:
    w = World()
    m1, m2 = w.client("m1"), w.client("m2")
    m1.beat(w)
    cv, fv = w.coordinator.validate_commit, w.coordinator.validate_fetch
    assert cv("other", "m1", 1) == ERR.GROUP_ID_NOT_FOUND
    assert cv(G, "m1", 1) == ERR.NONE
    assert cv(G, "m9", 1) == ERR.UNKNOWN_MEMBER_ID
    assert cv(G, "", -1) == ERR.UNKNOWN_MEMBER_ID  # the group has members
    m2.beat(w)
    m1.beat(w)  # revoking: m1 stays at epoch 1 while the group is at 2
    assert cv(G, "m1", 1) == ERR.NONE
    assert cv(G, "m1", 2) == ERR.STALE_MEMBER_EPOCH
    m1.beat(w)
    assert cv(G, "m1", 1) == ERR.STALE_MEMBER_EPOCH  # one epoch behind is stale, as in Kafka
    assert fv(G, "m1", 2) == ERR.NONE
    assert fv(G, "m1", 1) == ERR.STALE_MEMBER_EPOCH
    assert fv(G, None, -1) == ERR.NONE
    assert fv(G, "m9", 2) == ERR.UNKNOWN_MEMBER_ID
    for c in (m1, m2):
        c.leave(w)
    assert cv(G, "", -1) == ERR.NONE  # empty group: admin commits are fine
    # A member whose session ended is unknown once the timers have run.
    w.client("m3").beat(w)
    assert cv(G, "m3", w.group.epoch, now_ms=w.now + SESSION) == ERR.UNKNOWN_MEMBER_ID


# -- admin ----------------------------------------------------------------------------------


def test_describe() -> None:
    w = World()
    m1 = w.client("m1", "a", "b", instance_id="pod-0")
    m2 = w.client("m2", "a")
    m1.beat(w)
    m2.beat(w)
    w.coordinator.heartbeat(G, "m2", m2.epoch, rack_id="rack-1", topics=w.topics, now_ms=w.now)
    d = w.coordinator.describe([G, "nope", ""], w.topics_source)
    assert [x.error_code for x in d] == [ERR.NONE, ERR.GROUP_ID_NOT_FOUND, ERR.INVALID_GROUP_ID]
    g = d[0]
    assert (g.group_state, g.group_epoch, g.assignment_epoch, g.assignor_name) == (
        "Reconciling",
        2,
        2,
        "uniform",
    )
    first, second = g.members
    assert (first.member_id, first.instance_id, first.member_epoch) == ("m1", "pod-0", 1)
    assert (first.client_id, first.client_host, first.subscribed_topic_names) == (
        "client",
        "/10.0.0.1",
        ("a", "b"),
    )
    assert first.assignment == ((A, "a", (0, 1, 2, 3, 4, 5)), (B, "b", (0, 1, 2)))
    assert sum(len(p) for _, _, p in first.target_assignment) < 9
    assert (second.member_id, second.rack_id, second.assignment) == ("m2", "rack-1", ())
    assert second.target_assignment and second.subscribed_topic_regex is None
    w.settle()
    assert w.coordinator.describe([G], w.topics)[0].group_state == "Stable"
    # A deleted topic drops out of the description.
    del w.topics["b"]
    assert all(name == "a" for _, name, _ in w.coordinator.describe([G], w.topics)[0].members[0].assignment)


def test_list_delete_and_is_group() -> None:
    w = World()
    c = w.client("m1")
    c.beat(w)
    [listed] = w.coordinator.list_groups()
    assert (listed.group_id, listed.protocol_type, listed.state, listed.group_type) == (
        G,
        "consumer",
        "Stable",
        "consumer",
    )
    assert w.coordinator.list_groups(states_filter=["STABLE"]) == [listed]
    assert w.coordinator.list_groups(states_filter=["empty"]) == []
    assert w.coordinator.list_groups(types_filter=["classic"]) == []
    assert w.coordinator.delete(G) == ERR.NON_EMPTY_GROUP
    c.leave(w)
    assert w.coordinator.list_groups()[0].state == "Empty"
    assert w.coordinator.is_group(G)
    assert w.coordinator.delete(G) == ERR.NONE
    assert not w.coordinator.is_group(G)
    assert w.coordinator.delete(G) == ERR.GROUP_ID_NOT_FOUND


def test_topics_may_be_a_mapping_or_a_callable() -> None:
    sources: list[TopicsSource] = [{"a": (A, 2)}, lambda: {"a": (A, 2)}]
    for source in sources:
        c = ConsumerGroupCoordinator()
        r = c.heartbeat(G, "m", 0, subscribed_topic_names=["a"], owned_partitions=[], topics=source, now_ms=0)
        assert r.assignment == [(A, [0, 1])]


# -- the property: random joins, leaves, restarts and heartbeat orders --------------------------

SLOTS = 4
subscriptions = st.sampled_from([("a",), ("a", "b")])


class RandomClients(RuleBasedStateMachine):
    """Clients join, heartbeat (in any order, with full or minimal requests), leave, restart as
    static members, crash, change subscriptions; time passes and topics grow. After every step:
    no partition is consumed by two clients, and the group's bookkeeping is consistent. At the
    end, once heartbeats keep coming, every member reaches the group epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.w = World()
        self.slots: list[Client | None] = [None] * SLOTS
        self.ids = itertools.count()

    def live(self) -> list[int]:
        return [i for i, c in enumerate(self.slots) if c is not None]

    def pick(self, data: st.DataObject) -> Client:
        slot = data.draw(st.sampled_from(self.live()))
        c = self.slots[slot]
        assert c is not None
        return c

    def drop(self, c: Client) -> None:
        self.slots[self.slots.index(c)] = None
        self.w.clients.remove(c)

    def add(self, slot: int, topics: tuple[str, ...], instance_id: str | None, version: int) -> Client:
        n = next(self.ids)
        # v0 clients let the coordinator name them.
        c = Client(f"c{n}" if version else "", topics, instance_id=instance_id, version=version, lazy=True)
        self.slots[slot] = c
        self.w.clients.append(c)
        return c

    @rule(
        slot=st.integers(0, SLOTS - 1),
        topics=subscriptions,
        static=st.booleans(),
        version=st.sampled_from([0, 1]),
    )
    def join(self, slot: int, topics: tuple[str, ...], static: bool, version: int) -> None:
        c = self.slots[slot] or self.add(slot, topics, f"pod-{next(self.ids)}" if static else None, version)
        c.beat(self.w)

    @precondition(lambda self: self.live())
    @rule(data=st.data(), full=st.booleans())
    def beat(self, data: st.DataObject, full: bool) -> None:
        self.pick(data).beat(self.w, full=full)

    @precondition(lambda self: self.live())
    @rule(data=st.data())
    def reconcile(self, data: st.DataObject) -> None:
        self.pick(data).reconcile()
        self.w.check()

    @precondition(lambda self: self.live())
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        c = self.pick(data)
        self.drop(c)
        if c.epoch > 0:
            c.leave(self.w)

    @precondition(lambda self: any(c is not None and c.instance_id and c.epoch > 0 for c in self.slots))
    @rule(data=st.data())
    def restart_static(self, data: st.DataObject) -> None:
        c = data.draw(
            st.sampled_from([c for c in self.slots if c is not None and c.instance_id and c.epoch > 0])
        )
        slot = self.slots.index(c)
        self.drop(c)
        c.leave(self.w, epoch=-2)
        self.add(slot, c.topics, c.instance_id, c.version)  # joins at its first heartbeat

    @precondition(lambda self: self.live())
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        # A dead process consumes nothing; the coordinator finds out when its session ends.
        self.drop(self.pick(data))
        self.w.check()

    @precondition(lambda self: self.live())
    @rule(data=st.data(), topics=subscriptions)
    def resubscribe(self, data: st.DataObject, topics: tuple[str, ...]) -> None:
        self.pick(data).topics = topics

    @rule(ms=st.sampled_from([0, 1, 100, 1_000, 5_000, 20_000, 45_000]))
    def wait(self, ms: int) -> None:
        self.w.advance(ms)

    @rule(topic=st.sampled_from(["a", "b"]), more=st.integers(1, 3))
    def grow(self, topic: str, more: int) -> None:
        topic_id, count = self.w.topics[topic]
        self.w.topics[topic] = (topic_id, count + more)

    def teardown(self) -> None:
        w = self.w
        if not w.clients:
            return
        # Keep heartbeating: crashed members expire, restarted static members take over again,
        # and then everyone reaches the group epoch within a few rounds.
        for _ in range(SESSION // INTERVAL + 1):
            w.round(INTERVAL)
        w.settle(max_rounds=5)
        for c in w.clients:
            c.reconcile()
        group = w.group
        assert set(group.members) == {c.member_id for c in w.clients}
        subscribed = [parts(w.topics[t][0], *range(w.topics[t][1])) for t in group.subscribed_topics()]
        assert frozenset().union(*(c.owned for c in w.clients)) == frozenset().union(*subscribed)
        for c in w.clients:
            assert c.owned == group.members[c.member_id].assigned
            assert {tp[0] for tp in c.owned} <= {w.topics[t][0] for t in c.topics}
        if len({c.topics for c in w.clients}) == 1:
            assert max(loads(w)) - min(loads(w)) <= 1


TestRandomClients = RandomClients.TestCase
TestRandomClients.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
