"""The ACL authorizer without a broker: matching, prefixes, wildcards, DENY precedence, implied
operations, super users, filters and the durable store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventyard.security import acl as acl_module
from eventyard.security.acl import (
    CLUSTER_NAME,
    AclBinding,
    AclError,
    AclFilter,
    AclStore,
    Operation,
    PatternType,
    Permission,
    ResourceType,
    operations_bitfield,
)

TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
LITERAL, PREFIXED = PatternType.LITERAL, PatternType.PREFIXED
ALLOW, DENY = Permission.ALLOW, Permission.DENY
READ, WRITE, DESCRIBE, ALL = Operation.READ, Operation.WRITE, Operation.DESCRIBE, Operation.ALL
ALICE, BOB = "User:alice", "User:bob"
HOST = "10.0.0.7"


def binding(
    name: str,
    operation: Operation = READ,
    principal: str = ALICE,
    *,
    resource_type: ResourceType = TOPIC,
    pattern: PatternType = LITERAL,
    host: str = "*",
    permission: Permission = ALLOW,
) -> AclBinding:
    return AclBinding(resource_type, name, pattern, principal, host, operation, permission)


def store_with(*bindings: AclBinding, super_users: tuple[str, ...] = ()) -> AclStore:
    store = AclStore(super_users=super_users)
    store.create(list(bindings))
    return store


def may(store: AclStore, operation: Operation, name: str, principal: str = ALICE, **kw: object) -> bool:
    resource_type = kw.get("resource_type", TOPIC)
    host = kw.get("host", HOST)
    assert isinstance(resource_type, ResourceType) and isinstance(host, str)
    return store.authorize(principal, host, operation, resource_type, name)


# -- matching


def test_nothing_matching_is_denied() -> None:
    assert not may(AclStore(), READ, "orders")
    assert not may(store_with(binding("orders")), READ, "orders", BOB)


def test_literal_acl_matches_only_its_name() -> None:
    store = store_with(binding("orders"))
    assert may(store, READ, "orders")
    assert not may(store, READ, "orders2")
    assert not may(store, READ, "order")


def test_literal_wildcard_matches_every_resource_of_its_type() -> None:
    store = store_with(binding("*"))
    assert may(store, READ, "orders") and may(store, READ, "anything.at.all")
    assert not may(store, READ, "orders", resource_type=GROUP)


def test_prefixed_acl_matches_names_that_start_with_it() -> None:
    store = store_with(binding("alice.", pattern=PREFIXED))
    assert may(store, READ, "alice.orders")
    assert may(store, READ, "alice.")
    assert not may(store, READ, "alice")
    assert not may(store, READ, "bob.orders")
    # A prefixed "*" is a literal star, not a wildcard.
    star = store_with(binding("*", pattern=PREFIXED))
    assert not may(star, READ, "orders") and may(star, READ, "*orders")


def test_resource_types_are_separate() -> None:
    store = store_with(binding("shared", resource_type=GROUP))
    assert may(store, READ, "shared", resource_type=GROUP)
    assert not may(store, READ, "shared")


def test_wildcard_principal_matches_every_user() -> None:
    store = store_with(binding("public", principal="User:*"))
    assert may(store, READ, "public", ALICE) and may(store, READ, "public", "User:CN=app-one")


def test_host_must_match_exactly_or_be_a_wildcard() -> None:
    store = store_with(binding("orders", host=HOST))
    assert may(store, READ, "orders")
    assert not may(store, READ, "orders", host="10.0.0.8")


# -- permissions and operations


def test_deny_wins_over_allow() -> None:
    store = store_with(
        binding("alice.", ALL, pattern=PREFIXED),
        binding("alice.secret", READ, permission=DENY),
    )
    assert may(store, READ, "alice.orders")
    assert not may(store, READ, "alice.secret")
    assert may(store, WRITE, "alice.secret")  # a DENY only matches its own operation...
    everything = store_with(binding("alice.", ALL, pattern=PREFIXED), binding("*", ALL, permission=DENY))
    assert not may(everything, WRITE, "alice.orders")  # ...or every one with ALL


def test_deny_for_every_user_or_from_a_host() -> None:
    store = store_with(
        binding("orders", ALL),
        binding("orders", WRITE, "User:*", permission=DENY),
        binding("orders", READ, host="10.9.9.9", permission=DENY),
    )
    assert not may(store, WRITE, "orders")
    assert may(store, READ, "orders") and not may(store, READ, "orders", host="10.9.9.9")


@pytest.mark.parametrize("granted", [READ, WRITE, Operation.DELETE, Operation.ALTER, DESCRIBE, ALL])
def test_describe_is_implied(granted: Operation) -> None:
    assert may(store_with(binding("orders", granted)), DESCRIBE, "orders")


def test_implications_go_one_way_only() -> None:
    describe = store_with(binding("orders", DESCRIBE))
    assert not may(describe, READ, "orders") and not may(describe, WRITE, "orders")
    configs = store_with(binding("orders", Operation.ALTER_CONFIGS))
    assert may(configs, Operation.DESCRIBE_CONFIGS, "orders")
    assert not may(configs, Operation.ALTER, "orders")
    assert not may(
        store_with(binding("orders", Operation.DESCRIBE_CONFIGS)), Operation.ALTER_CONFIGS, "orders"
    )


def test_deny_is_not_implied() -> None:
    # Denying DESCRIBE does not deny READ (Kafka only matches a DENY's own operation or ALL).
    store = store_with(binding("orders", READ), binding("orders", DESCRIBE, permission=DENY))
    assert may(store, READ, "orders") and not may(store, DESCRIBE, "orders")


def test_super_users_bypass_everything() -> None:
    store = store_with(binding("*", ALL, "User:*", permission=DENY), super_users=("User:admin",))
    assert may(store, Operation.ALTER, CLUSTER_NAME, "User:admin", resource_type=CLUSTER)
    assert not may(store, READ, "orders")
    assert store.authorize_any("User:admin", HOST, WRITE, TOPIC)


def test_authorize_any_needs_an_allow_that_no_deny_covers() -> None:
    assert not AclStore().authorize_any(ALICE, HOST, WRITE, TOPIC)
    prefixed = store_with(binding("alice.", WRITE, pattern=PREFIXED))
    assert prefixed.authorize_any(ALICE, HOST, WRITE, TOPIC)
    assert not prefixed.authorize_any(BOB, HOST, WRITE, TOPIC)
    assert not prefixed.authorize_any(ALICE, HOST, WRITE, GROUP)
    assert not store_with(binding("alice.", READ, pattern=PREFIXED)).authorize_any(ALICE, HOST, WRITE, TOPIC)
    covered = [
        binding("*", WRITE, permission=DENY),
        binding("ali", WRITE, pattern=PREFIXED, permission=DENY),
    ]
    for deny in covered:
        assert not store_with(binding("alice.", WRITE, pattern=PREFIXED), deny).authorize_any(
            ALICE, HOST, WRITE, TOPIC
        )
    # A literal DENY on one name leaves the rest of a prefix writable.
    partial = store_with(binding("alice.", ALL, pattern=PREFIXED), binding("alice.", WRITE, permission=DENY))
    assert partial.authorize_any(ALICE, HOST, WRITE, TOPIC)


def test_authorized_operations() -> None:
    store = store_with(binding("orders", READ), binding("orders", Operation.ALTER_CONFIGS))
    ops = store.authorized_operations(ALICE, HOST, TOPIC, "orders")
    assert set(ops) == {READ, DESCRIBE, Operation.ALTER_CONFIGS, Operation.DESCRIBE_CONFIGS}
    assert operations_bitfield(ops) == (1 << 3) | (1 << 8) | (1 << 10) | (1 << 11)
    assert store.authorized_operations(BOB, HOST, TOPIC, "orders") == []


# -- creation checks and filters


@pytest.mark.parametrize(
    ("resource_type", "name", "pattern", "principal", "operation", "permission"),
    [
        (ResourceType.ANY, "t", LITERAL, ALICE, READ, ALLOW),
        (TOPIC, "t", PatternType.MATCH, ALICE, READ, ALLOW),
        (TOPIC, "t", LITERAL, ALICE, Operation.ANY, ALLOW),
        (TOPIC, "t", LITERAL, ALICE, READ, Permission.ANY),
        (TOPIC, "", LITERAL, ALICE, READ, ALLOW),
        (TOPIC, "t", LITERAL, "alice", READ, ALLOW),
        (CLUSTER, "my-cluster", LITERAL, ALICE, Operation.ALTER, ALLOW),
        (TOPIC, "t", LITERAL, ALICE, 99, ALLOW),
    ],
)
def test_invalid_bindings_are_refused(
    resource_type: int, name: str, pattern: int, principal: str, operation: int, permission: int
) -> None:
    with pytest.raises(AclError):
        AclBinding.of(resource_type, name, pattern, principal, "*", operation, permission)


def test_filters() -> None:
    acls = [
        binding("orders"),
        binding("*", WRITE, BOB),
        binding("ord", DESCRIBE, pattern=PREFIXED),
        binding("orders", READ, resource_type=GROUP),
        binding("other", READ, permission=DENY),
    ]
    store = store_with(*acls)

    def found(**kw: object) -> list[AclBinding]:
        return store.describe(AclFilter(**kw))  # type: ignore[arg-type]

    assert found() == acls
    assert found(resource_type=TOPIC, resource_name="orders") == [acls[0]]  # ANY: the name as given
    assert found(resource_type=TOPIC, resource_name="orders", pattern_type=PatternType.MATCH) == acls[:3]
    assert found(pattern_type=PREFIXED) == [acls[2]]
    assert found(resource_name="*", pattern_type=LITERAL) == [acls[1]]
    assert found(principal=BOB) == [acls[1]]
    assert found(operation=READ, permission=DENY) == [acls[4]]
    assert found(resource_type=GROUP) == [acls[3]]
    with pytest.raises(AclError):
        AclFilter.of(TOPIC, None, PatternType.UNKNOWN, None, None, Operation.ANY, Permission.ANY)


def test_delete_reports_matches_per_filter() -> None:
    acls = [binding("a"), binding("b"), binding("c", WRITE)]
    store = store_with(*acls)
    removed = store.delete(
        [AclFilter(operation=READ), AclFilter(resource_name="b"), AclFilter(principal=BOB)]
    )
    assert removed == [acls[:2], [acls[1]], []]
    assert list(store) == [acls[2]]
    assert not may(store, READ, "a")


def test_creating_twice_keeps_one() -> None:
    store = store_with(binding("a"), binding("a"))
    store.create([binding("a")])
    assert len(store) == 1


# -- the store on disk


def test_acls_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "acls.json"
    acls = [binding("alice.", ALL, pattern=PREFIXED), binding("x", READ, "User:*", permission=DENY)]
    AclStore(path).create(acls)
    reopened = AclStore(path, super_users=("User:admin",))
    assert list(reopened) == acls
    assert may(reopened, WRITE, "alice.orders") and not may(reopened, READ, "x")
    assert json.loads(path.read_text())["acls"][0]["pattern_type"] == "PREFIXED"
    reopened.delete([AclFilter(resource_name="x")])
    assert list(AclStore(path)) == acls[:1]
    assert [p.name for p in tmp_path.iterdir()] == ["acls.json"]  # no temporary file left behind


def test_a_failed_write_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = AclStore(tmp_path / "acls.json")
    store.create([binding("a")])

    def full_disk(path: Path, content: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(acl_module, "write_atomically", full_disk)
    with pytest.raises(OSError):
        store.create([binding("b")])
    with pytest.raises(OSError):
        store.delete([AclFilter()])
    assert list(store) == [binding("a")]
    assert may(store, READ, "a") and not may(store, READ, "b")


@pytest.mark.parametrize(
    "content", ["not json", '{"version": 9, "acls": []}', '{"version": 1, "acls": [{}]}']
)
def test_an_unreadable_file_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "acls.json"
    path.write_text(content)
    with pytest.raises(AclError):
        AclStore(path)


# -- the indexed decision against a plain reading of the rules

NAMES = st.sampled_from(["a", "ab", "abc", "b", "*"])
BINDINGS = st.builds(
    AclBinding,
    st.sampled_from([TOPIC, GROUP]),
    NAMES,
    st.sampled_from([LITERAL, PREFIXED]),
    st.sampled_from([ALICE, BOB, "User:*"]),
    st.sampled_from(["*", HOST]),
    st.sampled_from([READ, WRITE, DESCRIBE, ALL]),
    st.sampled_from([ALLOW, DENY]),
)


def plain_decision(
    acls: list[AclBinding], principal: str, op: Operation, rtype: ResourceType, name: str
) -> bool:
    def applies(a: AclBinding) -> bool:
        if a.resource_type != rtype or a.principal not in (principal, "User:*") or a.host not in ("*", HOST):
            return False
        if a.pattern_type == PREFIXED:
            return name.startswith(a.resource_name)
        return a.resource_name in (name, "*")

    relevant = [a for a in acls if applies(a)]
    if any(a.permission == DENY and a.operation in (op, ALL) for a in relevant):
        return False
    implied = {READ, WRITE, DESCRIBE} if op == DESCRIBE else {op}
    return any(a.permission == ALLOW and (a.operation in implied or a.operation == ALL) for a in relevant)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(BINDINGS, max_size=8),
    st.sampled_from([ALICE, BOB]),
    st.sampled_from([READ, WRITE, DESCRIBE]),
    st.sampled_from([TOPIC, GROUP]),
    st.sampled_from(["a", "ab", "abc", "abd", "b", "c"]),
)
def test_decisions_match_the_rules(
    acls: list[AclBinding], principal: str, op: Operation, rtype: ResourceType, name: str
) -> None:
    store = store_with(*acls)
    assert store.authorize(principal, HOST, op, rtype, name) == plain_decision(
        acls, principal, op, rtype, name
    )
