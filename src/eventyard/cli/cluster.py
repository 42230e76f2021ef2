"""Client-side commands (`topics`, `produce`, `tail`) that work against any Kafka cluster.

They are built on confluent-kafka (librdkafka), not on Eventyard internals, so they behave the same
against Apache Kafka. This module holds what they share: the connection options, client construction
and the mapping of librdkafka errors to one-line messages.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
# Seconds to wait for metadata and admin requests: long enough for a slow cluster, short enough
# that a wrong address fails fast instead of hanging.
TIMEOUT = 10.0

# librdkafka logs every failed reconnect (many per second) straight to stderr; route its logs to a
# silent logger so that the user sees one clear message instead. `-X debug=...` turns them back on.
_QUIET = logging.getLogger("eventyard.cli.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

# Errors that mean "could not talk to the cluster at all".
_UNREACHABLE = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._RESOLVE,
    KafkaError._AUTHENTICATION,
    KafkaError._SSL,
}

# The broker prefix and the state suffix of librdkafka's connection errors.
_NOISE = re.compile(r"^\S+/(?:bootstrap|\d+): |\s*\(after \d+ms in state \w+[^)]*\)$")

F = TypeVar("F", bound=Callable[..., Any])


def connection_options(func: F) -> F:
    """Add `--bootstrap-server/-b` and `-X key=value` to a command."""
    func = click.option(
        "-X",
        "client_settings",
        multiple=True,
        metavar="KEY=VALUE",
        help="A librdkafka setting, such as security.protocol=SASL_SSL (repeatable).",
    )(func)
    return click.option(
        "--bootstrap-server",
        "-b",
        "bootstrap_server",
        envvar="EVENTYARD_BOOTSTRAP",
        default=DEFAULT_BOOTSTRAP,
        show_default=True,
        metavar="HOST:PORT[,...]",
        help="Kafka brokers to connect to (env: EVENTYARD_BOOTSTRAP).",
    )(func)


def parse_pairs(values: tuple[str, ...], option: str) -> list[tuple[str, str]]:
    """Split NAME=VALUE option values; a missing '=' is a usage error."""
    pairs = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint=option)
        pairs.append((name, rest))
    return pairs


def error_text(exc: BaseException) -> str:
    """The human part of a librdkafka error, without the KafkaError{...} wrapping."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return kafka_error_text(exc.args[0])
    return str(exc) or type(exc).__name__


def kafka_error_text(error: KafkaError) -> str:
    return error.str() or error.name()


def error_code(exc: BaseException) -> int | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        code: int = exc.args[0].code()
        return code
    return None


@dataclass
class Cluster:
    """How to reach the cluster, and the clients made from it."""

    bootstrap: str
    settings: list[tuple[str, str]]
    # The latest connection-level error librdkafka reported: a better explanation than "timed out".
    last_error: KafkaError | None = field(default=None, init=False)

    @classmethod
    def from_options(cls, bootstrap_server: str, client_settings: tuple[str, ...]) -> Cluster:
        return cls(bootstrap_server, parse_pairs(client_settings, "-X"))

    def _on_error(self, error: KafkaError) -> None:
        self.last_error = error

    def config(self, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "client.id": "eventyard-cli",
            "socket.timeout.ms": int(TIMEOUT * 1000),
            "socket.connection.setup.timeout.ms": int(TIMEOUT * 1000),
            "error_cb": self._on_error,
        }
        conf.update(defaults or {})
        conf.update(self.settings)  # the user's -X settings win over ours
        if "debug" not in conf:
            conf["logger"] = _QUIET
        return conf

    def admin(self) -> AdminClient:
        # The admin client is a producer inside librdkafka, whose metadata requests would otherwise ask
        # the broker to auto-create the topic being described or deleted.
        conf = self.config({"allow.auto.create.topics": False})
        logger = conf.pop("logger", None)
        with self.failures("invalid client settings"):
            return AdminClient(conf) if logger is None else AdminClient(conf, logger=logger)

    def producer(self, defaults: dict[str, Any]) -> Producer:
        with self.failures("invalid client settings"):
            return Producer(self.config(defaults))

    def consumer(self, defaults: dict[str, Any]) -> Consumer:
        with self.failures("invalid client settings"):
            return Consumer(self.config(defaults))

    def message(self, doing: str, exc: BaseException) -> str:
        text = error_text(exc)
        if error_code(exc) in _UNREACHABLE:
            if self.last_error is not None and self.last_error.code() in _UNREACHABLE:
                # "h:9092/bootstrap: Connect to ... failed: Connection refused (after 0ms in state CONNECT)"
                # says more than "Failed to get metadata"; keep its middle.
                text = _NOISE.sub("", kafka_error_text(self.last_error))
            return f"{doing}: cannot connect to Kafka at {self.bootstrap}: {text}"
        return f"{doing}: {text}"

    @contextmanager
    def failures(self, doing: str, client: Any = None) -> Iterator[None]:
        """Turn librdkafka errors into a one-line message and exit status 1 (no traceback)."""
        try:
            yield
        except (KafkaException, ValueError, TypeError) as exc:
            if client is not None and hasattr(client, "poll"):
                # Serve pending error callbacks, to explain a timeout. (Callers only pass a consumer
                # before assigning it partitions, so this poll cannot swallow a record.)
                client.poll(0)
            raise click.ClickException(self.message(doing, exc)) from exc

    def topic_metadata(self, client: Any, topic: str, strict: bool = True) -> Any:
        """The metadata of one topic (a TopicMetadata), or a clear error when it does not exist.

        With strict=False a topic that has no partitions yet (say, being auto-created) is returned as is.
        """
        with self.failures(f"cannot read the metadata of {topic!r}", client):
            metadata = client.list_topics(topic=topic, timeout=TIMEOUT)
        found = metadata.topics.get(topic)
        if found is None or (
            found.error is not None and found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        ):
            raise click.ClickException(f"topic {topic!r} does not exist")
        if strict and found.error is not None and not found.partitions:
            raise click.ClickException(f"topic {topic!r}: {kafka_error_text(found.error)}")
        return found


def table(rows: list[list[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
