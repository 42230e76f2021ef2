"""ListOffsets (earliest, latest, max timestamp, by time) and DeleteRecords."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventyard.broker.handlers import handles
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.delete_records_request import DeleteRecordsRequest
from eventyard.protocol.messages.delete_records_response import (
    DeleteRecordsPartitionResult,
    DeleteRecordsResponse,
    DeleteRecordsTopicResult,
)
from eventyard.protocol.messages.list_offsets_request import ListOffsetsRequest
from eventyard.protocol.messages.list_offsets_response import (
    ListOffsetsPartitionResponse,
    ListOffsetsResponse,
    ListOffsetsTopicResponse,
)
from eventyard.security.acl import Operation, ResourceType
from eventyard.storage.base import StorageError

if TYPE_CHECKING:
    from eventyard.broker.broker import Broker, RequestContext

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4  # KIP-405: no tiered storage, so the same as earliest
LATEST_TIERED = -5  # KIP-1005: nothing is tiered, so the log start offset


@handles(2, 0, 10)
async def list_offsets(
    broker: Broker, ctx: RequestContext, request: ListOffsetsRequest
) -> ListOffsetsResponse:
    topics = []
    for t in request.topics:
        allowed = broker.authorize(ctx, Operation.DESCRIBE, ResourceType.TOPIC, t.name)
        partitions = []
        for p in t.partitions:
            result = ListOffsetsPartitionResponse(partition_index=p.partition_index)
            partitions.append(result)
            partition = broker.topics.partition(t.name, p.partition_index)
            if not allowed:
                result.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                continue
            if partition is None:
                result.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            if not partition.online:
                result.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
                continue
            log = partition.log
            found: tuple[int, int] | None
            try:
                if p.timestamp == LATEST:
                    found = (log.log_end_offset, -1)
                elif p.timestamp in (EARLIEST, EARLIEST_LOCAL, LATEST_TIERED):
                    found = (log.log_start_offset, -1)
                elif p.timestamp == MAX_TIMESTAMP:
                    found = log.max_timestamp()
                elif p.timestamp < 0:
                    result.error_code = ErrorCode.INVALID_REQUEST
                    continue
                else:
                    found = log.offset_for_timestamp(p.timestamp)
            except StorageError:
                result.error_code = ErrorCode.KAFKA_STORAGE_ERROR
                continue
            offset, timestamp = found if found is not None else (-1, -1)
            if ctx.version == 0:
                result.old_style_offsets = [offset] if offset >= 0 else []
            else:
                result.offset = offset
                result.timestamp = timestamp
                result.leader_epoch = 0 if offset >= 0 else -1
        topics.append(ListOffsetsTopicResponse(name=t.name, partitions=partitions))
    return ListOffsetsResponse(topics=topics)


@handles(21, 0, 2)
async def delete_records(
    broker: Broker, ctx: RequestContext, request: DeleteRecordsRequest
) -> DeleteRecordsResponse:
    topics = []
    for t in request.topics:
        allowed = broker.authorize(ctx, Operation.DELETE, ResourceType.TOPIC, t.name)
        partitions = []
        for p in t.partitions:
            result = DeleteRecordsPartitionResult(partition_index=p.partition_index, low_watermark=-1)
            partitions.append(result)
            partition = broker.topics.partition(t.name, p.partition_index)
            if not allowed:
                result.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                continue
            if partition is None:
                result.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            log = partition.log
            offset = log.log_end_offset if p.offset == -1 else p.offset
            if not 0 <= offset <= log.log_end_offset:
                result.error_code = ErrorCode.OFFSET_OUT_OF_RANGE
                continue
            try:
                result.low_watermark = log.delete_records_before(max(offset, log.log_start_offset))
                broker.tenants.invalidate()
            except StorageError:
                result.error_code = ErrorCode.KAFKA_STORAGE_ERROR
        topics.append(DeleteRecordsTopicResult(name=t.name, partitions=partitions))
    return DeleteRecordsResponse(topics=topics)
