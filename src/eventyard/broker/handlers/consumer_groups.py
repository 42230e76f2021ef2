"""KIP-848 consumer groups: ConsumerGroupHeartbeat and ConsumerGroupDescribe, translated to the
pure coordinator in eventyard.coordinator.consumer_group (server-side assignment)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from eventyard.broker.handlers import handles
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages import consumer_group_describe_response as described
from eventyard.protocol.messages.consumer_group_describe_request import ConsumerGroupDescribeRequest
from eventyard.protocol.messages.consumer_group_heartbeat_request import ConsumerGroupHeartbeatRequest
from eventyard.protocol.messages.consumer_group_heartbeat_response import (
    Assignment,
    ConsumerGroupHeartbeatResponse,
    TopicPartitions,
)
from eventyard.security.acl import Operation, ResourceType

if TYPE_CHECKING:
    from eventyard.broker.broker import Broker, RequestContext


def topics_view(broker: Broker) -> dict[str, tuple[uuid.UUID, int]]:
    return {t.name: (t.id, len(t.partitions)) for t in broker.topics.topics.values()}


@handles(68, 0, 1)
async def consumer_group_heartbeat(
    broker: Broker, ctx: RequestContext, request: ConsumerGroupHeartbeatRequest
) -> ConsumerGroupHeartbeatResponse:
    if not broker.authorize(ctx, Operation.READ, ResourceType.GROUP, request.group_id):
        return ConsumerGroupHeartbeatResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    # Subscribing by name needs DESCRIBE on every named topic, as in Kafka 4.
    refused = [
        name
        for name in request.subscribed_topic_names or ()
        if not broker.authorize(ctx, Operation.DESCRIBE, ResourceType.TOPIC, name)
    ]
    if refused:
        return ConsumerGroupHeartbeatResponse(
            error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED,
            error_message=f"not authorized to describe topics {', '.join(sorted(refused))}",
        )
    groups = broker.groups
    owned = (
        None
        if request.topic_partitions is None
        else [(tp.topic_id, list(tp.partitions)) for tp in request.topic_partitions]
    )
    result = groups.consumer.heartbeat(
        request.group_id,
        request.member_id,
        request.member_epoch,
        instance_id=request.instance_id,
        rack_id=request.rack_id,
        rebalance_timeout_ms=request.rebalance_timeout_ms,
        subscribed_topic_names=request.subscribed_topic_names,
        subscribed_topic_regex=request.subscribed_topic_regex,
        server_assignor=request.server_assignor,
        owned_partitions=owned,
        topics=lambda: topics_view(broker),
        version=ctx.version,
        client_id=ctx.header.client_id or "",
        client_host=ctx.client_host.rsplit(":", 1)[0],
        now_ms=groups.now_ms(),
    )
    groups.consumer_tick()  # its deadlines may have moved
    assignment = None
    if result.assignment is not None:
        assignment = Assignment(
            topic_partitions=[TopicPartitions(topic_id=t, partitions=list(ps)) for t, ps in result.assignment]
        )
    return ConsumerGroupHeartbeatResponse(
        error_code=result.error_code,
        error_message=result.error_message,
        member_id=result.member_id,
        member_epoch=result.member_epoch,
        heartbeat_interval_ms=result.heartbeat_interval_ms,
        assignment=assignment,
    )


def _assignment(partitions: tuple[tuple[uuid.UUID, str, tuple[int, ...]], ...]) -> described.Assignment:
    return described.Assignment(
        topic_partitions=[
            described.TopicPartitions(topic_id=topic_id, topic_name=name, partitions=list(ps))
            for topic_id, name, ps in partitions
        ]
    )


@handles(69, 0, 0)
async def consumer_group_describe(
    broker: Broker, ctx: RequestContext, request: ConsumerGroupDescribeRequest
) -> described.ConsumerGroupDescribeResponse:
    groups = broker.groups
    allowed = [
        g for g in request.group_ids if broker.authorize(ctx, Operation.DESCRIBE, ResourceType.GROUP, g)
    ]
    descriptions = groups.consumer.describe(allowed, topics_view(broker), now_ms=groups.now_ms())
    refused = [
        described.DescribedGroup(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, group_id=g)
        for g in request.group_ids
        if g not in allowed
    ]
    return described.ConsumerGroupDescribeResponse(
        groups=refused
        + [
            described.DescribedGroup(
                error_code=d.error_code,
                error_message=d.error_message,
                group_id=d.group_id,
                group_state=d.group_state,
                group_epoch=d.group_epoch,
                assignment_epoch=d.assignment_epoch,
                assignor_name=d.assignor_name,
                authorized_operations=broker.authorized_operations(
                    ctx, request.include_authorized_operations, ResourceType.GROUP, d.group_id
                ),
                members=[
                    described.Member(
                        member_id=m.member_id,
                        instance_id=m.instance_id,
                        rack_id=m.rack_id,
                        member_epoch=m.member_epoch,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        subscribed_topic_names=list(m.subscribed_topic_names),
                        subscribed_topic_regex=m.subscribed_topic_regex,
                        assignment=_assignment(m.assignment),
                        target_assignment=_assignment(m.target_assignment),
                    )
                    for m in d.members
                ],
            )
            for d in descriptions
        ]
    )
