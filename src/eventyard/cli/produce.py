"""`eventyard produce`: send records to a topic, from arguments or stdin lines."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import click
from confluent_kafka import KafkaError, KafkaException

from eventyard.cli.cluster import Cluster, connection_options, error_text, kafka_error_text, parse_pairs

# librdkafka keeps retrying an undeliverable record for 5 minutes by default; a command line tool
# should give up sooner. `-X message.timeout.ms=...` overrides it.
_MESSAGE_TIMEOUT_MS = 30_000


class _Deliveries:
    """Counts delivery reports; failures are grouped by reason for the summary."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failures: Counter[str] = Counter()

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def fail(self, reason: str) -> None:
        self.failures[reason] += 1

    def __call__(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.fail(kafka_error_text(error))


def _lines(values: tuple[str, ...]) -> Iterator[bytes]:
    if values:
        # surrogateescape: arguments that are not valid UTF-8 are sent as the bytes the shell gave us.
        yield from (value.encode("utf-8", "surrogateescape") for value in values)
        return
    if sys.stdin.isatty():
        click.echo("Reading records from stdin, one per line (Ctrl-D to finish).", err=True)
    for raw in sys.stdin.buffer:  # bytes: values need not be UTF-8
        line = raw.rstrip(b"\n").removesuffix(b"\r")
        if line:  # blank lines are separators, not empty records
            yield line


def _split(
    lines: Iterable[bytes], key: str | None, separator: str | None
) -> Iterator[tuple[bytes | None, bytes] | str]:
    """(key, value) per line, or a string saying why the line cannot be sent."""
    fixed_key = None if key is None else key.encode("utf-8", "surrogateescape")
    sep = None if separator is None else separator.encode("utf-8", "surrogateescape")
    for number, line in enumerate(lines, 1):
        if sep is None:
            yield fixed_key, line
            continue
        record_key, found, value = line.partition(sep)
        if not found:
            yield f"no key separator {separator!r} in record {number}"
        else:
            yield record_key, value


@click.command()
@click.argument("topic")
@click.argument("values", nargs=-1)
@click.option("--key", "-k", help="The key of every record.")
@click.option("--key-separator", metavar="SEP", help="Split each record into KEY SEP VALUE at the first SEP.")
@click.option(
    "--partition", "-p", type=click.IntRange(min=0), help="Send to this partition (default: by key)."
)
@click.option("--header", "-H", "headers", multiple=True, metavar="KEY=VALUE", help="A header (repeatable).")
@click.option("--acks", type=click.Choice(["0", "1", "all", "-1"]), help="Acknowledgements to wait for.")
@click.option(
    "--compression", type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]), help="Batch compression."
)
@connection_options
def produce(
    topic: str,
    values: tuple[str, ...],
    key: str | None,
    key_separator: str | None,
    partition: int | None,
    headers: tuple[str, ...],
    acks: str | None,
    compression: str | None,
    bootstrap_server: str,
    client_settings: tuple[str, ...],
) -> None:
    """Send records to TOPIC.

    The records are the VALUE arguments or, without any, the lines of stdin (blank lines skipped).
    Prints a summary to stderr; the exit status is 1 if any record was not delivered.
    """
    if key is not None and key_separator is not None:
        raise click.UsageError("use either --key or --key-separator, not both")
    if key_separator == "":
        raise click.BadParameter("must not be empty", param_hint="--key-separator")
    cluster = Cluster.from_options(bootstrap_server, client_settings)
    record_headers: list[tuple[str, str | bytes | None]] = [
        (name, value.encode()) for name, value in parse_pairs(headers, "--header")
    ]
    defaults: dict[str, Any] = {"message.timeout.ms": _MESSAGE_TIMEOUT_MS}
    if acks is not None:
        defaults["acks"] = acks
    if compression is not None:
        defaults["compression.type"] = compression
    producer = cluster.producer(defaults)

    # Fail fast, with a clear message, when the cluster is unreachable or the topic or partition is missing,
    # rather than after the message timeout. Not strict: the broker may be auto-creating the topic.
    found = cluster.topic_metadata(producer, topic, strict=False)
    if partition is not None and found.partitions and partition not in found.partitions:
        raise click.ClickException(
            f"topic {topic!r} has no partition {partition} (it has {len(found.partitions)})"
        )

    report = _Deliveries()
    sent = 0
    for record in _split(_lines(values), key, key_separator):
        sent += 1
        if isinstance(record, str):
            report.fail(record)
            continue
        record_key, value = record
        while True:
            try:
                producer.produce(
                    topic,
                    value=value,
                    key=record_key,
                    partition=-1 if partition is None else partition,
                    headers=record_headers or None,
                    on_delivery=report,
                )
                break
            except BufferError:
                producer.poll(0.1)  # the local queue is full: wait for deliveries to make room
            except KafkaException as exc:
                report.fail(error_text(exc))
                break
        producer.poll(0)
    # flush() in short steps so that Ctrl-C is noticed.
    while producer.flush(1.0) > 0:
        pass

    click.echo(f"{topic}: {report.delivered} delivered, {report.failed} failed (of {sent}).", err=True)
    for reason, count in report.failures.most_common():
        click.echo(f"  {count} failed: {reason}", err=True)
    if report.failed:
        raise click.ClickException(f"{report.failed} of {sent} records were not delivered")
