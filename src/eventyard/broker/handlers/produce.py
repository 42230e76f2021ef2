"""Produce: validate batches, check producer sequences, append, and answer per acks."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from eventyard.broker.handlers import handles
from eventyard.broker.partition import Partition
from eventyard.broker.quotas import PRODUCER_BYTE_RATE, throttle
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.produce_request import ProduceRequest
from eventyard.protocol.messages.produce_response import (
    PartitionProduceResponse,
    ProduceResponse,
    TopicProduceResponse,
)
from eventyard.security.acl import Operation, ResourceType
from eventyard.storage.base import StorageError

if TYPE_CHECKING:
    from eventyard.broker.broker import Broker, RequestContext


KIP_219 = 6  # from this version the client backs off itself and the broker mutes the connection


@handles(0, 3, 11)
async def produce(broker: Broker, ctx: RequestContext, request: ProduceRequest) -> ProduceResponse | None:
    if request.acks not in (0, 1, -1):
        return _reject_all(request, ErrorCode.INVALID_REQUIRED_ACKS, "acks must be 0, 1 or -1")
    if request.transactional_id is not None:
        return _reject_all(
            request, ErrorCode.TRANSACTIONAL_ID_NOT_FOUND, "transactions are not supported yet"
        )
    now = broker.now_ms()
    registry = broker.topics
    responses = []
    touched: list[tuple[Partition, PartitionProduceResponse]] = []
    for topic_data in request.topic_data:
        allowed = broker.authorize(ctx, Operation.WRITE, ResourceType.TOPIC, topic_data.name)
        topic = registry.get(topic_data.name)
        configs = registry.effective_configs(topic) if topic else {}
        refused = broker.tenants.produce_problem(topic_data.name) if allowed and topic else None
        partition_responses = []
        for pdata in topic_data.partition_data:
            partition = registry.partition(topic_data.name, pdata.index)
            response = PartitionProduceResponse(index=pdata.index)
            partition_responses.append(response)
            if not allowed:  # checked before existence: an unauthorized client learns nothing
                response.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                continue
            if topic is None or partition is None:
                response.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            if not partition.online:
                response.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
                continue
            if refused is not None:
                response.error_code, response.error_message = ErrorCode.POLICY_VIOLATION, refused
                continue
            if pdata.records is None:
                response.error_code = ErrorCode.CORRUPT_MESSAGE
                continue
            outcome = partition.append(
                pdata.records,
                max_batch_bytes=int(configs["max.message.bytes"]),
                now_ms=now,
                log_append_time=configs["message.timestamp.type"] == "LogAppendTime",
                require_keys="compact" in configs["cleanup.policy"],
            )
            response.error_code = outcome.error
            response.error_message = outcome.message
            response.base_offset = outcome.base_offset
            response.log_append_time_ms = outcome.log_append_time
            response.log_start_offset = partition.log.log_start_offset
            if outcome.error == ErrorCode.NONE:
                touched.append((partition, response))
                broker.tenants.appended(topic_data.name, len(pdata.records))
        responses.append(TopicProduceResponse(name=topic_data.name, partition_responses=partition_responses))
    if touched:
        await _flush_as_configured(broker, touched)
    # Quotas: the request is answered, then the connection throttled (muted from v6, KIP-219, and
    # with acks=0 where there is no answer to delay).
    size = sum(len(p.records or b"") for t in request.topic_data for p in t.partition_data)
    throttle_ms = broker.quotas.record(PRODUCER_BYTE_RATE, ctx.principal, ctx.header.client_id, size)
    await throttle(broker.quotas, ctx.session, throttle_ms, mute=ctx.version >= KIP_219 or request.acks == 0)
    if request.acks == 0:
        return None
    return ProduceResponse(responses=responses, throttle_time_ms=throttle_ms)


async def _flush_as_configured(
    broker: Broker, touched: list[tuple[Partition, PartitionProduceResponse]]
) -> None:
    """Apply each partition's flush.messages before acknowledging; fsyncs run concurrently."""
    results = await asyncio.gather(*(broker.flush_if_due(p) for p, _ in touched), return_exceptions=True)
    for (_, response), result in zip(touched, results, strict=True):
        if isinstance(result, StorageError):
            response.error_code = ErrorCode.KAFKA_STORAGE_ERROR
            response.error_message = str(result)
        elif isinstance(result, BaseException):
            raise result


def _reject_all(request: ProduceRequest, error: ErrorCode, message: str) -> ProduceResponse:
    return ProduceResponse(
        responses=[
            TopicProduceResponse(
                name=t.name,
                partition_responses=[
                    PartitionProduceResponse(index=p.index, error_code=error, error_message=message)
                    for p in t.partition_data
                ],
            )
            for t in request.topic_data
        ]
    )
