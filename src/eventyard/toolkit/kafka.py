"""The Kafka edge, through librdkafka only, so everything here runs unchanged on Apache Kafka:
client settings (and a platform add-on's, with its name prefix), the key -> partition function,
topic set-up, feature probing, reading a topic back."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from eventyard.kafka_env import bootstrap_servers, settings_from_env
from eventyard.toolkit.errors import MissingTopic, ToolkitError

Config = str | Mapping[str, Any]  # a bootstrap address, or librdkafka settings (+ PREFIX)

# The one setting of a Config that is not librdkafka's: a tenant's resource-name prefix (a platform
# add-on's KAFKA_PREFIX). A key, not an attribute, so that it survives `{**config, ...}` copies.
PREFIX = "eventyard.prefix"

# ApiVersions keys a cluster advertises when it coordinates transactions.
ADD_PARTITIONS_TO_TXN = 24
END_TXN = 26


def client_config(
    config: Config, defaults: Mapping[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """librdkafka settings: defaults, then the caller's (a bootstrap address or a mapping), then
    overrides (keywords, with `_` for `.`), which the toolkit needs to keep its promises."""
    settings = dict(defaults or {})
    settings.update({"bootstrap.servers": config} if isinstance(config, str) else config)
    settings.update({k.replace("_", "."): v for k, v in overrides.items()})
    settings.pop(PREFIX, None)  # librdkafka would refuse an unknown property
    return settings


def prefix_of(config: Config) -> str:
    """The config's resource-name prefix: "" unless it came from a platform add-on."""
    return "" if isinstance(config, str) else str(config.get(PREFIX) or "")


def name(config: Config, base: str) -> str:
    """The name on the cluster of a topic, group or transactional id: the prefix, then `base`.

    Every name the toolkit sends goes through here. A name already under the prefix is left as is,
    so names read back from the cluster, or prefixed by the application itself, can be passed again."""
    prefix = prefix_of(config)
    return base if base.startswith(prefix) else prefix + base


