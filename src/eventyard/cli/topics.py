"""`eventyard topics`: create, list, describe and delete topics on any Kafka cluster."""

from __future__ import annotations

import json
from typing import Any

import click
from confluent_kafka import TopicPartition

# confluent_kafka.admin re-exports these without an __all__, which strict mypy does not count as exports.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from eventyard.cli.cluster import TIMEOUT, Cluster, connection_options, parse_pairs, table
from eventyard.protocol.messages.describe_log_dirs_request import (
    DescribableLogDirTopic,
    DescribeLogDirsRequest,
)
from eventyard.wire_client import WireClient

_EARLIEST = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_LATEST = OffsetSpec.latest()  # type: ignore[no-untyped-call]

# Short names for where a config value comes from (describe output).
_SOURCES = {
    ConfigSource.DYNAMIC_TOPIC_CONFIG: "topic",
    ConfigSource.DYNAMIC_BROKER_CONFIG: "broker",
    ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG: "cluster default",
    ConfigSource.STATIC_BROKER_CONFIG: "broker config",
    ConfigSource.DEFAULT_CONFIG: "default",
}


def _source(value: object) -> str:
    try:
        source = value if isinstance(value, ConfigSource) else ConfigSource(value)
    except ValueError:
        return "unknown"
    return _SOURCES.get(source, source.name.lower())


def _is_internal(name: str) -> bool:
    # Kafka's own topics (__consumer_offsets, __transaction_state, ...) start with two underscores;
    # the metadata's is_internal flag is not exposed by confluent-kafka's list_topics.
    return name.startswith("__")


@click.group()
def topics() -> None:
    """Create, list, describe and delete topics."""


@topics.command("create")
@click.argument("name")
@click.option(
    "--partitions", type=click.IntRange(min=1), help="Number of partitions (default: the broker's)."
)
@click.option(
    "--replication-factor",
    type=click.IntRange(min=1),
    help="Copies of each partition (default: the broker's).",
)
@click.option("--config", "configs", multiple=True, metavar="NAME=VALUE", help="A topic config (repeatable).")
@connection_options
def create(
    name: str,
    partitions: int | None,
    replication_factor: int | None,
    configs: tuple[str, ...],
    bootstrap_server: str,
    client_settings: tuple[str, ...],
) -> None:
    """Create topic NAME."""
    cluster = Cluster.from_options(bootstrap_server, client_settings)
    topic_configs = dict(parse_pairs(configs, "--config"))
    admin = cluster.admin()
    # -1 asks the broker for its default (CreateTopics v4+, Kafka 2.4 and later).
    new = NewTopic(
        name,
        num_partitions=partitions or -1,
        replication_factor=replication_factor or -1,
        config=topic_configs,
    )
    with cluster.failures(f"cannot create topic {name!r}", admin):
        admin.create_topics([new], request_timeout=TIMEOUT)[name].result()
    click.echo(f"Created topic {name}.")


@topics.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include internal topics such as __consumer_offsets.")
@connection_options
def list_(show_all: bool, bootstrap_server: str, client_settings: tuple[str, ...]) -> None:
    """List topics and their partition counts."""
    cluster = Cluster.from_options(bootstrap_server, client_settings)
    admin = cluster.admin()
    with cluster.failures("cannot list topics", admin):
        metadata = admin.list_topics(timeout=TIMEOUT)
    names = sorted(name for name in metadata.topics if show_all or not _is_internal(name))
    rows = [["TOPIC", "PARTITIONS"]]
    rows += [[name, str(len(metadata.topics[name].partitions))] for name in names]
    for line in table(rows):
        click.echo(line)


def _describe(cluster: Cluster, name: str) -> dict[str, Any]:
    admin = cluster.admin()
    found = cluster.topic_metadata(admin, name)
    ids = sorted(found.partitions)
    start_offsets: dict[int, int] = {}
    end_offsets: dict[int, int] = {}
    if ids:
        with cluster.failures(f"cannot read the offsets of {name!r}", admin):
            # Two ListOffsets requests for the whole topic, rather than one per partition.
            starts = admin.list_offsets(
                {TopicPartition(name, p): _EARLIEST for p in ids}, request_timeout=TIMEOUT
            )
            ends = admin.list_offsets(
                {TopicPartition(name, p): _LATEST for p in ids}, request_timeout=TIMEOUT
            )
            start_offsets.update((tp.partition, future.result().offset) for tp, future in starts.items())
            end_offsets.update((tp.partition, future.result().offset) for tp, future in ends.items())
    resource = ConfigResource(ResourceType.TOPIC, name)
    with cluster.failures(f"cannot read the configs of {name!r}", admin):
        entries = admin.describe_configs([resource], request_timeout=TIMEOUT)[resource].result()
    configs = [
        {"name": entry.name, "value": entry.value, "source": _source(entry.source)}
        for entry in sorted(entries.values(), key=lambda entry: entry.name)
        if not entry.is_default
    ]
    sizes = _sizes_on_disk(admin, name, {p: found.partitions[p].leader for p in ids})
    partitions = []
    for p in ids:
        meta = found.partitions[p]
        partitions.append(
            {
                "partition": p,
                "leader": meta.leader,
                "replicas": list(meta.replicas),
                "isr": list(meta.isrs),
                "log_start_offset": start_offsets[p],
                "log_end_offset": end_offsets[p],
                "size_bytes": sizes[p][0] if p in sizes else None,
                "segments": sizes[p][1] if p in sizes and sizes[p][1] >= 0 else None,
            }
        )
    replication = len(found.partitions[ids[0]].replicas) if ids else 0
    return {"topic": name, "replication_factor": replication, "partitions": partitions, "configs": configs}


