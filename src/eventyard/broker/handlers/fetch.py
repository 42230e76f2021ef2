"""Fetch: file bytes from the logs, with long polling and byte limits (KIP-74).

Fetch sessions (KIP-227) are refused the way the protocol allows: every answer carries session
id 0, so clients keep sending full fetch requests.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from eventyard.broker.handlers import handles
from eventyard.broker.partition import Partition
from eventyard.broker.quotas import CONSUMER_BYTE_RATE, throttle
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.fetch_request import FetchRequest
from eventyard.protocol.messages.fetch_response import FetchableTopicResponse, FetchResponse, PartitionData
from eventyard.security.acl import Operation, ResourceType
from eventyard.storage.base import OffsetOutOfRange, StorageError

if TYPE_CHECKING:
    from eventyard.broker.broker import Broker, RequestContext

READ_COMMITTED = 1
TOPIC_IDS_FROM = 13
KIP_219 = 8  # from this version the client backs off itself and the broker mutes the connection


@handles(1, 4, 17)
async def fetch(broker: Broker, ctx: RequestContext, request: FetchRequest) -> FetchResponse:
    if request.session_id != 0:
        return FetchResponse(error_code=ErrorCode.FETCH_SESSION_ID_NOT_FOUND, session_id=0)
    if request.session_epoch > 0:
        return FetchResponse(error_code=ErrorCode.INVALID_FETCH_SESSION_EPOCH, session_id=0)
    denied = _unauthorized(broker, ctx, request)
    deadline = time.monotonic() + max(request.max_wait_ms, 0) / 1000
    while True:
        response, size, partitions = _read(broker, ctx.version, request, denied)
        remaining = deadline - time.monotonic()
        if size >= request.min_bytes or remaining <= 0 or not partitions:
            # Quotas limit by throttling, never by truncating: the whole answer goes out, then the
            # connection waits (or, before KIP-219, the answer does).
            throttle_ms = broker.quotas.record(CONSUMER_BYTE_RATE, ctx.principal, ctx.header.client_id, size)
            response.throttle_time_ms = throttle_ms
            await throttle(broker.quotas, ctx.session, throttle_ms, mute=ctx.version >= KIP_219)
            return response
        await _wait_for_data(partitions, remaining)


def _unauthorized(broker: Broker, ctx: RequestContext, request: FetchRequest) -> set[int]:
    """Positions in the request of the topics the client may not READ (decided once, not per poll)."""
    denied = set()
    for i, wanted in enumerate(request.topics):
        if ctx.version >= TOPIC_IDS_FROM:
            topic = broker.topics.by_id.get(wanted.topic_id)
            name = topic.name if topic is not None else None  # an unknown id stays UNKNOWN_TOPIC_ID
        else:
            name = wanted.topic
        if name is not None and not broker.authorize(ctx, Operation.READ, ResourceType.TOPIC, name):
            denied.add(i)
    return denied


def _read(
    broker: Broker, version: int, request: FetchRequest, denied: set[int]
) -> tuple[FetchResponse, int, list[Partition]]:
    registry = broker.topics
    use_ids = version >= TOPIC_IDS_FROM
    budget = request.max_bytes if request.max_bytes > 0 else 0x7FFFFFFF
    total = 0
    watched: list[Partition] = []
    topics = []
    for i, wanted in enumerate(request.topics):
        topic = registry.by_id.get(wanted.topic_id) if use_ids else registry.get(wanted.topic)
        unknown = ErrorCode.UNKNOWN_TOPIC_ID if use_ids else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        results = []
        for fp in wanted.partitions:
            data = PartitionData(
                partition_index=fp.partition, high_watermark=-1, last_stable_offset=-1, records=b""
            )
            if request.isolation_level == READ_COMMITTED:
                data.aborted_transactions = []
            else:
                data.aborted_transactions = None
            results.append(data)
            if i in denied:
                data.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                continue
            partition = None
            if topic is not None and 0 <= fp.partition < len(topic.partitions):
                partition = topic.partitions[fp.partition]
            if partition is None:
                data.error_code = unknown if topic is None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            if not partition.online:
                data.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
                continue
            log = partition.log
            end = log.log_end_offset
            data.high_watermark = end
            data.last_stable_offset = end
            data.log_start_offset = log.log_start_offset
            limit = min(fp.partition_max_bytes, budget - total)
            try:
                records = (
                    log.read(fp.fetch_offset, max(limit, 0), min_one=total == 0)
                    if limit > 0 or total == 0
                    else b""
                )
            except OffsetOutOfRange:
                data.error_code = ErrorCode.OFFSET_OUT_OF_RANGE
                continue
            except StorageError:
                data.error_code = ErrorCode.KAFKA_STORAGE_ERROR
                continue
            data.records = records
            total += len(records)
            watched.append(partition)
        topics.append(
            FetchableTopicResponse(
                topic=wanted.topic if not use_ids else (topic.name if topic else ""),
                topic_id=wanted.topic_id,
                partitions=results,
            )
        )
    return FetchResponse(session_id=0, responses=topics), total, watched


async def _wait_for_data(partitions: list[Partition], timeout: float) -> None:
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    for p in partitions:
        p.add_waiter(waiter)
    try:
        await asyncio.wait_for(waiter, timeout)
    except TimeoutError:
        pass
    finally:
        for p in partitions:
            p.remove_waiter(waiter)
