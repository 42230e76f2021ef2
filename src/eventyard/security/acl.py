"""Kafka ACLs: the bindings, the filters that find them, and the authorization decision (sans-IO
apart from the store's file).

The rules are Kafka's (KIP-11, prefixed patterns from KIP-290):
- an ACL binds a resource pattern (type, name, LITERAL or PREFIXED; the literal name "*" matches
  every resource of its type) to an entry: principal ("User:*" matches every user), host ("*" or an
  exact client address), operation (ALL matches every one) and permission;
- super users are allowed everything;
- a matching DENY wins over any ALLOW; a DENY only matches its own operation or ALL;
- an ALLOW of READ, WRITE, DELETE or ALTER implies DESCRIBE, and ALTER_CONFIGS implies
  DESCRIBE_CONFIGS;
- nothing matching means denied (Kafka's allow.everyone.if.no.acl.found=false).

Persistence: with a path, every change rewrites a JSON file atomically (temporary file, fsync,
rename, fsync of the directory); without one the ACLs live in memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from eventyard.atomic_file import write_atomically

FORMAT_VERSION = 1
WILDCARD = "*"
WILDCARD_PRINCIPAL = "User:*"
CLUSTER_NAME = "kafka-cluster"  # the one CLUSTER resource


class ResourceType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(IntEnum):
    UNKNOWN = 0
    ANY = 1  # filters only: any pattern type, the name taken literally
    MATCH = 2  # filters only: every pattern that would match the named resource
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class Permission(IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


# An ALLOW of any of these operations also allows the key.
_IMPLIED_BY: dict[Operation, frozenset[Operation]] = {
    Operation.DESCRIBE: frozenset(
        {Operation.DESCRIBE, Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER}
    ),
    Operation.DESCRIBE_CONFIGS: frozenset({Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS}),
}

# What each resource type supports: the operations reported as "authorized operations" (KIP-430).
SUPPORTED_OPERATIONS: dict[ResourceType, tuple[Operation, ...]] = {
    ResourceType.TOPIC: (
        Operation.READ,
        Operation.WRITE,
        Operation.CREATE,
        Operation.DESCRIBE,
        Operation.DELETE,
        Operation.ALTER,
        Operation.DESCRIBE_CONFIGS,
        Operation.ALTER_CONFIGS,
    ),
    ResourceType.GROUP: (Operation.READ, Operation.DESCRIBE, Operation.DELETE),
    ResourceType.CLUSTER: (
        Operation.CREATE,
        Operation.CLUSTER_ACTION,
        Operation.DESCRIBE_CONFIGS,
        Operation.ALTER_CONFIGS,
        Operation.IDEMPOTENT_WRITE,
        Operation.ALTER,
        Operation.DESCRIBE,
    ),
    ResourceType.TRANSACTIONAL_ID: (Operation.DESCRIBE, Operation.WRITE),
    ResourceType.DELEGATION_TOKEN: (Operation.DESCRIBE,),
    ResourceType.USER: (Operation.CREATE_TOKENS, Operation.DESCRIBE_TOKENS),
}


class AclError(ValueError):
    """A binding or filter that cannot be created or used, or a store file that cannot be read."""


@dataclass(frozen=True, slots=True)
class AclBinding:
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: Operation
    permission: Permission

    @classmethod
    def of(
        cls,
        resource_type: int,
        resource_name: str,
        pattern_type: int,
        principal: str,
        host: str,
        operation: int,
        permission: int,
    ) -> AclBinding:
        """A checked binding from wire values; AclError says what is wrong."""
        try:
            binding = cls(
                ResourceType(resource_type),
                resource_name,
                PatternType(pattern_type),
                principal,
                host,
                Operation(operation),
                Permission(permission),
            )
        except ValueError:
            raise AclError("unknown resource type, pattern type, operation or permission") from None
        problem = binding.problem()
        if problem:
            raise AclError(problem)
        return binding

    def problem(self) -> str | None:
        """Why this binding cannot be stored, or None (Kafka's checks on CreateAcls)."""
        concrete = (
            self.resource_type not in (ResourceType.UNKNOWN, ResourceType.ANY)
            and self.pattern_type in (PatternType.LITERAL, PatternType.PREFIXED)
            and self.operation not in (Operation.UNKNOWN, Operation.ANY)
            and self.permission in (Permission.ALLOW, Permission.DENY)
        )
        if not concrete:
            return "an ACL needs a concrete resource type, pattern type, operation and permission"
        if not self.resource_name:
            return "the resource name must not be empty"
        if self.resource_type is ResourceType.CLUSTER and self.resource_name != CLUSTER_NAME:
            return f"the cluster resource is named {CLUSTER_NAME!r}"
        kind, colon, name = self.principal.partition(":")
        if not (kind and colon and name):
            return f"principal {self.principal!r} is not of the form Type:name (User:alice)"
        if not self.host:
            return "the host must be '*' or a client address"
        return None

    def to_json(self) -> dict[str, str]:
        return {
            "resource_type": self.resource_type.name,
            "resource_name": self.resource_name,
            "pattern_type": self.pattern_type.name,
            "principal": self.principal,
            "host": self.host,
            "operation": self.operation.name,
            "permission": self.permission.name,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AclBinding:
        binding = cls(
            ResourceType[data["resource_type"]],
            str(data["resource_name"]),
            PatternType[data["pattern_type"]],
            str(data["principal"]),
            str(data["host"]),
            Operation[data["operation"]],
            Permission[data["permission"]],
        )
        problem = binding.problem()
        if problem:
            raise AclError(problem)
        return binding


@dataclass(frozen=True, slots=True)
class AclFilter:
    """What DescribeAcls and DeleteAcls select: None and ANY match everything."""

    resource_type: ResourceType = ResourceType.ANY
    resource_name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: Operation = Operation.ANY
    permission: Permission = Permission.ANY

    @classmethod
    def of(
        cls,
        resource_type: int,
        resource_name: str | None,
        pattern_type: int,
        principal: str | None,
        host: str | None,
        operation: int,
        permission: int,
    ) -> AclFilter:
        try:
            selected = cls(
                ResourceType(resource_type),
                resource_name,
                PatternType(pattern_type),
                principal,
                host,
                Operation(operation),
                Permission(permission),
            )
        except ValueError:
            raise AclError("unknown resource type, pattern type, operation or permission") from None
        unknown = (
            selected.resource_type is ResourceType.UNKNOWN
            or selected.pattern_type is PatternType.UNKNOWN
            or selected.operation is Operation.UNKNOWN
            or selected.permission is Permission.UNKNOWN
        )
        if unknown:
            raise AclError("a filter cannot select UNKNOWN types, patterns, operations or permissions")
        return selected

    def matches(self, acl: AclBinding) -> bool:
        if self.resource_type is not ResourceType.ANY and self.resource_type is not acl.resource_type:
            return False
        if self.principal is not None and self.principal != acl.principal:
            return False
        if self.host is not None and self.host != acl.host:
            return False
        if self.operation is not Operation.ANY and self.operation is not acl.operation:
            return False
        if self.permission is not Permission.ANY and self.permission is not acl.permission:
            return False
        return self._matches_pattern(acl)

    def _matches_pattern(self, acl: AclBinding) -> bool:
        if self.pattern_type not in (PatternType.ANY, PatternType.MATCH, acl.pattern_type):
            return False
        if self.resource_name is None:
            return True
        if self.pattern_type is not PatternType.MATCH:
            return self.resource_name == acl.resource_name
        # MATCH: every pattern that applies to the resource of that name.
        if acl.pattern_type is PatternType.LITERAL:
            return acl.resource_name in (self.resource_name, WILDCARD)
        return self.resource_name.startswith(acl.resource_name)


class AclStore:
    """The ACLs of a broker, its super users, and the decisions they make."""

    def __init__(self, path: str | os.PathLike[str] | None = None, super_users: Iterable[str] = ()) -> None:
        self.path = Path(path) if path is not None else None
        self.super_users = frozenset(super_users)
        # Insertion-ordered, and indexed by (type, pattern type, name) for O(len(name)) look-ups.
        self._acls: dict[AclBinding, None] = {}
        self._index: dict[tuple[ResourceType, PatternType, str], list[AclBinding]] = {}
        if self.path is not None and self.path.exists():
            self._load(self.path)

    def __len__(self) -> int:
        return len(self._acls)

    def __iter__(self) -> Iterator[AclBinding]:
        return iter(list(self._acls))

    # -- decisions

    def authorize(
        self, principal: str, host: str, operation: Operation, resource_type: ResourceType, name: str
    ) -> bool:
        if principal in self.super_users:
            return True
        acls = list(self._matching(resource_type, name))
        if any(
            acl.permission is Permission.DENY and acl.operation in (operation, Operation.ALL)
            for acl in self._for(acls, principal, host)
        ):
            return False
        allowed_by = _IMPLIED_BY.get(operation, frozenset({operation})) | {Operation.ALL}
        return any(
            acl.permission is Permission.ALLOW and acl.operation in allowed_by
            for acl in self._for(acls, principal, host)
        )

    def authorize_any(
        self, principal: str, host: str, operation: Operation, resource_type: ResourceType
    ) -> bool:
        """Whether some resource of the type may be operated on: an ALLOW that no DENY fully covers
        (Kafka's authorizeByResourceType, used for idempotent producers)."""
        if principal in self.super_users:
            return True
        mine = [
            acl
            for acl in self._for(self._acls, principal, host)
            if acl.resource_type is resource_type and acl.operation in (operation, Operation.ALL)
        ]
        denies = [acl for acl in mine if acl.permission is Permission.DENY]

        def denied(allow: AclBinding) -> bool:
            # A DENY covers an ALLOW when every resource the ALLOW matches is also denied.
            for d in denies:
                if d.pattern_type is PatternType.PREFIXED:
                    if allow.resource_name.startswith(d.resource_name):
                        return True
                elif d.resource_name == WILDCARD or (
                    d.resource_name == allow.resource_name and allow.pattern_type is PatternType.LITERAL
                ):
                    return True
            return False

        return any(acl.permission is Permission.ALLOW and not denied(acl) for acl in mine)

    def authorized_operations(
        self, principal: str, host: str, resource_type: ResourceType, name: str
    ) -> list[Operation]:
        return [
            op
            for op in SUPPORTED_OPERATIONS.get(resource_type, ())
            if self.authorize(principal, host, op, resource_type, name)
        ]

    def _matching(self, resource_type: ResourceType, name: str) -> Iterator[AclBinding]:
        """The ACLs whose pattern covers the named resource."""
        index = self._index
        yield from index.get((resource_type, PatternType.LITERAL, name), ())
        if name != WILDCARD:
            yield from index.get((resource_type, PatternType.LITERAL, WILDCARD), ())
        for end in range(1, len(name) + 1):
            yield from index.get((resource_type, PatternType.PREFIXED, name[:end]), ())

    @staticmethod
    def _for(acls: Iterable[AclBinding], principal: str, host: str) -> Iterator[AclBinding]:
        for acl in acls:
            if acl.principal in (principal, WILDCARD_PRINCIPAL) and acl.host in (host, WILDCARD):
                yield acl

    # -- administration

    def create(self, bindings: Sequence[AclBinding]) -> None:
        """Add bindings (already present ones are kept once) and persist; all or nothing."""
        added = [b for b in dict.fromkeys(bindings) if b not in self._acls]
        for binding in added:
            self._add(binding)
        try:
            self.save()
        except OSError:
            for binding in added:
                self._remove(binding)
            raise

    def describe(self, selected: AclFilter) -> list[AclBinding]:
        return [acl for acl in self._acls if selected.matches(acl)]

    def delete(self, filters: Sequence[AclFilter]) -> list[list[AclBinding]]:
        """Remove what each filter matches and persist; per filter, the bindings it matched."""
        matched = [self.describe(f) for f in filters]
        removed = list(dict.fromkeys(b for bindings in matched for b in bindings))
        for binding in removed:
            self._remove(binding)
        try:
            self.save()
        except OSError:
            for binding in removed:
                self._add(binding)
            raise
        return matched

    def _add(self, binding: AclBinding) -> None:
        self._acls[binding] = None
        key = (binding.resource_type, binding.pattern_type, binding.resource_name)
        self._index.setdefault(key, []).append(binding)

    def _remove(self, binding: AclBinding) -> None:
        self._acls.pop(binding, None)
        key = (binding.resource_type, binding.pattern_type, binding.resource_name)
        bucket = self._index.get(key, [])
        if binding in bucket:
            bucket.remove(binding)
        if not bucket:
            self._index.pop(key, None)

    # -- persistence

    def save(self) -> None:
        if self.path is None:
            return
        data = {"version": FORMAT_VERSION, "acls": [acl.to_json() for acl in self._acls]}
        write_atomically(self.path, json.dumps(data, indent=2).encode() + b"\n")

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_bytes())
            if data.get("version") != FORMAT_VERSION:
                raise AclError(f"unsupported ACL file version {data.get('version')!r}")
            for entry in data["acls"]:
                self._add(AclBinding.from_json(entry))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AclError(f"cannot read ACL file {path}: {exc}") from exc


def operations_bitfield(operations: Iterable[Operation]) -> int:
    """The int32 of the protocol's authorized-operations fields: bit n set for operation code n."""
    return sum(1 << int(op) for op in set(operations))
