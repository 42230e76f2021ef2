"""ApiVersions, Metadata and DescribeCluster: what the cluster is and what it serves."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from eventyard.broker.handlers import handles
from eventyard.broker.handlers.admin import create_topic
from eventyard.broker.topics import Topic
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.api_versions_request import ApiVersionsRequest
from eventyard.protocol.messages.api_versions_response import ApiVersion, ApiVersionsResponse
from eventyard.protocol.messages.describe_cluster_request import DescribeClusterRequest
from eventyard.protocol.messages.describe_cluster_response import (
    DescribeClusterBroker,
    DescribeClusterResponse,
)
from eventyard.protocol.messages.metadata_request import MetadataRequest
from eventyard.protocol.messages.metadata_response import (
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from eventyard.security.acl import Operation, ResourceType

if TYPE_CHECKING:
    from eventyard.broker.broker import Broker, RequestContext

# The "authorized operations" fields when a client did not ask for them.
OPERATIONS_NOT_REQUESTED = -(2**31)
LEADER_EPOCH = 0


@handles(18, 0, 4)
async def api_versions(
    broker: Broker, ctx: RequestContext, request: ApiVersionsRequest
) -> ApiVersionsResponse:
    return ApiVersionsResponse(
        api_keys=[
            ApiVersion(api_key=k, min_version=lo, max_version=hi)
            for k, (lo, hi) in broker.supported_versions().items()
        ]
    )


def topic_metadata(
    broker: Broker, topic: Topic, operations: int = OPERATIONS_NOT_REQUESTED
) -> MetadataResponseTopic:
    node = broker.config.node_id
    return MetadataResponseTopic(
        name=topic.name,
        topic_id=topic.id,
        is_internal=topic.internal,
        topic_authorized_operations=operations,
        partitions=[
            MetadataResponsePartition(
                error_code=ErrorCode.NONE if p.online else ErrorCode.LEADER_NOT_AVAILABLE,
                partition_index=p.index,
                leader_id=node if p.online else -1,
                leader_epoch=LEADER_EPOCH,
                replica_nodes=[node],
                isr_nodes=[node] if p.online else [],
                offline_replicas=[] if p.online else [node],
            )
            for p in topic.partitions
        ],
    )


@handles(3, 0, 12)
async def metadata(broker: Broker, ctx: RequestContext, request: MetadataRequest) -> MetadataResponse:
    registry = broker.topics

    def described(topic: Topic) -> MetadataResponseTopic:
        ops = broker.authorized_operations(
            ctx, request.include_topic_authorized_operations, ResourceType.TOPIC, topic.name
        )
        return topic_metadata(broker, topic, ops)

    def failed(
        name: str | None, error: ErrorCode, topic_id: uuid.UUID | None = None
    ) -> MetadataResponseTopic:
        # The zero id unless the client gave it: an unauthorized client does not learn it.
        return MetadataResponseTopic(error_code=error, name=name, topic_id=topic_id or uuid.UUID(int=0))

    topics: list[MetadataResponseTopic] = []
    # v0 asks for all topics with an empty list; later versions with null.
    if request.topics is None or (ctx.version == 0 and not request.topics):
        # Listing all topics silently leaves out those the client may not DESCRIBE.
        topics = [
            described(t)
            for t in registry.topics.values()
            if broker.authorize(ctx, Operation.DESCRIBE, ResourceType.TOPIC, t.name, log_denied=False)
        ]
    else:
        auto_create = broker.config.auto_create_topics and (
            request.allow_auto_topic_creation or ctx.version < 4
        )
        for wanted in request.topics:
            name = wanted.name
            if name is None:
                found = registry.by_id.get(wanted.topic_id)
                if found is None:
                    topics.append(
                        MetadataResponseTopic(
                            error_code=ErrorCode.UNKNOWN_TOPIC_ID, name=None, topic_id=wanted.topic_id
                        )
                    )
                    continue
                name = found.name
            if not broker.authorize(ctx, Operation.DESCRIBE, ResourceType.TOPIC, name):
                topics.append(failed(wanted.name, ErrorCode.TOPIC_AUTHORIZATION_FAILED, wanted.topic_id))
                continue
            topic = registry.get(name)
            if topic is None and auto_create:
                if not (
                    broker.authorize(ctx, Operation.CREATE, ResourceType.CLUSTER, log_denied=False)
                    or broker.authorize(ctx, Operation.CREATE, ResourceType.TOPIC, name)
                ):
                    topics.append(failed(name, ErrorCode.TOPIC_AUTHORIZATION_FAILED))
                    continue
                error, _ = create_topic(broker, name, -1, -1, {})
                if error not in (ErrorCode.NONE, ErrorCode.TOPIC_ALREADY_EXISTS):
                    topics.append(MetadataResponseTopic(error_code=error, name=name))
                    continue
                topic = registry.get(name)
            if topic is None:
                topics.append(failed(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
            else:
                topics.append(described(topic))
    return MetadataResponse(
        brokers=[
            MetadataResponseBroker(
                node_id=broker.config.node_id, host=ctx.session.advertised_host, port=ctx.session.port
            )
        ],
        cluster_id=registry.cluster_id,
        controller_id=broker.config.node_id,
        topics=topics,
        cluster_authorized_operations=broker.authorized_operations(
            ctx, request.include_cluster_authorized_operations, ResourceType.CLUSTER
        ),
    )


@handles(60, 0, 1)
async def describe_cluster(
    broker: Broker, ctx: RequestContext, request: DescribeClusterRequest
) -> DescribeClusterResponse:
    if not broker.authorize(ctx, Operation.DESCRIBE, ResourceType.CLUSTER):
        return DescribeClusterResponse(
            error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, endpoint_type=request.endpoint_type
        )
    return DescribeClusterResponse(
        endpoint_type=request.endpoint_type,
        cluster_id=broker.topics.cluster_id,
        controller_id=broker.config.node_id,
        brokers=[
            DescribeClusterBroker(
                broker_id=broker.config.node_id, host=ctx.session.advertised_host, port=ctx.session.port
            )
        ],
        cluster_authorized_operations=broker.authorized_operations(
            ctx, request.include_cluster_authorized_operations, ResourceType.CLUSTER
        ),
    )