def config_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Config of a platform add-on's app, from its environment variables (os.environ by default):
    KAFKA_URL (host:port list; kafka:// or kafka+ssl:// schemes are dropped), KAFKA_USERNAME,
    KAFKA_PASSWORD, KAFKA_SASL_MECHANISM (default SCRAM-SHA-512), KAFKA_SECURITY_PROTOCOL (default:
    SASL_SSL with a KAFKA_TRUSTED_CERT, else SASL_PLAINTEXT), KAFKA_TRUSTED_CERT (CA PEM),
    KAFKA_CLIENT_CERT and KAFKA_CLIENT_CERT_KEY (PEM, for mutual TLS) and KAFKA_PREFIX."""
    env = os.environ if environ is None else environ
    if not bootstrap_servers(env.get("KAFKA_URL", "")):
        raise ToolkitError("KAFKA_URL is not set: attach a Kafka add-on to the app, or pass a config")
    config: dict[str, Any] = dict(settings_from_env(env))
    if env.get("KAFKA_PREFIX"):
        config[PREFIX] = env["KAFKA_PREFIX"]
    return config


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's default partitioner hash), as an unsigned 32-bit int."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = length - length % 4
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


def partition_for(key: str, partitions: int) -> int:
    """The partition of a key, as the Java client (and librdkafka's murmur2 partitioner) chooses it."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


# Answers to a CreateTopics that mean "this client may not create topics" (a platform's tenant).
_NOT_ALLOWED = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED)


def ensure_topic(config: Config, topic: str, partitions: int = 1, timeout: float = 15.0) -> int:
    """Create the topic if it is missing; returns its partition count (an existing topic keeps its own).

    MissingTopic when it is missing and the credential may not create topics (a platform add-on's:
    its topics are made through the control plane)."""
    topic = name(config, topic)
    with AdminClient(client_config(config, {"log_level": 5})) as admin:  # no info lines on close
        metadata = admin.list_topics(timeout=timeout)
        if topic not in metadata.topics:
            new = NewTopic(topic, num_partitions=partitions)
            try:
                admin.create_topics([new], request_timeout=timeout)[topic].result(timeout)
            except KafkaException as error:
                code = error.args[0].code()
                if code in _NOT_ALLOWED:
                    raise missing_topic(config, topic, partitions, error.args[0].str()) from None
                if code != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise ToolkitError(f"cannot create topic {topic!r}: {error.args[0].str()}") from None
            metadata = admin.list_topics(topic, timeout=timeout)
    return len(metadata.topics[topic].partitions)


def require_topics(config: Config, topics: Sequence[str], timeout: float = 15.0) -> None:
    """MissingTopic unless every topic exists (and the credential may see it)."""
    with AdminClient(client_config(config, {"log_level": 5})) as admin:
        known = admin.list_topics(timeout=timeout).topics
    for topic in topics:
        if name(config, topic) not in known:
            raise missing_topic(config, name(config, topic), None, "no such topic for this credential")


def missing_topic(config: Config, topic: str, partitions: int | None, reason: str) -> MissingTopic:
    """The error for a topic the application needs and may not create, saying how to create it."""
    prefix = prefix_of(config)
    if not prefix:
        return MissingTopic(topic, f"{reason}; create it with the cluster's tools")
    base = topic[len(prefix) :] if topic.startswith(prefix) else topic
    option = f" --partitions {partitions}" if partitions else ""
    return MissingTopic(
        topic,
        f"{reason}. The topics of a platform add-on are created through the platform, not by its "
        f"apps: `eventyard kafka topics create {base}{option} --app <app>` (prefix {prefix!r})",
    )


def partition_count(
    client: Producer | Consumer, topic: str, timeout: float = 15.0, config: Config = ""
) -> int:
    metadata = client.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        reason = metadata.error.str() if metadata is not None and metadata.error else "no partitions"
        code = metadata.error.code() if metadata is not None and metadata.error else None
        if metadata is None or code in (KafkaError.UNKNOWN_TOPIC_OR_PART, *_NOT_ALLOWED):
            raise missing_topic(config, topic, None, reason)
        raise ToolkitError(f"topic {topic!r} is not available: {reason}")
    return len(metadata.partitions)


class Watermarks:
    """Asks for partitions' offset ranges on a connection of its own: on a consumer's connection
    the question would wait behind its long-polling fetch (a connection answers in order)."""

    attempt_timeout = 3.0  # then ask again with fresh metadata: the partition's leader may have moved

    def __init__(self, config: Config, timeout: float = 15.0) -> None:
        self.timeout = timeout
        self._client = Consumer(
            client_config(config, group_id=name(config, "eventyard-watermarks"), enable_auto_commit=False)
        )
        self._lock = threading.Lock()

    def __call__(self, topic: str, partition: int) -> tuple[int, int]:
        """(low, high): the first offset, and the offset the next record will get.

        When a broker is lost, librdkafka keeps sending this question to the partition's old leader
        (until the timeout) or finds no leader (at once) for as long as its metadata is stale,
        minutes: each failed attempt refreshes the metadata, until a new leader answers."""
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while True:
                attempt = max(0.1, min(self.attempt_timeout, deadline - time.monotonic()))
                try:
                    low, high = self._client.get_watermark_offsets(
                        TopicPartition(topic, partition), attempt, cached=False
                    )
                    return int(low), int(high)
                except KafkaException as error:
                    if error.args[0].fatal() or time.monotonic() >= deadline:
                        raise
                    with contextlib.suppress(KafkaException):
                        self._client.list_topics(topic, timeout=attempt)  # updates the leaders it knows
                    time.sleep(0.1)

    def close(self) -> None:
        with self._lock:
            self._client.close()


class _ApiVersionsLog:
    """A librdkafka logger that keeps the API keys of the "Broker API support" debug lines."""

    _line = re.compile(r"ApiKey \S+ \((\d+)\) Versions")

    def __init__(self) -> None:
        self.keys: set[int] = set()
        self.complete = threading.Event()

    def log(self, level: int, fmt: str, *args: object) -> None:
        match = self._line.search(fmt % args if args else fmt)
        if match:
            self.keys.add(int(match.group(1)))
        elif self.keys:  # the first line after the list: it is complete
            self.complete.set()


def supports_transactions(config: Config, timeout: float = 10.0) -> bool:
    """Whether the cluster advertises AddPartitionsToTxn and EndTxn in ApiVersions.

    librdkafka exposes the answer only in its `feature` debug log, which is read here: the probe goes
    through the same client and security settings as everything else."""
    log = _ApiVersionsLog()
    producer = Producer(client_config(config, debug="feature", logger=log))
    try:
        producer.list_topics(timeout=timeout)  # a connection, hence an ApiVersions exchange
        deadline = time.monotonic() + timeout
        while not log.complete.is_set() and time.monotonic() < deadline:
            producer.poll(0.02)  # serves the queued log lines
    finally:
        producer.close()
    if not log.keys:
        raise ToolkitError("could not read the cluster's API versions")
    return {ADD_PARTITIONS_TO_TXN, END_TXN} <= log.keys


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_ms: int = -1


def read_topic(config: Config, topic: str, timeout: float = 15.0) -> list[Record]:
    """Every record of the topic up to its current end, partition by partition, in offset order."""
    topic = name(config, topic)
    consumer = Consumer(
        client_config(
            config,
            group_id=name(config, "eventyard-read-topic"),
            enable_auto_commit=False,
            enable_partition_eof=True,
        )
    )
    try:
        partitions = range(partition_count(consumer, topic, timeout, config))
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout, cached=False)
            for p in partitions
        }
        todo = {p: (low, high) for p, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in todo.items()])
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic!r}: partitions {sorted(todo)} did not reach their end")
            for message in consumer.consume(500, 0.1):
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                if error is None:
                    records.append(to_record(message))
                # an EOF, or the last offset: control records (transaction markers) have no message
                partition, offset = message_position(message)
                if error is not None or offset + 1 >= todo.get(partition, (0, 0))[1]:
                    todo.pop(partition, None)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def message_position(message: Message) -> tuple[int, int]:
    """(partition, offset) of a consumed message (or of an end-of-partition event)."""
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None, "a consumed message has a position"
    return partition, offset


def to_record(message: Message) -> Record:
    partition, offset = message_position(message)
    raw = message.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    headers = [(k, v.encode() if isinstance(v, str) else v) for k, v in items]
    return Record(
        message.topic() or "",
        partition,
        offset,
        message.key(),
        message.value(),
        headers,
        message.timestamp()[1],
    )
