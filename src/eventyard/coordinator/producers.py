"""Idempotent producers: per-partition sequence checks, as a pure state machine.

For each producer id a partition remembers the epoch and the last five batches it appended
(first and last sequence, first and last offset). A new batch is accepted, recognised as a
duplicate of a remembered batch (answered with its original offsets), or refused. The state is
rebuilt from the log's batch headers when a partition is opened, so idempotence survives a
restart.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from eventyard.protocol.records import BatchHeader

REMEMBERED_BATCHES = 5
NO_PRODUCER_ID = -1


class Verdict(Enum):
    APPEND = "append"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order_sequence"
    FENCED = "invalid_producer_epoch"


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int


@dataclass(slots=True)
class ProducerEntry:
    epoch: int
    batches: deque[BatchMetadata] = field(default_factory=lambda: deque(maxlen=REMEMBERED_BATCHES))

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


@dataclass(frozen=True, slots=True)
class Check:
    verdict: Verdict
    duplicate_of: BatchMetadata | None = None
    detail: str = ""


def _next_seq(seq: int) -> int:
    return 0 if seq == 0x7FFFFFFF else seq + 1


class ProducerStates:
    """Sequence state of every idempotent producer writing to one partition."""

    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}

    def check(self, header: BatchHeader) -> Check:
        """Judge a batch before it is appended. Non-idempotent batches always append."""
        pid = header.producer_id
        if pid == NO_PRODUCER_ID or header.base_sequence < 0:
            return Check(Verdict.APPEND)
        entry = self.producers.get(pid)
        epoch = header.producer_epoch
        if entry is not None and epoch < entry.epoch:
            return Check(
                Verdict.FENCED, detail=f"epoch {epoch} is older than the current epoch {entry.epoch}"
            )
        if entry is None or epoch > entry.epoch or not entry.batches:
            # A new producer or a new epoch must start its sequence at 0.
            if header.base_sequence != 0:
                return Check(
                    Verdict.OUT_OF_ORDER,
                    detail=f"a new producer epoch must start at sequence 0, not {header.base_sequence}",
                )
            return Check(Verdict.APPEND)
        for batch in entry.batches:
            if batch.first_seq == header.base_sequence and batch.last_seq == header.last_sequence:
                return Check(Verdict.DUPLICATE, duplicate_of=batch)
        expected = _next_seq(entry.last_seq)
        if header.base_sequence != expected:
            return Check(
                Verdict.OUT_OF_ORDER,
                detail=f"expected sequence {expected}, got {header.base_sequence}",
            )
        return Check(Verdict.APPEND)

    def record(self, header: BatchHeader, base_offset: int) -> None:
        """Remember a batch that was appended at base_offset."""
        pid = header.producer_id
        if pid == NO_PRODUCER_ID or header.base_sequence < 0:
            return
        entry = self.producers.get(pid)
        if entry is None or header.producer_epoch > entry.epoch:
            entry = self.producers[pid] = ProducerEntry(header.producer_epoch)
        entry.batches.append(
            BatchMetadata(
                header.base_sequence,
                header.last_sequence,
                base_offset,
                base_offset + header.last_offset_delta,
            )
        )