def _sizes_on_disk(admin: Any, name: str, leaders: dict[int, int]) -> dict[int, tuple[int, int]]:
    """Each partition's (size, segment count) on its leader, from DescribeLogDirs (a standard Kafka
    API that confluent-kafka does not wrap, so it is asked with Eventyard's own codec). The segment
    count is Eventyard's tagged field: -1 from other brokers. Best effort: on a cluster that cannot
    be reached this way (TLS, SASL) sizes are simply left out."""
    brokers = admin.list_topics(timeout=TIMEOUT).brokers
    sizes: dict[int, tuple[int, int]] = {}
    for leader in set(leaders.values()):
        broker = brokers.get(leader)
        wanted = [p for p, owner in leaders.items() if owner == leader]
        if broker is None:
            continue
        request = DescribeLogDirsRequest(topics=[DescribableLogDirTopic(topic=name, partitions=wanted)])
        try:
            with WireClient(broker.host, broker.port, timeout=TIMEOUT) as client:
                response = client.request(request, 2, client_id="eventyard-cli")
        except (OSError, ValueError):
            continue
        for result in response.results:
            for topic in result.topics:
                for part in topic.partitions:
                    if topic.name == name and not part.is_future_key:
                        sizes[part.partition_index] = (part.partition_size, part.segment_count)
    return sizes


def _human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


@topics.command("config")
@click.argument("name")
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE", help="Set a topic config.")
@click.option("--delete", "deletions", multiple=True, metavar="NAME", help="Return a config to its default.")
@connection_options
def config(
    name: str,
    settings: tuple[str, ...],
    deletions: tuple[str, ...],
    bootstrap_server: str,
    client_settings: tuple[str, ...],
) -> None:
    """Change the configs of topic NAME (retention.ms, cleanup.policy, ...), or show them."""
    cluster = Cluster.from_options(bootstrap_server, client_settings)
    admin = cluster.admin()
    changes = [
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
        for key, value in parse_pairs(settings, "--set")
    ]
    changes += [ConfigEntry(key, None, incremental_operation=AlterConfigOpType.DELETE) for key in deletions]
    if changes:
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=changes)
        with cluster.failures(f"cannot change the configs of {name!r}", admin):
            admin.incremental_alter_configs([resource], request_timeout=TIMEOUT)[resource].result()
    resource = ConfigResource(ResourceType.TOPIC, name)
    with cluster.failures(f"cannot read the configs of {name!r}", admin):
        entries = admin.describe_configs([resource], request_timeout=TIMEOUT)[resource].result()
    for entry in sorted(entries.values(), key=lambda entry: entry.name):
        click.echo(f"{entry.name}={entry.value}  [{_source(entry.source)}]")


@topics.command("describe")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@connection_options
def describe(name: str, as_json: bool, bootstrap_server: str, client_settings: tuple[str, ...]) -> None:
    """Show the partitions (leader, replicas, ISR, offsets) and non-default configs of topic NAME."""
    info = _describe(Cluster.from_options(bootstrap_server, client_settings), name)
    if as_json:
        click.echo(json.dumps(info))
        return
    partitions: list[dict[str, Any]] = info["partitions"]
    click.echo(
        f"Topic: {name}  Partitions: {len(partitions)}  Replication factor: {info['replication_factor']}"
    )
    rows = [["PARTITION", "LEADER", "REPLICAS", "ISR", "LOG-START", "LOG-END", "SIZE", "SEGMENTS"]]
    for part in partitions:
        rows.append(
            [
                str(part["partition"]),
                str(part["leader"]),
                ",".join(map(str, part["replicas"])),
                ",".join(map(str, part["isr"])),
                str(part["log_start_offset"]),
                str(part["log_end_offset"]),
                "-" if part["size_bytes"] is None else _human(part["size_bytes"]),
                "-" if part["segments"] is None else str(part["segments"]),
            ]
        )
    for line in table(rows):
        click.echo("  " + line)
    configs: list[dict[str, Any]] = info["configs"]
    if not configs:
        click.echo("Configs: all defaults")
        return
    click.echo("Configs (not defaults):")
    for config in configs:
        value = "(sensitive)" if config["value"] is None else config["value"]
        click.echo(f"  {config['name']}={value}  [{config['source']}]")


@topics.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@connection_options
def delete(name: str, yes: bool, bootstrap_server: str, client_settings: tuple[str, ...]) -> None:
    """Delete topic NAME and all its data."""
    cluster = Cluster.from_options(bootstrap_server, client_settings)
    if not yes:
        click.confirm(f"Delete topic {name!r} and all its data?", abort=True, err=True)
    admin = cluster.admin()
    with cluster.failures(f"cannot delete topic {name!r}", admin):
        admin.delete_topics([name], request_timeout=TIMEOUT)[name].result()
    click.echo(f"Deleted topic {name}.")
