"""`eventyard groups`: list, describe and delete consumer groups, and reset their committed offsets.

Like the other client commands it is built on confluent-kafka's AdminClient, so it works against any
Kafka cluster; the output follows Kafka's own kafka-consumer-groups tool where it makes sense.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any

import click
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)

# confluent_kafka.admin re-exports OffsetSpec without an __all__, which strict mypy does not count as export.
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from eventyard.cli.cluster import TIMEOUT, Cluster, connection_options, error_code, table

_EARLIEST = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_LATEST = OffsetSpec.latest()  # type: ignore[no-untyped-call]

# The state names Kafka uses on the wire and in its tools.
_STATE_NAMES = {
    ConsumerGroupState.STABLE: "Stable",
    ConsumerGroupState.EMPTY: "Empty",
    ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
    ConsumerGroupState.DEAD: "Dead",
    ConsumerGroupState.UNKNOWN: "Unknown",
}
_STATES_BY_NAME = {name: state for state, name in _STATE_NAMES.items()}
# Offsets may only be rewritten while no consumer can overwrite them (Dead: the group does not exist yet).
_IDLE = {ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD}

# Broker answers meaning "the group has members": DeleteGroups says NON_EMPTY_GROUP, and a standalone
# commit (what alter_consumer_group_offsets sends) to a group with members is refused with the others.
_ACTIVE = {
    KafkaError.NON_EMPTY_GROUP,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.REBALANCE_IN_PROGRESS,
}
# A topic deleted after the group committed to it: its row shows no end offset rather than failing.
# (_NOENT: librdkafka's answer when none of the partitions asked about has a leader, say all are gone.)
_GONE = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._NOENT,
}

Key = tuple[str, int]


def _echo_table(rows: list[list[str]], indent: str = "") -> None:
    for line in table(rows):
        click.echo(indent + line)


def _shown(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _state_name(description: Any) -> str:
    return _STATE_NAMES.get(getattr(description, "state", ConsumerGroupState.UNKNOWN), "Unknown")


def _protocol_type(description: Any) -> str:
    # confluent-kafka only tells whether the protocol type is empty: a group that only ever had
    # offsets committed for it (a "simple" group) rather than members joining with the consumer protocol.
    return "" if description.is_simple_consumer_group else "consumer"


@contextmanager
def _group_failures(cluster: Cluster, doing: str, group: str, admin: AdminClient) -> Iterator[None]:
    """Like Cluster.failures, with clearer messages for the broker's group errors."""
    with cluster.failures(doing, admin):
        try:
            yield
        except KafkaException as exc:
            code = error_code(exc)
            if code == KafkaError.GROUP_ID_NOT_FOUND:
                raise click.ClickException(f"consumer group {group!r} does not exist") from exc
            if code in _ACTIVE:
                raise click.ClickException(
                    f"{doing}: the group has active members; stop its consumers first"
                ) from exc
            raise


def _description(cluster: Cluster, admin: AdminClient, group: str, must_exist: bool = True) -> Any:
    """The group's ConsumerGroupDescription; an unknown group is described as Dead (Kafka's answer)."""
    with _group_failures(cluster, f"cannot describe consumer group {group!r}", group, admin):
        description = admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result()
    if must_exist and description.state == ConsumerGroupState.DEAD:
        raise click.ClickException(f"consumer group {group!r} does not exist")
    return description


def _committed(cluster: Cluster, admin: AdminClient, group: str, keys: list[Key] | None) -> dict[Key, int]:
    """The group's committed offsets (of the given partitions, or of all); no commit: no entry."""
    request = ConsumerGroupTopicPartitions(
        group, None if keys is None else [TopicPartition(topic, p) for topic, p in keys]
    )
    with _group_failures(cluster, f"cannot read the offsets of group {group!r}", group, admin):
        found = admin.list_consumer_group_offsets([request], request_timeout=TIMEOUT)[group].result()
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in found.topic_partitions or []
        if tp.error is None and tp.offset >= 0
    }


