"""How `eventyard groups reset-offsets` works out the new offsets, before anything is changed.

Its options parsed (`topic_spec`, `timestamp_ms`), the partitions they name (`partitions_of`), and
the plan: the new offset of each partition, clamped to its log (`plan_reset`). The command itself,
which checks the group is idle, prints the plan and commits it, is in groups.py.
"""

from __future__ import annotations

from datetime import datetime

import click

# confluent_kafka.admin re-exports OffsetSpec without an __all__, which strict mypy does not count as export.
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from eventyard.cli.cluster import Cluster
from eventyard.cli.groups_common import EARLIEST, LATEST, Key, log_offsets


def topic_spec(value: str) -> tuple[str, list[int] | None]:
    """TOPIC or TOPIC:0,2,5 (topic names cannot contain ':')."""
    topic, sep, rest = value.partition(":")
    try:
        partitions = sorted({int(p) for p in rest.split(",")}) if sep else None
    except ValueError:
        partitions = []
    if not topic or partitions == [] or any(p < 0 for p in partitions or []):
        raise click.BadParameter(
            f"expected TOPIC or TOPIC:PARTITION,..., got {value!r}", param_hint="--topic"
        )
    return topic, partitions


def timestamp_ms(value: str) -> int:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"expected an ISO 8601 time such as 2024-05-01T12:00:00Z, got {value!r}",
            param_hint="--to-datetime",
        ) from None
    # Without a zone the time is local, as in Kafka's tool; astimezone() reads naive times so.
    return int(when.astimezone().timestamp() * 1000)


def partitions_of(
    cluster: Cluster, admin: AdminClient, specs: list[tuple[str, list[int] | None]]
) -> list[Key]:
    keys: set[Key] = set()
    for topic, wanted in specs:
        found = cluster.topic_metadata(admin, topic).partitions
        for p in wanted or found:
            if p not in found:
                raise click.ClickException(f"topic {topic!r} has no partition {p} (it has {len(found)})")
            keys.add((topic, p))
    return sorted(keys)


def plan_reset(
    cluster: Cluster, admin: AdminClient, keys: list[Key], current: dict[Key, int], how: str, value: int
) -> list[tuple[Key, int]]:
    """The new offset of each partition; offsets past either end of its log move to that end (as Kafka's
    tool does). `value` is the offset, the shift or the time in ms, depending on `how`."""
    starts = log_offsets(cluster, admin, keys, EARLIEST)
    ends = log_offsets(cluster, admin, keys, LATEST)
    at_time = {}
    if how == "datetime":
        at_time = log_offsets(cluster, admin, keys, OffsetSpec.for_timestamp(value))
    plan = []
    for key in keys:
        start, end = starts[key], ends[key]
        if start is None or end is None:  # deleted since partitions_of found it
            raise click.ClickException(f"cannot read the log offsets of {key[0]}:{key[1]}")
        if how == "earliest":
            wanted = start
        elif how == "latest":
            wanted = end
        elif how == "offset":
            wanted = value
        elif how == "shift":
            if key not in current:
                raise click.ClickException(f"the group has no committed offset on {key[0]}:{key[1]} to shift")
            wanted = current[key] + value
        else:
            found = at_time[key]
            # No record at or after that time: offsets_for_times answers -1; Kafka's tool takes the end.
            wanted = end if found is None or found < 0 else found
        plan.append((key, min(max(wanted, start), end)))
    return plan
