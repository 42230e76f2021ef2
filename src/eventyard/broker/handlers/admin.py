"""Topic administration: CreateTopics, DeleteTopics, CreatePartitions, and InitProducerId."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from eventyard.broker.config import TOPIC_CONFIGS, invalid_topic_config
from eventyard.broker.handlers import handles
from eventyard.broker.topics import invalid_topic_name
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.create_partitions_request import CreatePartitionsRequest
from eventyard.protocol.messages.create_partitions_response import (
    CreatePartitionsResponse,
    CreatePartitionsTopicResult,
)
from eventyard.protocol.messages.create_topics_request import CreateTopicsRequest
from eventyard.protocol.messages.create_topics_response import (
    CreatableTopicConfigs,
    CreatableTopicResult,
    CreateTopicsResponse,
)
from eventyard.protocol.messages.delete_topics_request import DeleteTopicsRequest
from eventyard.protocol.messages.delete_topics_response import DeletableTopicResult, DeleteTopicsResponse
from eventyard.protocol.messages.init_producer_id_request import InitProducerIdRequest
from eventyard.protocol.messages.init_producer_id_response import InitProducerIdResponse
from eventyard.security.acl import Operation, ResourceType
from eventyard.storage.base import StorageError

if TYPE_CHECKING:
    from eventyard.broker.broker import Broker, RequestContext

log = logging.getLogger(__name__)

MAX_PARTITIONS = 10_000
CONFIG_SOURCE_DYNAMIC_TOPIC = 1
CONFIG_SOURCE_DEFAULT = 5


def create_topic(
    broker: Broker,
    name: str,
    partitions: int,
    replication_factor: int,
    configs: dict[str, str | None],
    validate_only: bool = False,
    planned: Sequence[tuple[str, int]] = (),
) -> tuple[ErrorCode, str | None]:
    """Check and create a topic; the error and its message (NONE, None on success). `planned` are
    the topics a validate-only request has validated before this one, counted as if created."""
    problem = invalid_topic_name(name)
    if problem:
        return ErrorCode.INVALID_TOPIC_EXCEPTION, problem
    if broker.topics.get(name) is not None:
        return ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists"
    if partitions == -1:
        partitions = broker.config.num_partitions
    if not 1 <= partitions <= MAX_PARTITIONS:
        return ErrorCode.INVALID_PARTITIONS, f"number of partitions must be between 1 and {MAX_PARTITIONS}"
    if replication_factor not in (-1, 1):
        return ErrorCode.INVALID_REPLICATION_FACTOR, "this broker has one node: replication factor must be 1"
    for key, value in configs.items():
        problem = invalid_topic_config(key, value)
        if problem:
            return ErrorCode.INVALID_CONFIG, problem
    problem = broker.tenants.partition_problem([*planned, (name, partitions)])
    if problem:
        return ErrorCode.POLICY_VIOLATION, problem
    if not validate_only:
        try:
            broker.topics.create(name, partitions, {k: v for k, v in configs.items() if v is not None})
        except (StorageError, OSError) as exc:
            log.error("cannot create topic %s: %s", name, exc)
            return ErrorCode.KAFKA_STORAGE_ERROR, f"cannot create topic {name!r}: {exc}"
    return ErrorCode.NONE, None


@handles(19, 0, 7)
async def create_topics(
    broker: Broker, ctx: RequestContext, request: CreateTopicsRequest
) -> CreateTopicsResponse:
    results = []
    seen: set[str] = set()
    planned: list[tuple[str, int]] = []  # validate_only: what would have been created so far
    # CREATE on the cluster allows every topic; otherwise CREATE on each topic is needed.
    on_cluster = broker.authorize(ctx, Operation.CREATE, ResourceType.CLUSTER, log_denied=False)
    for t in request.topics:
        result = CreatableTopicResult(name=t.name)
        results.append(result)
        if t.name in seen:
            result.error_code = ErrorCode.INVALID_REQUEST
            result.error_message = f"topic {t.name!r} appears more than once in the request"
            continue
        seen.add(t.name)
        if not (on_cluster or broker.authorize(ctx, Operation.CREATE, ResourceType.TOPIC, t.name)):
            result.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            result.error_message = f"not allowed to create topic {t.name!r}"
            continue
        partitions = t.num_partitions
        if t.assignments:
            if partitions != -1 or t.replication_factor != -1:
                result.error_code = ErrorCode.INVALID_REQUEST
                result.error_message = "give either assignments or partitions and replication factor"
                continue
            partitions = len(t.assignments)
        error, message = create_topic(
            broker,
            t.name,
            partitions,
            t.replication_factor,
            {c.name: c.value for c in t.configs},
            request.validate_only,
            planned,
        )
        result.error_code = error
        result.error_message = message
        if error != ErrorCode.NONE:
            continue
        if request.validate_only:
            planned.append((t.name, partitions if partitions > 0 else broker.config.num_partitions))
        topic = broker.topics.get(t.name)
        set_configs = {c.name: c.value for c in t.configs}
        result.num_partitions = len(topic.partitions) if topic else (partitions if partitions > 0 else 1)
        result.replication_factor = 1
        if topic is not None:
            result.topic_id = topic.id
        if not broker.authorize(
            ctx, Operation.DESCRIBE_CONFIGS, ResourceType.TOPIC, t.name, log_denied=False
        ):
            result.topic_config_error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED  # created, configs hidden
            continue
        result.configs = [
            CreatableTopicConfigs(
                name=name,
                value=set_configs.get(name) or broker.config.topic_default(name),
                config_source=CONFIG_SOURCE_DYNAMIC_TOPIC if name in set_configs else CONFIG_SOURCE_DEFAULT,
            )
            for name in TOPIC_CONFIGS
        ]
    return CreateTopicsResponse(topics=results)


@handles(20, 0, 6)
async def delete_topics(
    broker: Broker, ctx: RequestContext, request: DeleteTopicsRequest
) -> DeleteTopicsResponse:
    registry = broker.topics
    wanted = (
        [(t.name, t.topic_id) for t in request.topics]
        if ctx.version >= 6
        else [(name, None) for name in request.topic_names]
    )
    results = []
    for name, topic_id in wanted:
        result = DeletableTopicResult(name=name)
        results.append(result)
        topic = registry.get(name) if name is not None else registry.by_id.get(topic_id) if topic_id else None
        target = name if name is not None else topic.name if topic is not None else None
        if target is not None and not broker.authorize(ctx, Operation.DELETE, ResourceType.TOPIC, target):
            result.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            if topic_id is not None:
                result.topic_id = topic_id  # asked by id: the name is not revealed
            continue
        if topic is None:
            result.error_code = (
                ErrorCode.UNKNOWN_TOPIC_ID if name is None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            )
            continue
        result.name = topic.name
        result.topic_id = topic.id
        registry.delete(topic.name)
        broker.tenants.invalidate()
    return DeleteTopicsResponse(responses=results)


@handles(37, 0, 3)
async def create_partitions(
    broker: Broker, ctx: RequestContext, request: CreatePartitionsRequest
) -> CreatePartitionsResponse:
    results = []
    planned: list[tuple[str, int]] = []  # validate_only: what would have been added so far
    for t in request.topics:
        result = CreatePartitionsTopicResult(name=t.name)
        results.append(result)
        if not broker.authorize(ctx, Operation.ALTER, ResourceType.TOPIC, t.name):
            result.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            continue
        topic = broker.topics.get(t.name)
        if topic is None:
            result.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            continue
        current = len(topic.partitions)
        if t.count <= current:
            result.error_code = ErrorCode.INVALID_PARTITIONS
            result.error_message = f"topic has {current} partitions; the new count must be larger"
            continue
        if t.count > MAX_PARTITIONS:
            result.error_code = ErrorCode.INVALID_PARTITIONS
            result.error_message = f"at most {MAX_PARTITIONS} partitions"
            continue
        if t.assignments is not None and len(t.assignments) != t.count - current:
            result.error_code = ErrorCode.INVALID_REPLICA_ASSIGNMENT
            result.error_message = "one assignment is needed per new partition"
            continue
        problem = broker.tenants.partition_problem([*planned, (t.name, t.count - current)])
        if problem:
            result.error_code, result.error_message = ErrorCode.POLICY_VIOLATION, problem
            continue
        if request.validate_only:
            planned.append((t.name, t.count - current))
        else:
            broker.topics.add_partitions(topic, t.count)
    return CreatePartitionsResponse(results=results)


@handles(22, 0, 5)
async def init_producer_id(
    broker: Broker, ctx: RequestContext, request: InitProducerIdRequest
) -> InitProducerIdResponse:
    if request.transactional_id is not None:
        # Transactions are not implemented: say so rather than pretend.
        log.info("refusing transactional producer %r from %s", request.transactional_id, ctx.client_host)
        return InitProducerIdResponse(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    # An idempotent producer needs IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (Kafka 3.0+).
    if not (
        broker.authorize(ctx, Operation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, log_denied=False)
        or broker.authorize_any(ctx, Operation.WRITE, ResourceType.TOPIC)
    ):
        broker.authorize(ctx, Operation.IDEMPOTENT_WRITE, ResourceType.CLUSTER)  # logs the denial
        return InitProducerIdResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    if request.producer_id >= 0:
        # KIP-360: a producer bumps its own epoch to recover from a sequence error.
        epoch = request.producer_epoch + 1
        if epoch <= 0x7FFF - 1:
            return InitProducerIdResponse(producer_id=request.producer_id, producer_epoch=epoch)
    return InitProducerIdResponse(producer_id=broker.topics.allocate_producer_id(), producer_epoch=0)
