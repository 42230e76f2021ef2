"""`eventyard tail`: print the records of a topic, following new ones as they arrive."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import click
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TIMESTAMP_NOT_AVAILABLE, KafkaError, TopicPartition

from eventyard.cli.cluster import TIMEOUT, Cluster, connection_options, kafka_error_text

# Errors in the record stream that will not go away by waiting.
_FATAL = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError._AUTO_OFFSET_RESET,
}
_BATCH = 500
# In `full` format a record is one line: escape what would break it.
_ONE_LINE = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def _timestamp(message: Any) -> tuple[int | None, str | None]:
    kind, ms = message.timestamp()
    if kind == TIMESTAMP_NOT_AVAILABLE or ms < 0:
        return None, None
    iso = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return ms, iso.replace("+00:00", "Z")


def _format(message: Any, output_format: str) -> str:
    if output_format == "value":
        return _text(message.value()) or ""
    ms, iso = _timestamp(message)
    key, value = _text(message.key()), _text(message.value())
    headers = [(name, _text(data)) for name, data in message.headers() or []]
    if output_format == "json":
        record = {
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "timestamp": iso,
            "timestamp_ms": ms,
            "key": key,
            "value": value,
            "headers": [[name, data] for name, data in headers],
        }
        return json.dumps(record, ensure_ascii=False)
    shown = ",".join(f"{name}={'(null)' if data is None else data}" for name, data in headers)
    fields = [
        f"partition={message.partition()}",
        f"offset={message.offset()}",
        f"timestamp={iso or '(none)'}",
        f"key={'(null)' if key is None else key}",
        f"value={'(null)' if value is None else value}",
        f"headers={shown}",
    ]
    return " ".join(fields).translate(_ONE_LINE)


def _start_offsets(
    consumer: Any, topic: str, partitions: list[int], from_beginning: bool, offset: int | None
) -> list[TopicPartition]:
    if offset is None:
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        return [TopicPartition(topic, p, start) for p in partitions]
    assigned = []
    for p in partitions:
        # Clamp to the partition's log: before its start means "from the start", past its end
        # means "wait for new records", and a negative offset counts back from the end.
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)
        wanted = high + offset if offset < 0 else offset
        assigned.append(TopicPartition(topic, p, min(max(wanted, low), high)))
    return assigned


def _silence_stdout() -> None:
    # The reader went away (`eventyard tail ... | head`): stop quietly, and keep Python from
    # complaining when it flushes stdout at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@click.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest records (default: only new ones).")
@click.option(
    "--partition",
    "-p",
    "partitions",
    multiple=True,
    type=click.IntRange(min=0),
    help="Only this partition (repeatable).",
)
@click.option(
    "--offset", type=int, help="Start at this offset in each partition; negative: that many before the end."
)
@click.option("--max-messages", "-n", type=click.IntRange(min=1), help="Stop after this many records.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop after this long without a new record (default: follow until Ctrl-C).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["value", "full", "json"]),
    default="value",
    show_default=True,
    help="value: just the value; full: partition, offset, timestamp, key, value and headers; "
    "json: one object per line.",
)
@connection_options
def tail(
    topic: str,
    from_beginning: bool,
    partitions: tuple[int, ...],
    offset: int | None,
    max_messages: int | None,
    timeout: float | None,
    output_format: str,
    bootstrap_server: str,
    client_settings: tuple[str, ...],
) -> None:
    """Print the records of TOPIC as they arrive."""
    if from_beginning and offset is not None:
        raise click.UsageError("use either --from-beginning or --offset, not both")
    cluster = Cluster.from_options(bootstrap_server, client_settings)
    # assign() needs no consumer group: the group id is throwaway and nothing is ever committed.
    consumer = cluster.consumer(
        {
            "group.id": f"eventyard-tail-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "allow.auto.create.topics": False,
            "auto.offset.reset": "earliest" if from_beginning or offset is not None else "latest",
        }
    )
    try:
        found = cluster.topic_metadata(consumer, topic)
        available = sorted(found.partitions)
        chosen = sorted(set(partitions)) if partitions else available
        for p in chosen:
            if p not in found.partitions:
                raise click.ClickException(f"topic {topic!r} has no partition {p} (it has {len(available)})")
        with cluster.failures(f"cannot read the offsets of {topic!r}", consumer):
            consumer.assign(_start_offsets(consumer, topic, chosen, from_beginning, offset))
        _follow(consumer, output_format, max_messages, timeout)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a follow ends
    except BrokenPipeError:
        _silence_stdout()
    finally:
        consumer.close()


def _follow(consumer: Any, output_format: str, max_messages: int | None, timeout: float | None) -> None:
    out = sys.stdout
    printed = 0
    last_record = time.monotonic()
    while max_messages is None or printed < max_messages:
        wait = 1.0
        if timeout is not None:
            remaining = timeout - (time.monotonic() - last_record)
            if remaining <= 0:
                return
            wait = min(wait, remaining)
        wanted = _BATCH if max_messages is None else min(_BATCH, max_messages - printed)
        batch = consumer.consume(num_messages=wanted, timeout=wait)
        before = printed
        for message in batch:
            error = message.error()
            if error is None:
                out.write(_format(message, output_format) + "\n")
                printed += 1
            elif error.code() == KafkaError._PARTITION_EOF:
                continue
            elif error.fatal() or error.code() in _FATAL:
                raise click.ClickException(kafka_error_text(error))
            else:
                click.echo(f"warning: {kafka_error_text(error)}", err=True)
        if printed > before:
            out.flush()  # once per batch, so that pipes see records promptly
            last_record = time.monotonic()
