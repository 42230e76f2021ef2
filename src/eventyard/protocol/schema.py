"""The shape of a generated message schema: one Field per field, covering all versions."""

from __future__ import annotations

from typing import Any, NamedTuple

VersionRange = tuple[int, int]


class Field(NamedTuple):
    name: str  # attribute name on the dataclass
    type: str  # spec type: "int32", "string", "[]int32", "[]FetchTopic", "SnapshotId" ...
    versions: VersionRange | None
    nullable: VersionRange | None
    tag: int | None
    tagged: VersionRange | None
    struct: Any  # the dataclass of a struct or struct-array field, else None
    flexible: VersionRange | None  # a per-field override of the message's flexible versions


Schema = tuple[Field, ...]


def in_range(version: int, r: VersionRange | None) -> bool:
    return r is not None and r[0] <= version <= r[1]
