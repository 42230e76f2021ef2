"""Broker settings and the topic configs it understands, with Kafka's names and defaults."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from eventyard.coordinator.group import GroupConfig
from eventyard.security.credentials import DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS
from eventyard.storage.base import CompactionConfig, LogConfig

LONG_MAX = 9223372036854775807


@dataclass(frozen=True, slots=True)
class ConfigDef:
    name: str
    type: str  # Kafka's config type: BOOLEAN STRING INT SHORT LONG DOUBLE LIST CLASS PASSWORD
    default: str
    validate: Callable[[str], bool]
    doc: str


def _long(lo: int = -1) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            return lo <= int(value) <= LONG_MAX
        except ValueError:
            return False

    return check


def _one_of(*choices: str) -> Callable[[str], bool]:
    return lambda value: value in choices


def _policy(value: str) -> bool:
    parts = [p.strip() for p in value.split(",")]
    return bool(parts) and all(p in ("delete", "compact") for p in parts)


def _ratio(value: str) -> bool:
    try:
        return 0.0 <= float(value) <= 1.0
    except ValueError:
        return False


# Topic configs, each with the default a topic gets when neither topic nor broker sets it.
TOPIC_CONFIGS: dict[str, ConfigDef] = {
    c.name: c
    for c in [
        ConfigDef("cleanup.policy", "LIST", "delete", _policy, "delete, compact, or both"),
        ConfigDef("retention.ms", "LONG", str(7 * 24 * 3600 * 1000), _long(-1), "How long to keep a segment"),
        ConfigDef("retention.bytes", "LONG", "-1", _long(-1), "Size limit of a partition"),
        ConfigDef("segment.bytes", "INT", str(1024 * 1024 * 1024), _long(14), "Segment file size"),
        ConfigDef(
            "segment.ms", "LONG", str(7 * 24 * 3600 * 1000), _long(1), "Roll a segment after this long"
        ),
        ConfigDef("max.message.bytes", "INT", str(1024 * 1024 + 12), _long(0), "Largest record batch"),
        ConfigDef(
            "message.timestamp.type",
            "STRING",
            "CreateTime",
            _one_of("CreateTime", "LogAppendTime"),
            "Timestamp kept on records",
        ),
        ConfigDef("flush.messages", "LONG", str(LONG_MAX), _long(1), "fsync after this many messages"),
        ConfigDef("flush.ms", "LONG", str(LONG_MAX), _long(0), "fsync after this many ms"),
        ConfigDef("index.interval.bytes", "INT", "4096", _long(0), "Offset index density"),
        ConfigDef("min.insync.replicas", "INT", "1", _long(1), "Replicas that must acknowledge acks=all"),
        ConfigDef(
            "compression.type",
            "STRING",
            "producer",
            _one_of("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"),
            "Codec kept on disk",
        ),
        ConfigDef("delete.retention.ms", "LONG", str(24 * 3600 * 1000), _long(0), "Tombstone lifetime"),
        ConfigDef("min.compaction.lag.ms", "LONG", "0", _long(0), "Minimum age before compaction"),
        ConfigDef("max.compaction.lag.ms", "LONG", str(LONG_MAX), _long(1), "Maximum age before compaction"),
        ConfigDef("min.cleanable.dirty.ratio", "DOUBLE", "0.5", _ratio, "Dirty ratio that triggers cleaning"),
        ConfigDef("file.delete.delay.ms", "LONG", "60000", _long(0), "Delay before deleting a file"),
        ConfigDef(
            "unclean.leader.election.enable", "BOOLEAN", "false", _one_of("true", "false"), "Replication"
        ),
        ConfigDef(
            "message.timestamp.before.max.ms", "LONG", str(LONG_MAX), _long(0), "Oldest timestamp allowed"
        ),
        ConfigDef(
            "message.timestamp.after.max.ms", "LONG", str(LONG_MAX), _long(0), "Newest timestamp allowed"
        ),
        ConfigDef("preallocate", "BOOLEAN", "false", _one_of("true", "false"), "Preallocate segments"),
    ]
}


def invalid_topic_config(name: str, value: str | None) -> str | None:
    """An error message if name=value is not a valid topic config, else None."""
    definition = TOPIC_CONFIGS.get(name)
    if definition is None:
        return f"unknown topic config {name!r}"
    if value is None or not definition.validate(value):
        return f"invalid value {value!r} for topic config {name!r}"
    return None


SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL")


@dataclass(frozen=True, slots=True)
class Listener:
    """One address the broker listens on, with Kafka's security protocol names."""

    protocol: str  # PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL
    host: str
    port: int
    advertised_host: str | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @classmethod
    def parse(cls, text: str) -> Listener:
        """PROTOCOL://HOST:PORT, as in Kafka's `listeners` setting."""
        protocol, sep, address = text.partition("://")
        host, colon, port = address.rpartition(":")
        if not sep or not colon or protocol.upper() not in SECURITY_PROTOCOLS or not port.isdigit():
            raise ValueError(
                f"expected PROTOCOL://HOST:PORT with PROTOCOL one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        return cls(protocol.upper(), host.strip("[]") or "0.0.0.0", int(port))


SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_SCRAM_FORM = "MECHANISM=[name=NAME,password=PASSWORD(,iterations=N)]"


@dataclass(frozen=True, slots=True, repr=False)
class ScramUser:
    """A SCRAM credential to install at start (Kafka's `kafka-storage format --add-scram`)."""

    mechanism: str  # SCRAM-SHA-256 or SCRAM-SHA-512
    name: str
    password: str
    iterations: int = DEFAULT_ITERATIONS

    def __repr__(self) -> str:  # never the password, in a log or a traceback
        return f"ScramUser({self.mechanism}, {self.name!r}, iterations={self.iterations})"

    @classmethod
    def parse(cls, text: str) -> ScramUser:
        """`SCRAM-SHA-512=[name=admin,password=secret]`, values optionally in double quotes (to hold
        a comma or a bracket), `iterations=` optional: Kafka's syntax, so its scripts carry over."""
        mechanism, sep, rest = text.partition("=")
        if not sep or not rest.startswith("[") or not rest.endswith("]"):
            raise ValueError(f"expected {_SCRAM_FORM}")
        if mechanism.upper() not in SCRAM_MECHANISMS:
            raise ValueError(f"unknown mechanism {mechanism!r}: one of {', '.join(SCRAM_MECHANISMS)}")
        fields: dict[str, str] = {}
        body = rest[1:-1]
        while body:
            key, eq, body = body.partition("=")
            if not eq or key not in ("name", "password", "iterations") or key in fields:
                raise ValueError(f"unknown or repeated key {key!r}: expected {_SCRAM_FORM}")
            if body.startswith('"'):
                value, quote, body = body[1:].partition('"')
                if not quote or not (body == "" or body.startswith(",")):
                    raise ValueError(f"badly quoted value of {key!r}: expected {_SCRAM_FORM}")
                body = body[1:]
            else:
                value, _, body = body.partition(",")
            fields[key] = value
        if not fields.get("name") or not fields.get("password"):
            raise ValueError(f"a non-empty name and password are required: {_SCRAM_FORM}")
        iterations = fields.get("iterations", str(DEFAULT_ITERATIONS))
        if not iterations.isdigit() or not MIN_ITERATIONS <= int(iterations) <= MAX_ITERATIONS:
            raise ValueError(
                f"iterations must be from {MIN_ITERATIONS} to {MAX_ITERATIONS}, got {iterations!r}"
            )
        return cls(mechanism.upper(), fields["name"], fields["password"], int(iterations))


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    ca_file: Path | None = None  # clients must present a certificate signed by it when given


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    host: str = "127.0.0.1"
    port: int = 9092
    advertised_host: str | None = None
    data_dir: Path | None = Path("./data")  # None: keep everything in memory
    node_id: int = 1
    auto_create_topics: bool = True
    num_partitions: int = 1
    max_request_bytes: int = 100 * 1024 * 1024  # socket.request.max.bytes
    # Topic config defaults set at broker level (Kafka's log.* settings, by topic config name).
    topic_defaults: dict[str, str] = field(default_factory=dict)
    housekeeping_interval_s: float = 5.0
    groups: GroupConfig = field(default_factory=GroupConfig)
    # Extra listeners (SASL, TLS) beside the plaintext one on host:port; tls is needed by SSL ones.
    listeners: tuple[Listener, ...] = ()
    tls: TlsConfig | None = None
    sasl_mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
    # ACLs are enforced only with the authorizer on; super users ("User:admin") bypass them.
    authorizer: bool = False
    super_users: tuple[str, ...] = ()
    # SCRAM credentials `eventyard serve` installs at start when missing or different (--add-scram).
    scram_users: tuple[ScramUser, ...] = ()

    @property
    def advertised(self) -> str:
        return self.advertised_host or self.host

    def all_listeners(self) -> tuple[Listener, ...]:
        """The plaintext listener of --host/--port first, then the extra ones."""
        return (Listener("PLAINTEXT", self.host, self.port, self.advertised_host), *self.listeners)

    def topic_default(self, name: str) -> str:
        return self.topic_defaults.get(name, TOPIC_CONFIGS[name].default)

    @classmethod
    def from_env(cls, **overrides: object) -> BrokerConfig:
        """Settings from EVENTYARD_* environment variables, then explicit overrides."""
        env: dict[str, object] = {}
        if "EVENTYARD_HOST" in os.environ:
            env["host"] = os.environ["EVENTYARD_HOST"]
        if "EVENTYARD_PORT" in os.environ:
            env["port"] = int(os.environ["EVENTYARD_PORT"])
        if "EVENTYARD_ADVERTISED_HOST" in os.environ:
            env["advertised_host"] = os.environ["EVENTYARD_ADVERTISED_HOST"]
        if "EVENTYARD_DATA_DIR" in os.environ:
            env["data_dir"] = Path(os.environ["EVENTYARD_DATA_DIR"])
        env.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**env)  # type: ignore[arg-type]


def log_config(configs: dict[str, str]) -> LogConfig:
    """The storage settings of a topic from its effective configs."""
    return LogConfig(
        segment_bytes=int(configs["segment.bytes"]),
        segment_ms=int(configs["segment.ms"]),
        index_interval_bytes=int(configs["index.interval.bytes"]),
        retention_ms=int(configs["retention.ms"]),
        retention_bytes=int(configs["retention.bytes"]),
    )


def compaction_config(configs: dict[str, str]) -> CompactionConfig:
    """The cleaner's settings of a compacted topic from its effective configs."""
    return CompactionConfig(
        delete_retention_ms=int(configs["delete.retention.ms"]),
        min_compaction_lag_ms=int(configs["min.compaction.lag.ms"]),
        min_cleanable_dirty_ratio=float(configs["min.cleanable.dirty.ratio"]),
    )
