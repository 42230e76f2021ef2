"""`eventyard groups`: list, describe and delete consumer groups, and reset their committed offsets.

Like the other client commands it is built on confluent-kafka's AdminClient, so it works against any
Kafka cluster; the output follows Kafka's own kafka-consumer-groups tool where it makes sense.
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Any

import click
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException, TopicPartition

from eventyard.cli.cluster import TIMEOUT, Cluster, connection_options
from eventyard.cli.groups_common import (
    EARLIEST,
    LATEST,
    STATES_BY_NAME,
    Key,
    committed_offsets,
    describe_group,
    echo_table,
    group_failures,
    log_offsets,
    protocol_type,
    shown,
    state_name,
)
from eventyard.cli.groups_reset import partitions_of, plan_reset, timestamp_ms, topic_spec

# Offsets may only be rewritten while no consumer can overwrite them (Dead: the group does not exist yet).
_IDLE = {ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD}


@click.group()
def groups() -> None:
    """List, describe and delete consumer groups, and reset their offsets."""


@groups.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(list(STATES_BY_NAME), case_sensitive=False),
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
    wanted = {STATES_BY_NAME[name] for name in states}
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
            "state": state_name(g),
            "protocol_type": protocol_type(g),
            "members": len(descriptions[g.group_id].members) if g.group_id in descriptions else None,
        }
        for g in listed
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = [["GROUP", "STATE", "PROTOCOL-TYPE", "MEMBERS"]]
    table += [[r["group"], r["state"], shown(r["protocol_type"]), shown(r["members"])] for r in rows]
    echo_table(table)


def _describe(cluster: Cluster, group: str) -> dict[str, Any]:
    admin = cluster.admin()
    description = describe_group(cluster, admin, group)
    committed = committed_offsets(cluster, admin, group, None)
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
    ends = log_offsets(cluster, admin, keys, LATEST)
    starts = log_offsets(cluster, admin, [key for key in keys if key not in committed], EARLIEST)
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
        "state": state_name(description),
        "protocol_type": protocol_type(description),
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
        f"Group: {group}  State: {info['state']}  Protocol type: {shown(info['protocol_type'])}"
        f"  Assignor: {shown(info['assignor'])}  Coordinator: {where}"
    )
    members: list[dict[str, Any]] = info["members"]
    click.echo(f"Members: {len(members) or 'none'}")
    if members:
        rows = [["MEMBER-ID", "CLIENT-ID", "HOST", "PARTITIONS"]]
        rows += [[m["member_id"], m["client_id"], m["host"], _compact(m["partitions"])] for m in members]
        echo_table(rows, "  ")
    partitions: list[dict[str, Any]] = info["partitions"]
    if not partitions:
        click.echo("Offsets: none committed")
        return
    rows = [["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "OWNER"]]
    for p in partitions:
        cells = [p["topic"], p["partition"], p["committed_offset"], p["log_end_offset"], p["lag"], p["owner"]]
        rows.append([shown(cell) for cell in cells])
    echo_table(rows, "  ")
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
    with group_failures(cluster, f"cannot delete consumer group {group!r}", group, admin):
        admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group].result()
    click.echo(f"Deleted consumer group {group}.")


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
        value = timestamp_ms(to_datetime)  # a usage error, before connecting
    specs = [topic_spec(spec) for spec in topic_specs]
    cluster = Cluster.from_options(bootstrap_server, client_settings)
    admin = cluster.admin()
    doing = f"cannot reset the offsets of group {group!r}"

    description = describe_group(cluster, admin, group, must_exist=False)
    if description.state not in _IDLE:
        members = len(description.members)
        raise click.ClickException(
            f"{doing}: it is {state_name(description)} with {members} member(s); stop its consumers first"
        )
    keys = partitions_of(cluster, admin, specs)
    current = committed_offsets(cluster, admin, group, keys)
    plan = plan_reset(cluster, admin, keys, current, how, value)
    rows = [["TOPIC", "PARTITION", "CURRENT", "NEW"]]
    rows += [[topic, str(p), shown(current.get((topic, p))), str(new)] for (topic, p), new in plan]
    echo_table(rows)
    if dry_run:
        click.echo("Dry run: no offsets were changed.")
        return
    if not yes:
        click.confirm(f"Reset the offsets of group {group!r} as above?", abort=True, err=True)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p, new) for (t, p), new in plan])
    # The group may have gained members since it was checked: then the broker refuses (_ACTIVE).
    with group_failures(cluster, doing, group, admin):
        result = admin.alter_consumer_group_offsets([request], request_timeout=TIMEOUT)[group].result()
        # Per-partition errors do not fail the future; the first one explains them all.
        errors = [tp.error for tp in result.topic_partitions or [] if tp.error is not None]
        if errors:
            raise KafkaException(errors[0])
    click.echo(f"Reset the offsets of group {group} on {len(plan)} partition(s).")
