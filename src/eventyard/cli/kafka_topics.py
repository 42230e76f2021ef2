"""`eventyard kafka topics` and `eventyard kafka consumer-groups`: made through the control plane,
which checks them against the plan and adds the add-on's prefix; names are typed without it."""

from __future__ import annotations

import click

from eventyard.cli.kafka_common import (
    Duration,
    app_option,
    echo_fields,
    echo_json,
    echo_table,
    json_option,
    platform,
    platform_options,
    resolve_addon,
)
from eventyard.cli.kafka_format import (
    human_bytes,
    human_duration,
    show,
    topic_compaction,
    topic_prefixed_name,
    topic_size,
)
from eventyard.cli.platform_client import JSON

addon_argument = click.argument("addon", required=False)


def _retention_ms(seconds: float) -> int:
    return round(seconds * 1000)


def _topic_row(topic: JSON) -> list[str]:
    return [
        show(topic.get("name")),
        show(topic.get("partitions")),
        human_duration(topic.get("retention_ms")),
        show(topic_compaction(topic)),
        human_bytes(topic_size(topic)),
    ]


@click.group()
def topics() -> None:
    """Create, list, change and destroy an add-on's topics."""


@topics.command("list")
@addon_argument
@app_option()
@json_option
@platform_options
def list_(addon: str | None, app: str | None, as_json: bool) -> None:
    """The topics of ADDON."""
    with platform() as client:
        found = client.topics(resolve_addon(client, addon, app))
    if as_json:
        echo_json(found)
        return
    rows = [_topic_row(topic) for topic in found]
    echo_table(["TOPIC", "PARTITIONS", "RETENTION", "COMPACTION", "SIZE"], rows, "No topics.")


@topics.command("create")
@click.argument("topic")
@addon_argument
@app_option()
@click.option("--partitions", type=click.IntRange(min=1), help="Default: the plan's.")
@click.option(
    "--retention-time",
    type=Duration(),
    help="How long records are kept, such as 36h or 7d (default: the plan's).",
)
@click.option("--compaction/--no-compaction", default=None, help="Keep the latest record of each key.")
@click.option("--replication-factor", type=click.IntRange(min=1), help="Default: the platform's.")
@json_option
@platform_options
def create(
    topic: str,
    addon: str | None,
    app: str | None,
    partitions: int | None,
    retention_time: float | None,
    compaction: bool | None,
    replication_factor: int | None,
    as_json: bool,
) -> None:
    """Create TOPIC (named without the prefix) in ADDON."""
    with platform() as client:
        name = resolve_addon(client, addon, app)
        created = client.create_topic(
            name,
            topic,
            partitions=partitions,
            retention_ms=None if retention_time is None else _retention_ms(retention_time),
            compaction=compaction,
            replication=replication_factor,
        )
    if as_json:
        echo_json(created)
        return
    retention = human_duration(created.get("retention_ms"))
    click.echo(
        f"Created topic {topic} on {name} ({topic_prefixed_name(created)} on the cluster): "
        f"{show(created.get('partitions'))} partitions, retention {retention}."
    )


@topics.command("info")
@click.argument("topic")
@addon_argument
@app_option()
@json_option
@platform_options
def info(topic: str, addon: str | None, app: str | None, as_json: bool) -> None:
    """Partitions, retention, compaction and size of TOPIC."""
    with platform() as client:
        found = client.topic(resolve_addon(client, addon, app), topic)
    if as_json:
        echo_json(found)
        return
    fields = [
        ("Name on the cluster", topic_prefixed_name(found)),
        ("Partitions", show(found.get("partitions"))),
        ("Replication factor", show(found.get("replication") or found.get("replication_factor"))),
        ("Retention", human_duration(found.get("retention_ms"))),
        ("Compaction", show(topic_compaction(found))),
        ("Size", human_bytes(topic_size(found))),
    ]
    echo_fields(str(found.get("name", topic)), fields)


