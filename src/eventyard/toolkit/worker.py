"""Workers: services that subscribe to topics in a consumer group and run a handler for each event.

What a Worker promises
----------------------
* At-least-once: a record's offset is committed only after the handler succeeded for it and for
  every earlier record of its partition. A crash replays from the last commit: handlers should be
  idempotent (a processed-ids table, an upsert) because some records come again.
* Order per key: the records of a partition (so of a key) are handled one at a time, in offset order,
  by one lane; `concurrency` lanes handle different partitions at once.
* Retries: a failing handler is called again, `retries` more times, with exponential backoff.
* Poison events never block a partition: an event that keeps failing, or that cannot be decoded (an
  unknown type, an invalid payload), goes to `dead_letter_topic` with the reason in its headers, and
  the partition moves on. Without a dead-letter topic the worker stops instead (fail-stop), with
  HandlerFailed or PoisonEvent, and the record is not committed.
* Graceful shutdown: stop(), or SIGTERM when run(signals=...) installed it, lets the handler calls
  in progress finish (records not started yet, or waiting for a retry, are left for the next owner),
  commits, and leaves the group. A revoked partition is drained and committed the same way.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from eventyard.toolkit.errors import InvalidEventPayload, ToolkitError, UnknownEventType
from eventyard.toolkit.events import EventRegistry, RecordedEvent
from eventyard.toolkit.kafka import Config, client_config, ensure_topic, prefix_of, require_topics
from eventyard.toolkit.kafka import name as resource_name

log = logging.getLogger(__name__)

Handler = Callable[[RecordedEvent], None]
TP = tuple[str, int]  # (topic, partition)

# Headers added to a dead-letter record, beside the original record's own headers.
DLT_REASON = "dead-letter-reason"
DLT_EXCEPTION = "dead-letter-exception"
DLT_TOPIC = "dead-letter-topic"
DLT_PARTITION = "dead-letter-partition"
DLT_OFFSET = "dead-letter-offset"
DLT_GROUP = "dead-letter-group"
DLT_ATTEMPTS = "dead-letter-attempts"

_CONSUMER_ONLY = (
    "group.",
    "session.",
    "heartbeat.",
    "auto.",
    "enable.auto",
    "fetch.",
    "isolation.",
    "max.poll",
    "partition.assignment",
)


class WorkerError(ToolkitError):
    """The worker stopped: a consumer error, or a dead-letter record it could not write."""


class _Undeliverable(WorkerError):
    def __init__(self, message: str, topic: str, partition: int, offset: int) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        super().__init__(f"{topic}[{partition}]@{offset}: {message}")


class HandlerFailed(_Undeliverable):
    """The handler failed on every attempt, and there is no dead-letter topic. `__cause__`: the last error."""

    def __init__(self, topic: str, partition: int, offset: int, attempts: int, error: BaseException) -> None:
        self.attempts = attempts
        super().__init__(f"the handler failed {attempts} times: {error!r}", topic, partition, offset)


class PoisonEvent(_Undeliverable):
    """A record that cannot be decoded and there is no dead-letter topic; `__cause__` says why."""


class _Abandoned(Exception):
    """A retry was interrupted: the worker is stopping or the partition was revoked."""


class Worker:
    """Runs `handler` for each event of `topics` in consumer group `group`. Drive it with run() (blocks
    until stop(), or a signal in `signals`), or start() it on a background thread and stop() it."""

    def __init__(
        self,
        config: Config,
        topics: str | Sequence[str],
        group: str,
        handler: Handler,
        registry: EventRegistry,
        *,
        retries: int = 3,
        backoff: tuple[float, float] = (0.1, 5.0),
        dead_letter_topic: str | None = None,
        concurrency: int = 1,
        max_buffered: int = 1000,
    ) -> None:
        if retries < 0 or concurrency < 1 or backoff[0] < 0 or backoff[1] < backoff[0]:
            raise ValueError("need retries >= 0, concurrency >= 1 and 0 <= initial backoff <= maximum")
        self.config = config
        # the names on the cluster: with the prefix of a platform add-on's config
        self.topics = [resource_name(config, t) for t in ([topics] if isinstance(topics, str) else topics)]
        self.group = resource_name(config, group)
        self.handler = handler
        self.registry = registry
        self.retries = retries
        self.backoff = backoff
        self.dead_letter_topic = (
            None if dead_letter_topic is None else resource_name(config, dead_letter_topic)
        )
        self.concurrency = concurrency
        self.max_buffered = max_buffered
        self.handled = 0  # events the handler succeeded on (a replayed one counts again)
        self.dead_lettered = 0
        self.error: BaseException | None = None  # what stopped the worker
        self._producer: Any = None  # for dead letters, while running
        if self.dead_letter_topic is not None:
            ensure_topic(config, self.dead_letter_topic)
        if prefix_of(config):  # a tenant cannot create them, and waiting for them would look like a hang
            require_topics(config, self.topics)
        self._stopping = threading.Event()
        self._signalled = False  # set by a signal handler: no locks there
        self._thread: threading.Thread | None = None
        self._lock = threading.Condition()
        self._pending: Counter[TP] = Counter()  # records queued or in progress, per partition
        self._done: dict[TP, int] = {}  # next offset: every record below it is handled
        self._committed: dict[TP, int] = {}
        self._dropped: set[TP] = set()  # revoked or stopping: skip their queued records

    # -- driving it ---------------------------------------------------------------------------

    def run(self, *, signals: Iterable[int] = ()) -> None:
        """Consume and handle until stop() or one of `signals` (install them only from the main thread);
        then finish the handlers in progress, commit and leave the group. Raises what stopped it."""
        defaults = {
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
            "isolation.level": "read_committed",
        }
        settings = client_config(self.config, defaults, group_id=self.group, enable_auto_commit=False)
        consumer = Consumer(settings)
        lanes: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(self.concurrency)]
        threads = [
            threading.Thread(target=self._lane, args=(q,), name=f"worker-{self.group}-{i}", daemon=True)
            for i, q in enumerate(lanes)
        ]
        if self.dead_letter_topic is not None:
            settings = client_config(self.config, enable_idempotence=True, acks="all")
            self._producer = Producer({k: v for k, v in settings.items() if not k.startswith(_CONSUMER_ONLY)})
        previous: dict[int, Any] = {}
        lane_of: dict[TP, int] = {}  # a partition keeps its lane: its records stay in order
        paused = False
        try:
            for thread in threads:
                thread.start()
            for number in signals:
                previous[number] = signal.signal(number, self._on_signal)
            consumer.subscribe(
                self.topics,
                on_revoke=lambda c, parts: self._release(c, parts, commit=True),
                on_lost=lambda c, parts: self._release(c, parts, commit=False),
            )
            while not (self._stopping.is_set() or self._signalled or self.error):
                with self._lock:
                    buffered = sum(self._pending.values())
                if not paused and buffered >= self.max_buffered:
                    consumer.pause(consumer.assignment())
                    paused = True
                elif paused and buffered < self.max_buffered // 2:
                    consumer.resume(consumer.assignment())
                    paused = False
                for message in consumer.consume(500, 0.1):
                    error = message.error()
                    if error is not None:
                        if error.fatal():
                            raise WorkerError(f"consuming {self.topics}: {error.str()}")
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("%s: consuming %s: %s", self.group, self.topics, error.str())
                        continue
                    tp = _position(message)
                    with self._lock:
                        self._pending[tp] += 1
                    lanes[lane_of.setdefault(tp, len(lane_of) % self.concurrency)].put(message)
                self._commit(consumer)
        except BaseException as error:
            self.error = self.error or error
        finally:
            self._stopping.set()
            with self._lock:
                self._dropped.update(self._pending)
            self._drain(list(self._pending))
            self._commit(consumer)
            for lane in lanes:
                lane.put(None)
            for thread in threads:
                if thread.ident is not None:
                    thread.join()
            consumer.close()  # leaves the group now, not after a session timeout
            if self._producer is not None:
                self._producer.close()
                self._producer = None
            for number, handler in previous.items():
                signal.signal(number, handler)
        if self.error is not None:
            raise self.error

    def start(self) -> Worker:
        """Run on a background thread; what stops it is kept in `error`."""

        def run() -> None:
            try:
                self.run()
            except BaseException as error:
                log.error("worker %s stopped: %r", self.group, error)

        self._thread = threading.Thread(target=run, name=f"worker-{self.group}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask run() to finish (handlers in progress, then commit and leave); wait for start()'s thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------------

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        self._signalled = True

    def _lane(self, lane: queue.SimpleQueue[Any]) -> None:
        """Handles the records of its partitions one at a time, in the order they were consumed."""
        while (message := lane.get()) is not None:
            tp = _position(message)
            try:
                with self._lock:
                    skip = tp in self._dropped
                if not skip:
                    self._process(message, tp)
                    with self._lock:
                        self._done[tp] = message.offset() + 1
            except _Abandoned:
                with self._lock:
                    self._dropped.add(tp)
            except BaseException as error:
                with self._lock:
                    self._dropped.add(tp)
                    self.error = self.error or error
            finally:
                with self._lock:
                    self._pending[tp] -= 1
                    self._lock.notify_all()

    def _process(self, message: Any, tp: TP) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        try:
            event = self.registry.decode(message.headers(), message.value())
        except (UnknownEventType, InvalidEventPayload) as error:
            if self.dead_letter_topic is None:
                raise PoisonEvent(str(error), topic, partition, offset) from error
            self._dead_letter(message, error, attempts=0)
            return
        key = message.key()
        recorded = RecordedEvent(
            event,
            key.decode(errors="replace") if key is not None else "",
            topic,
            partition,
            offset,
            datetime.fromtimestamp(message.timestamp()[1] / 1000, UTC),
        )
        for attempt in range(1, self.retries + 2):
            try:
                self.handler(recorded)
            except Exception as error:
                if attempt > self.retries:
                    if self.dead_letter_topic is None:
                        raise HandlerFailed(topic, partition, offset, attempt, error) from error
                    self._dead_letter(message, error, attempts=attempt)
                    return
                delay = min(self.backoff[0] * 2 ** (attempt - 1), self.backoff[1])
                log.warning("%s: %s[%d]@%d failed: %r, retry in %.2fs", self.group, *tp, offset, error, delay)
                self._sleep(delay, tp)
            else:
                with self._lock:
                    self.handled += 1
                return

    def _sleep(self, delay: float, tp: TP) -> None:
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            with self._lock:
                if tp in self._dropped or self._stopping.is_set() or self._signalled:
                    raise _Abandoned
            time.sleep(min(left, 0.05))

    def _dead_letter(self, message: Any, error: BaseException, attempts: int) -> None:
        kind = type(error)
        headers: list[tuple[str, str | bytes | None]] = list(message.headers() or [])
        headers += [
            (DLT_REASON, str(error)[:2000] or repr(error)),
            (DLT_EXCEPTION, f"{kind.__module__}.{kind.__qualname__}"),
            (DLT_TOPIC, message.topic()),
            (DLT_PARTITION, str(message.partition())),
            (DLT_OFFSET, str(message.offset())),
            (DLT_GROUP, self.group),
            (DLT_ATTEMPTS, str(attempts)),
        ]
        reports: list[Any] = []
        self._producer.produce(
            self.dead_letter_topic,
            message.value(),
            message.key(),
            headers=headers,
            on_delivery=lambda err, _: reports.append(err),
        )
        deadline = time.monotonic() + 30
        while not reports and time.monotonic() < deadline:
            self._producer.poll(0.01)  # serves delivery reports, ours or another lane's
        if not reports or reports[0] is not None:
            reason = reports[0].str() if reports else "no acknowledgement in 30 s"
            raise WorkerError(f"cannot write to dead-letter topic {self.dead_letter_topic!r}: {reason}")
        log.error(
            "%s: %s[%d]@%d dead-lettered to %s: %s",
            self.group,
            message.topic(),
            message.partition(),
            message.offset(),
            self.dead_letter_topic,
            error,
        )
        with self._lock:
            self.dead_lettered += 1

    def _drain(self, tps: Iterable[TP]) -> None:
        """Wait until no record of these partitions is queued or in progress."""
        tps = list(tps)
        with self._lock:
            self._lock.wait_for(lambda: all(self._pending[tp] <= 0 for tp in tps))

    def _commit(self, consumer: Any, only: Iterable[TP] | None = None) -> None:
        with self._lock:
            wanted = self._done if only is None else {tp: self._done[tp] for tp in only if tp in self._done}
            moved = {tp: o for tp, o in wanted.items() if self._committed.get(tp) != o}
        if not moved:
            return
        try:
            offsets = [TopicPartition(t, p, o) for (t, p), o in moved.items()]
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:  # e.g. during a rebalance: the next commit covers it
            log.warning("%s: commit failed: %s", self.group, error.args[0].str())
            return
        with self._lock:
            self._committed.update(moved)

    def _release(self, consumer: Any, partitions: list[TopicPartition], commit: bool) -> None:
        """Partitions revoked (commit what is handled first) or lost (too late to commit)."""
        tps = [(tp.topic, tp.partition) for tp in partitions]
        with self._lock:
            self._dropped.update(tps)
        self._drain(tps)
        if commit:
            self._commit(consumer, tps)
        with self._lock:
            for tp in tps:
                self._dropped.discard(tp)
                self._done.pop(tp, None)
                self._committed.pop(tp, None)
                self._pending.pop(tp, None)


def _position(message: Any) -> TP:
    return message.topic(), message.partition()
