"""A partition: its log, its idempotent-producer state, and the fetches waiting on it."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from eventyard.coordinator.producers import ProducerStates, Verdict
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.records import BatchHeader, InvalidBatch, decode_records, split_batches
from eventyard.storage.base import PartitionLog, StorageError

LEADER_EPOCH = 0  # one node, never re-elected
_LEADER_EPOCH = struct.Struct(">i")  # partitionLeaderEpoch sits before the CRC'd bytes

# How far back to read batch headers to rebuild producer state on open.
PRODUCER_STATE_SCAN_BATCHES = 100_000


@dataclass(frozen=True, slots=True)
class ProduceOutcome:
    error: ErrorCode
    base_offset: int = -1
    log_append_time: int = -1
    message: str | None = None
    record_count: int = 0


class Partition:
    def __init__(self, topic: str, index: int, log: PartitionLog) -> None:
        self.topic = topic
        self.index = index
        self.log = log
        self.producers = ProducerStates()
        self.unflushed_messages = 0
        self.last_flush_ms = 0
        self.online = True  # False while a simulated failure or a disk error takes it away
        self._waiters: set[asyncio.Future[None]] = set()
        self._rebuild_producer_state()

    def _rebuild_producer_state(self) -> None:
        start = max(self.log.log_start_offset, self.log.log_end_offset - PRODUCER_STATE_SCAN_BATCHES)
        if start >= self.log.log_end_offset:
            return
        for header in self.log.batch_headers(start):
            self.producers.record(header, header.base_offset)

    def append(
        self,
        data: bytes | bytearray | memoryview,
        *,
        max_batch_bytes: int,
        now_ms: int,
        log_append_time: bool,
        require_keys: bool = False,
    ) -> ProduceOutcome:
        """Validate and append the record set of one produce request for this partition.

        require_keys (compacted topics) is the one case that decodes records before appending.

        A writable `data` (a view of the request frame, see FrameReader) is validated, then
        rewritten in place (leader epoch, offsets) and written to the log from there; nothing
        keeps a reference to it after this returns (producer state keeps parsed headers only).
        Read-only data (bytes) is copied once first.
        """
        try:
            batches = split_batches(data, max_batch_bytes)
            if require_keys:
                for pos, _ in batches:
                    if any(r.key is None for r in decode_records(data, pos)):
                        return ProduceOutcome(
                            ErrorCode.INVALID_RECORD, message="a compacted topic needs a key on every record"
                        )
        except InvalidBatch as exc:
            return ProduceOutcome(ErrorCode[exc.error], message=str(exc))
        headers = [h for _, h in batches]
        checks = [self.producers.check(h) for h in headers]
        for check in checks:
            if check.verdict is Verdict.OUT_OF_ORDER:
                return ProduceOutcome(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, message=check.detail)
            if check.verdict is Verdict.FENCED:
                return ProduceOutcome(ErrorCode.INVALID_PRODUCER_EPOCH, message=check.detail)
        if all(c.verdict is Verdict.DUPLICATE for c in checks):
            first = checks[0].duplicate_of
            assert first is not None
            return ProduceOutcome(ErrorCode.NONE, first.first_offset)
        if any(c.verdict is Verdict.DUPLICATE for c in checks):
            return ProduceOutcome(
                ErrorCode.DUPLICATE_SEQUENCE_NUMBER, message="request mixes new and retried batches"
            )
        # The CRC-32C was checked above on the bytes as received; the fields rewritten from here
        # on (leader epoch, base offset) lie outside it, and a LogAppendTime stamp recomputes it.
        buf = data if isinstance(data, bytearray) else _writable(data)
        for pos, _ in batches:
            _LEADER_EPOCH.pack_into(buf, pos + 12, LEADER_EPOCH)
        try:
            result = self.log.append(buf, batches, now_ms, log_append_time)
        except StorageError as exc:
            return ProduceOutcome(ErrorCode.KAFKA_STORAGE_ERROR, message=str(exc))
        self._remember(headers, result.base_offset)
        count = result.last_offset - result.base_offset + 1
        self.unflushed_messages += count
        self.wake_fetchers()
        return ProduceOutcome(ErrorCode.NONE, result.base_offset, result.log_append_time, record_count=count)

    def _remember(self, headers: list[BatchHeader], base_offset: int) -> None:
        cursor = base_offset
        for header in headers:
            self.producers.record(header, cursor)
            cursor += header.last_offset_delta + 1

    # --- fetch long polling ---

    def add_waiter(self, waiter: asyncio.Future[None]) -> None:
        self._waiters.add(waiter)

    def remove_waiter(self, waiter: asyncio.Future[None]) -> None:
        self._waiters.discard(waiter)

    def wake_fetchers(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def _writable(data: bytes | memoryview) -> bytearray | memoryview:
    """data itself if it can be rewritten in place, else a copy that can."""
    if isinstance(data, memoryview) and not data.readonly:
        return data
    return bytearray(data)
