"""The event-driven toolkit: events as the store of state, over any Kafka cluster.

Layers, each importing only the ones above it:
    domain          events (typed events, registry, upcasting), aggregate, errors
    application     repository (Repository, the EventLog port), projection.Projection
    infrastructure  kafka, publisher, index, store (KafkaEventLog), sql, projection.Projector, worker
"""

from eventyard.toolkit.aggregate import Aggregate
from eventyard.toolkit.errors import (
    CommandRejected,
    ConcurrencyConflict,
    DatabaseDriverMissing,
    DatabaseUnavailable,
    InvalidEventPayload,
    MissingTopic,
    PublishError,
    ToolkitError,
    UnknownEventType,
)
from eventyard.toolkit.events import Event, EventRegistry, JsonSerializer, RecordedEvent, Serializer
from eventyard.toolkit.index import EventIndex
from eventyard.toolkit.kafka import (
    Record,
    config_from_env,
    ensure_topic,
    partition_for,
    read_topic,
    supports_transactions,
)
from eventyard.toolkit.projection import Projection, Projector
from eventyard.toolkit.publisher import Delivery, EventPublisher
from eventyard.toolkit.repository import EventLog, InMemoryEventLog, Repository
from eventyard.toolkit.sql import Database, SQLiteDatabase, Transaction, connect
from eventyard.toolkit.store import KafkaEventLog
from eventyard.toolkit.worker import HandlerFailed, PoisonEvent, Worker, WorkerError

__all__ = [
    "Aggregate",
    "CommandRejected",
    "ConcurrencyConflict",
    "Database",
    "DatabaseDriverMissing",
    "DatabaseUnavailable",
    "Delivery",
    "Event",
    "EventIndex",
    "EventLog",
    "EventPublisher",
    "EventRegistry",
    "HandlerFailed",
    "InMemoryEventLog",
    "InvalidEventPayload",
    "JsonSerializer",
    "KafkaEventLog",
    "MissingTopic",
    "PoisonEvent",
    "Projection",
    "Projector",
    "PublishError",
    "Record",
    "RecordedEvent",
    "Repository",
    "SQLiteDatabase",
    "Serializer",
    "ToolkitError",
    "Transaction",
    "UnknownEventType",
    "Worker",
    "WorkerError",
    "config_from_env",
    "connect",
    "ensure_topic",
    "partition_for",
    "read_topic",
    "supports_transactions",
]