def _log_offsets(
    cluster: Cluster, admin: AdminClient, keys: Iterable[Key], spec: Any
) -> dict[Key, int | None]:
    """ListOffsets for the partitions (one request per leader); None for partitions that do not exist."""
    wanted = {TopicPartition(topic, p): spec for topic, p in keys}
    offsets: dict[Key, int | None] = {}
    if not wanted:
        return offsets
    with cluster.failures("cannot read the offsets of the partitions", admin):
        for tp, future in admin.list_offsets(wanted, request_timeout=TIMEOUT).items():
            try:
                offsets[(tp.topic, tp.partition)] = future.result().offset
            except KafkaException as exc:
                if error_code(exc) not in _GONE:
                    raise
                offsets[(tp.topic, tp.partition)] = None
    return offsets


@click.group()
def groups() -> None:
    """List, describe and delete consumer groups, and reset their offsets."""


@groups.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(list(_STATES_BY_NAME), case_sensitive=False),
    help="Only groups in this state (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@connection_options
def list_(
    states: tuple[str, ...], as_json: bool, bootstrap_server: str, client_settings: tuple[str, ...]
) -> None:
    """List consumer groups.

    With their state, protocol type (empty for groups that only ever had offsets set) and member count.
    """
    cluster = Cluster.from_options(bootstrap_server, client_settings)
    wanted = {_STATES_BY_NAME[name] for name in states}
    admin = cluster.admin()
    with cluster.failures("cannot list consumer groups", admin):
        options: dict[str, Any] = {"states": wanted} if wanted else {}
        result = admin.list_consumer_groups(request_timeout=TIMEOUT, **options).result()
        if result.errors and not result.valid:
            raise KafkaException(result.errors[0])  # nothing listed: say why
    for error in result.errors or []:
        click.echo(f"warning: some groups may be missing: {error.str()}", err=True)
    # Filter here too: brokers older than Kafka 2.6 ignore the states filter.
    listed = sorted(
        (g for g in result.valid or [] if not wanted or g.state in wanted), key=lambda g: g.group_id
    )
    descriptions: dict[str, Any] = {}
    if listed:
        with cluster.failures("cannot describe consumer groups", admin):
            futures = admin.describe_consumer_groups([g.group_id for g in listed], request_timeout=TIMEOUT)
        for group_id, future in futures.items():
            # A group gone since it was listed stays in the listing, without a member count.
            with suppress(KafkaException):
                descriptions[group_id] = future.result()
    rows = [
        {
            "group": g.group_id,
            "state": _state_name(g),
            "protocol_type": _protocol_type(g),
            "members": len(descriptions[g.group_id].members) if g.group_id in descriptions else None,
        }
        for g in listed
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = [["GROUP", "STATE", "PROTOCOL-TYPE", "MEMBERS"]]
    table += [[r["group"], r["state"], _shown(r["protocol_type"]), _shown(r["members"])] for r in rows]
    _echo_table(table)


def _describe(cluster: Cluster, group: str) -> dict[str, Any]:
    admin = cluster.admin()
    description = _description(cluster, admin, group)
    committed = _committed(cluster, admin, group, None)
    owners: dict[Key, str] = {}
    members = []
    for member in description.members:
        assigned = sorted((tp.topic, tp.partition) for tp in member.assignment.topic_partitions)
        owners.update((key, member.member_id) for key in assigned)
        members.append(
            {
                "member_id": member.member_id,
                "group_instance_id": member.group_instance_id,
                "client_id": member.client_id,
                "host": member.host,
                "partitions": [{"topic": topic, "partition": p} for topic, p in assigned],
            }
        )
    # Assigned partitions without a commit are shown too: their consumer starts per auto.offset.reset.
    keys = sorted(set(committed) | set(owners))
    ends = _log_offsets(cluster, admin, keys, _LATEST)
    starts = _log_offsets(cluster, admin, [key for key in keys if key not in committed], _EARLIEST)
    partitions = []
    for key in keys:
        end, offset = ends[key], committed.get(key)
        base = starts.get(key) if offset is None else offset
        partitions.append(
            {
                "topic": key[0],
                "partition": key[1],
                "committed_offset": offset,
                "log_end_offset": end,
                "lag": None if end is None or base is None else end - base,
                "owner": owners.get(key),
            }
        )
    coordinator = description.coordinator
    return {
        "group": group,
        "state": _state_name(description),
        "protocol_type": _protocol_type(description),
        "assignor": description.partition_assignor or None,
        "coordinator": None
        if coordinator is None
        else {"id": coordinator.id, "host": coordinator.host, "port": coordinator.port},
        "members": members,
        "partitions": partitions,
        "total_lag": sum(p["lag"] for p in partitions if p["lag"] is not None),
    }


def _compact(partitions: list[dict[str, Any]]) -> str:
    """orders:0,1 payments:2 — a member's assignment on one line."""
    by_topic: dict[str, list[str]] = {}
    for part in partitions:
        by_topic.setdefault(part["topic"], []).append(str(part["partition"]))
    return " ".join(f"{topic}:{','.join(ids)}" for topic, ids in by_topic.items()) or "-"


@groups.command("describe")
@click.argument("group")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@connection_options
def describe(group: str, as_json: bool, bootstrap_server: str, client_settings: tuple[str, ...]) -> None:
    """Show the members, offsets and lag of GROUP.

    Per partition: the committed offset, the log end offset, the lag and the member it is assigned to.
    A partition without a committed offset counts its lag from the start of the log.
    """
    info = _describe(Cluster.from_options(bootstrap_server, client_settings), group)
    if as_json:
        click.echo(json.dumps(info))
        return
    node = info["coordinator"]
    where = "-" if node is None else f"{node['id']} ({node['host']}:{node['port']})"
    click.echo(
        f"Group: {group}  State: {info['state']}  Protocol type: {_shown(info['protocol_type'])}"
        f"  Assignor: {_shown(info['assignor'])}  Coordinator: {where}"
    )
    members: list[dict[str, Any]] = info["members"]
    click.echo(f"Members: {len(members) or 'none'}")
    if members:
        rows = [["MEMBER-ID", "CLIENT-ID", "HOST", "PARTITIONS"]]
        rows += [[m["member_id"], m["client_id"], m["host"], _compact(m["partitions"])] for m in members]
        _echo_table(rows, "  ")
    partitions: list[dict[str, Any]] = info["partitions"]
    if not partitions:
        click.echo("Offsets: none committed")
        return
    rows = [["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "OWNER"]]
    for p in partitions:
        cells = [p["topic"], p["partition"], p["committed_offset"], p["log_end_offset"], p["lag"], p["owner"]]
        rows.append([_shown(cell) for cell in cells])
    _echo_table(rows, "  ")
    click.echo(f"Total lag: {info['total_lag']}")


@groups.command("delete")
@click.argument("group")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@connection_options
def delete(group: str, yes: bool, bootstrap_server: str, client_settings: tuple[str, ...]) -> None:
    """Delete GROUP and its committed offsets.

    Only a group without active members can be deleted.
    """
    cluster = Cluster.from_options(bootstrap_server, client_settings)
    if not yes:
        click.confirm(f"Delete consumer group {group!r} and its committed offsets?", abort=True, err=True)
    admin = cluster.admin()
    with _group_failures(cluster, f"cannot delete consumer group {group!r}", group, admin):
        admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group].result()
    click.echo(f"Deleted consumer group {group}.")


def _topic_spec(value: str) -> tuple[str, list[int] | None]:
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


def _timestamp_ms(value: str) -> int:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"expected an ISO 8601 time such as 2024-05-01T12:00:00Z, got {value!r}",
            param_hint="--to-datetime",
        ) from None
    # Without a zone the time is local, as in Kafka's tool; astimezone() reads naive times so.
    return int(when.astimezone().timestamp() * 1000)


def _partitions(cluster: Cluster, admin: AdminClient, specs: list[tuple[str, list[int] | None]]) -> list[Key]:
    keys: set[Key] = set()
    for topic, wanted in specs:
        found = cluster.topic_metadata(admin, topic).partitions
        for p in wanted or found:
            if p not in found:
                raise click.ClickException(f"topic {topic!r} has no partition {p} (it has {len(found)})")
            keys.add((topic, p))
    return sorted(keys)


def _plan(
    cluster: Cluster, admin: AdminClient, keys: list[Key], current: dict[Key, int], how: str, value: int
) -> list[tuple[Key, int]]:
    """The new offset of each partition; offsets past either end of its log move to that end (as Kafka's
    tool does). `value` is the offset, the shift or the time in ms, depending on `how`."""
    starts = _log_offsets(cluster, admin, keys, _EARLIEST)
    ends = _log_offsets(cluster, admin, keys, _LATEST)
    at_time = {}
    if how == "datetime":
        at_time = _log_offsets(cluster, admin, keys, OffsetSpec.for_timestamp(value))
    plan = []
    for key in keys:
        start, end = starts[key], ends[key]
        if start is None or end is None:  # deleted since _partitions found it
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


@groups.command("reset-offsets")
@click.argument("group")
@click.option(
    "--topic",
    "topic_specs",
    multiple=True,
    required=True,
    metavar="TOPIC[:PARTITIONS]",
    help="A topic, or some of its partitions as in orders:0,2 (repeatable).",
)
@click.option("--to-earliest", is_flag=True, help="To the start of each partition's log.")
@click.option("--to-latest", is_flag=True, help="To the end of each partition's log (skip everything).")
@click.option("--to-offset", type=click.IntRange(min=0), metavar="N", help="To offset N.")
@click.option("--to-datetime", metavar="ISO8601", help="To the first record at or after this time.")
@click.option("--shift-by", type=int, metavar="N", help="Move the committed offsets by N (negative: back).")
@click.option("--dry-run", is_flag=True, help="Only print the plan.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@connection_options
def reset_offsets(
    group: str,
    topic_specs: tuple[str, ...],
    to_earliest: bool,
    to_latest: bool,
    to_offset: int | None,
    to_datetime: str | None,
    shift_by: int | None,
    dry_run: bool,
    yes: bool,
    bootstrap_server: str,
    client_settings: tuple[str, ...],
) -> None:
    """Set the committed offsets of GROUP.

    New offsets past either end of a log are moved to that end; a time without a zone is local time.
    Only a group without active members can be reset, as its consumers would overwrite the offsets.
    """
    chosen = [to_earliest, to_latest, to_offset is not None, to_datetime is not None, shift_by is not None]
    if sum(chosen) != 1:
        raise click.UsageError(
            "choose exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by"
        )
    how = ("earliest", "latest", "offset", "datetime", "shift")[chosen.index(True)]
    value = to_offset if to_offset is not None else shift_by or 0
    if to_datetime is not None:
        value = _timestamp_ms(to_datetime)  # a usage error, before connecting
    specs = [_topic_spec(spec) for spec in topic_specs]
    cluster = Cluster.from_options(bootstrap_server, client_settings)
    admin = cluster.admin()
    doing = f"cannot reset the offsets of group {group!r}"

    description = _description(cluster, admin, group, must_exist=False)
    if description.state not in _IDLE:
        members = len(description.members)
        raise click.ClickException(
            f"{doing}: it is {_state_name(description)} with {members} member(s); stop its consumers first"
        )
    keys = _partitions(cluster, admin, specs)
    current = _committed(cluster, admin, group, keys)
    plan = _plan(cluster, admin, keys, current, how, value)
    rows = [["TOPIC", "PARTITION", "CURRENT", "NEW"]]
    rows += [[topic, str(p), _shown(current.get((topic, p))), str(new)] for (topic, p), new in plan]
    _echo_table(rows)
    if dry_run:
        click.echo("Dry run: no offsets were changed.")
        return
    if not yes:
        click.confirm(f"Reset the offsets of group {group!r} as above?", abort=True, err=True)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p, new) for (t, p), new in plan])
    # The group may have gained members since it was checked: then the broker refuses (_ACTIVE).
    with _group_failures(cluster, doing, group, admin):
        result = admin.alter_consumer_group_offsets([request], request_timeout=TIMEOUT)[group].result()
        # Per-partition errors do not fail the future; the first one explains them all.
        errors = [tp.error for tp in result.topic_partitions or [] if tp.error is not None]
        if errors:
            raise KafkaException(errors[0])
    click.echo(f"Reset the offsets of group {group} on {len(plan)} partition(s).")
