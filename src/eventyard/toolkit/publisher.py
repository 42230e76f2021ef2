"""Publish the events of one command: keyed by entity, acknowledged, idempotent, atomic where possible.

What one `publish` guarantees
-----------------------------
* Order: the events go to the partition of their key (Kafka's murmur2, as the Java client picks it),
  so an entity's history is totally ordered in one partition.
* Acknowledgement: `publish` returns after the broker acknowledged every event (acks=all), with
  their offsets, or raises PublishError.
* No duplicates, no reordering on retries: the idempotent producer (enable.idempotence) is always on.
* All-or-nothing:
  - with a cluster that coordinates transactions (ApiVersions has AddPartitionsToTxn and EndTxn),
    each publish is one transaction: read_committed readers see all of the events or none;
  - without (Eventyard's broker today), the events are queued together and flushed at once, so
    librdkafka sends them as one record batch, which the broker appends whole or not at all. That is
    atomic in practice, not by contract: a batch limit (batch.size, batch.num.messages, a command
    larger than about 1 MB) splits them, and then a crash between the two produce requests, or a
    PublishError whose `delivered` is not empty, leaves a prefix of the command in the log.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, Producer

from eventyard.toolkit.errors import PublishError
from eventyard.toolkit.events import Event, EventRegistry
from eventyard.toolkit.kafka import (
    Config,
    client_config,
    name,
    partition_count,
    partition_for,
    prefix_of,
    supports_transactions,
)


@dataclass(frozen=True, slots=True)
class Delivery:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


class EventPublisher:
    """Publishes events through one librdkafka producer; thread-safe.

    transactions: None detects what the cluster supports, True requires transactions, False never
    uses them. `transactional_id` should be stable per writer so a restarted writer fences its
    previous incarnation; by default each publisher gets a fresh one. Topic names and the
    transactional id get the config's prefix (a platform add-on's), see kafka.name."""

    def __init__(
        self,
        config: Config,
        registry: EventRegistry,
        *,
        transactions: bool | None = None,
        transactional_id: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.registry = registry
        self.timeout = timeout
        self.prefix = prefix_of(config)
        self._config = config
        self.transactional = supports_transactions(config) if transactions is None else transactions
        settings: dict[str, Any] = {
            "enable.idempotence": True,
            "acks": "all",
            "delivery.timeout.ms": int(timeout * 1000),
        }
        if self.transactional:
            settings["transactional.id"] = name(config, transactional_id or f"eventyard-{uuid.uuid4()}")
        self.settings = client_config(config, **{k.replace(".", "_"): v for k, v in settings.items()})
        self._producer = Producer(self.settings)
        self._lock = threading.Lock()  # one command at a time in the queue: its records stay together
        self._partitions: dict[str, int] = {}
        if self.transactional:
            self._producer.init_transactions(timeout)

    def partition(self, topic: str, key: str) -> int:
        topic = name(self._config, topic)
        if topic not in self._partitions:
            self._partitions[topic] = partition_count(self._producer, topic, self.timeout, self._config)
        return partition_for(key, self._partitions[topic])

    def publish(self, topic: str, key: str, events: Sequence[Event]) -> list[Delivery]:
        """Send the events of one command, keyed by `key` (the entity id), and wait for the broker."""
        if not events:
            return []
        encoded = [self.registry.encode(e) for e in events]  # fails before anything is sent
        topic = name(self._config, topic)
        partition = self.partition(topic, key)
        results: list[tuple[int, Any, Any]] = []
        done = threading.Event()

        def delivered(index: int) -> Any:
            def report(error: Any, message: Any) -> None:
                results.append((index, error, message))
                if len(results) == len(encoded):
                    done.set()

            return report

        # The lock keeps a command's records together in the queue (so librdkafka sends them in one
        # batch) and, with transactions, one transaction open at a time.
        try:
            with self._lock:
                if self.transactional:
                    self._producer.begin_transaction()
                try:
                    for i, (value, headers) in enumerate(encoded):
                        self._producer.produce(
                            topic, value, key.encode(), partition, delivered(i), headers=headers
                        )
                except BaseException:
                    if self.transactional:
                        self._abort()
                    raise
                if self.transactional:
                    self._commit()
            self._wait(done)
        except KafkaException as error:
            raise PublishError(error.args[0].str(), _deliveries(results)) from None
        except BufferError as error:
            raise PublishError(f"the producer queue is full: {error}", _deliveries(results)) from None
        failed = [error for _, error, _ in results if error is not None]
        if failed or len(results) < len(events):
            reason = failed[0].str() if failed else "no acknowledgement before the timeout"
            raise PublishError(reason, _deliveries(results))
        return _deliveries(results)

    def _commit(self) -> None:
        """Commit the open transaction (librdkafka flushes first). A retriable failure leaves the
        outcome unknown until a retry answers, so retry it; any other failure aborts, so that no
        transaction stays open to make every later publish fail."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._producer.commit_transaction(max(0.1, deadline - time.monotonic()))
                return
            except KafkaException as exc:
                error = exc.args[0]
                if error.retriable() and not error.txn_requires_abort() and time.monotonic() < deadline:
                    continue
                if not error.fatal():
                    self._abort()
                raise

    def _abort(self) -> None:
        with contextlib.suppress(KafkaException):  # a fatal or fenced producer cannot abort
            self._producer.abort_transaction(self.timeout)

    def _wait(self, done: threading.Event) -> None:
        # Not flush(): under load from other threads the queue may never be empty.
        deadline = time.monotonic() + self.timeout + 5  # delivery.timeout.ms reports failures first
        while not done.is_set() and time.monotonic() < deadline:
            self._producer.poll(0.01)  # serves delivery reports, ours or another thread's

    def close(self) -> None:
        """Flush what is queued and release the client."""
        self._producer.close()

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _deliveries(results: list[tuple[int, Any, Any]]) -> list[Delivery]:
    return [
        Delivery(m.topic(), m.partition(), m.offset(), m.timestamp()[1])
        for _, error, m in sorted(results, key=lambda r: r[0])
        if error is None
    ]