@topics.command("destroy")
@click.argument("topic")
@addon_argument
@app_option()
@click.option("--confirm", metavar="TOPIC", help="The topic's name again, to confirm without a prompt.")
@platform_options
def destroy(topic: str, addon: str | None, app: str | None, confirm: str | None) -> None:
    """Delete TOPIC and its records."""
    if confirm is None:
        confirm = click.prompt(f"This deletes {topic} and its records. Type its name to confirm", err=True)
    if confirm != topic:
        raise click.ClickException(f"confirmation {confirm!r} does not match the topic's name {topic!r}")
    with platform() as client:
        name = resolve_addon(client, addon, app)
        client.destroy_topic(name, topic)
    click.echo(f"Destroyed topic {topic} on {name}.")


@topics.command("retention-time")
@click.argument("topic")
@click.argument("value", type=Duration())
@addon_argument
@app_option()
@platform_options
def retention_time(topic: str, value: float, addon: str | None, app: str | None) -> None:
    """Keep the records of TOPIC for VALUE, such as 36h, 7d or "2 weeks"."""
    with platform() as client:
        name = resolve_addon(client, addon, app)
        changed = client.update_topic(name, topic, retention_ms=_retention_ms(value))
    click.echo(f"Records of {topic} are kept for {human_duration(changed.get('retention_ms'))}.")


@topics.command("compaction")
@click.argument("topic")
@click.argument("value", type=click.Choice(["enable", "disable", "on", "off"]))
@addon_argument
@app_option()
@platform_options
def compaction(topic: str, value: str, addon: str | None, app: str | None) -> None:
    """Enable or disable compaction of TOPIC (the plan must allow it)."""
    enable = value in ("enable", "on")
    with platform() as client:
        name = resolve_addon(client, addon, app)
        client.update_topic(name, topic, compaction=enable)
    click.echo(f"Compaction of {topic} is {'enabled' if enable else 'disabled'}.")


@topics.command("partitions")
@click.argument("topic")
@click.argument("count", type=click.IntRange(min=1))
@addon_argument
@app_option()
@platform_options
def partitions(topic: str, count: int, addon: str | None, app: str | None) -> None:
    """Give TOPIC COUNT partitions (only ever more: keys may move to other partitions)."""
    with platform() as client:
        name = resolve_addon(client, addon, app)
        changed = client.update_topic(name, topic, partitions=count)
    click.echo(f"{topic} has {show(changed.get('partitions', count))} partitions.")


@click.group("consumer-groups")
def consumer_groups() -> None:
    """Create, list and destroy an add-on's consumer groups."""


@consumer_groups.command("list")
@addon_argument
@app_option()
@json_option
@platform_options
def groups_list(addon: str | None, app: str | None, as_json: bool) -> None:
    """The consumer groups of ADDON."""
    with platform() as client:
        name = resolve_addon(client, addon, app)
        found = client.groups(name)
    if as_json:
        echo_json(found)
        return
    rows = [
        [show(group.get("name")), topic_prefixed_name(group), show(group.get("state"))] for group in found
    ]
    echo_table(["GROUP", "ON THE CLUSTER", "STATE"], rows, f"No consumer groups on {name}.")


@consumer_groups.command("create")
@click.argument("group")
@addon_argument
@app_option()
@platform_options
def groups_create(group: str, addon: str | None, app: str | None) -> None:
    """Create GROUP (named without the prefix): apps may then consume as it."""
    with platform() as client:
        name = resolve_addon(client, addon, app)
        created = client.create_group(name, group)
    click.echo(f"Created consumer group {group} on {name} ({topic_prefixed_name(created)} on the cluster).")


@consumer_groups.command("destroy")
@click.argument("group")
@addon_argument
@app_option()
@platform_options
def groups_destroy(group: str, addon: str | None, app: str | None) -> None:
    """Delete GROUP and its committed offsets."""
    with platform() as client:
        name = resolve_addon(client, addon, app)
        client.destroy_group(name, group)
    click.echo(f"Destroyed consumer group {group} on {name}.")
