"""DescribeLogDirs: how much disk each partition takes, in the broker's one log directory."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from eventyard.broker.handlers import handles
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.describe_log_dirs_request import DescribeLogDirsRequest
from eventyard.protocol.messages.describe_log_dirs_response import (
    DescribeLogDirsPartition,
    DescribeLogDirsResponse,
    DescribeLogDirsResult,
    DescribeLogDirsTopic,
)
from eventyard.security.acl import Operation, ResourceType

if TYPE_CHECKING:
    from eventyard.broker.broker import Broker, RequestContext


@handles(35, 0, 4)
async def describe_log_dirs(
    broker: Broker, ctx: RequestContext, request: DescribeLogDirsRequest
) -> DescribeLogDirsResponse:
    if not broker.authorize(ctx, Operation.DESCRIBE, ResourceType.CLUSTER):
        return DescribeLogDirsResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)  # no results
    registry = broker.topics
    wanted = (
        [(t.name, [p.index for p in t.partitions]) for t in registry.topics.values()]
        if request.topics is None
        else [(t.topic, t.partitions) for t in request.topics]
    )
    topics = []
    for name, indexes in wanted:
        partitions = [
            DescribeLogDirsPartition(
                partition_index=i, partition_size=p.log.size_bytes, segment_count=p.log.segment_count
            )
            for i in indexes
            if (p := registry.partition(name, i)) is not None
        ]
        if partitions:
            topics.append(DescribeLogDirsTopic(name=name, partitions=partitions))
    data_dir = broker.config.data_dir
    result = DescribeLogDirsResult(log_dir=str(data_dir.resolve()) if data_dir else "memory", topics=topics)
    if data_dir is not None:
        stats = os.statvfs(data_dir)
        result.total_bytes = stats.f_blocks * stats.f_frsize
        result.usable_bytes = stats.f_bavail * stats.f_frsize
    return DescribeLogDirsResponse(results=[result])
