"""What the `eventyard groups` commands ask the cluster, shared by groups.py and groups_reset.py.

A group's description and committed offsets, the log start and end offsets of partitions, and the
broker's group errors turned into one-line messages; plus the state names and table helpers the
commands print with.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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

from eventyard.cli.cluster import TIMEOUT, Cluster, error_code, table

EARLIEST = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
LATEST = OffsetSpec.latest()  # type: ignore[no-untyped-call]

# The state names Kafka uses on the wire and in its tools.
_STATE_NAMES = {
    ConsumerGroupState.STABLE: "Stable",
    ConsumerGroupState.EMPTY: "Empty",
    ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
    ConsumerGroupState.DEAD: "Dead",
    ConsumerGroupState.UNKNOWN: "Unknown",
}
STATES_BY_NAME = {name: state for state, name in _STATE_NAMES.items()}


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


def echo_table(rows: list[list[str]], indent: str = "") -> None:
    for line in table(rows):
        click.echo(indent + line)


def shown(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def state_name(description: Any) -> str:
    return _STATE_NAMES.get(getattr(description, "state", ConsumerGroupState.UNKNOWN), "Unknown")


def protocol_type(description: Any) -> str:
    # confluent-kafka only tells whether the protocol type is empty: a group that only ever had
    # offsets committed for it (a "simple" group) rather than members joining with the consumer protocol.
    return "" if description.is_simple_consumer_group else "consumer"


@contextmanager
def group_failures(cluster: Cluster, doing: str, group: str, admin: AdminClient) -> Iterator[None]:
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


def describe_group(cluster: Cluster, admin: AdminClient, group: str, must_exist: bool = True) -> Any:
    """The group's ConsumerGroupDescription; an unknown group is described as Dead (Kafka's answer)."""
    with group_failures(cluster, f"cannot describe consumer group {group!r}", group, admin):
        description = admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result()
    if must_exist and description.state == ConsumerGroupState.DEAD:
        raise click.ClickException(f"consumer group {group!r} does not exist")
    return description


def committed_offsets(
    cluster: Cluster, admin: AdminClient, group: str, keys: list[Key] | None
) -> dict[Key, int]:
    """The group's committed offsets (of the given partitions, or of all); no commit: no entry."""
    request = ConsumerGroupTopicPartitions(
        group, None if keys is None else [TopicPartition(topic, p) for topic, p in keys]
    )
    with group_failures(cluster, f"cannot read the offsets of group {group!r}", group, admin):
        found = admin.list_consumer_group_offsets([request], request_timeout=TIMEOUT)[group].result()
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in found.topic_partitions or []
        if tp.error is None and tp.offset >= 0
    }


def log_offsets(
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
