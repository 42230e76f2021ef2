"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (and the broker's view)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventyard.broker.config import TOPIC_CONFIGS, invalid_topic_config
from eventyard.broker.faults import FAILURE_CONFIGS, Failure, FaultError, parse
from eventyard.broker.handlers import handles
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.alter_configs_request import AlterConfigsRequest
from eventyard.protocol.messages.alter_configs_response import (
    AlterConfigsResourceResponse,
    AlterConfigsResponse,
)
from eventyard.protocol.messages.describe_configs_request import DescribeConfigsRequest
from eventyard.protocol.messages.describe_configs_response import (
    DescribeConfigsResourceResult,
    DescribeConfigsResponse,
    DescribeConfigsResult,
    DescribeConfigsSynonym,
)
from eventyard.protocol.messages.incremental_alter_configs_request import (
    AlterableConfig,
    IncrementalAlterConfigsRequest,
)
from eventyard.protocol.messages.incremental_alter_configs_response import (
    AlterConfigsResourceResponse as IncrementalResourceResponse,
)
from eventyard.protocol.messages.incremental_alter_configs_response import IncrementalAlterConfigsResponse
from eventyard.security.acl import Operation, ResourceType

if TYPE_CHECKING:
    from eventyard.broker.broker import Broker, RequestContext
    from eventyard.broker.topics import Topic

TOPIC = 2
BROKER = 4
# ConfigSource values
DYNAMIC_TOPIC_CONFIG = 1
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5
# ConfigType values (DescribeConfigs v3+)
CONFIG_TYPES = {"BOOLEAN": 1, "STRING": 2, "INT": 3, "SHORT": 4, "LONG": 5, "DOUBLE": 6, "LIST": 7}
# IncrementalAlterConfigs operations
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


def _describe_topic(
    broker: Broker, topic: Topic, keys: list[str] | None, synonyms: bool, documentation: bool
) -> list[DescribeConfigsResourceResult]:
    out = []
    for name, definition in TOPIC_CONFIGS.items():
        if keys is not None and name not in keys:
            continue
        broker_value = broker.config.topic_defaults.get(name)
        if name in topic.configs:
            value, source = topic.configs[name], DYNAMIC_TOPIC_CONFIG
        elif broker_value is not None:
            value, source = broker_value, STATIC_BROKER_CONFIG
        else:
            value, source = definition.default, DEFAULT_CONFIG
        entry = DescribeConfigsResourceResult(
            name=name,
            value=value,
            is_default=source == DEFAULT_CONFIG,
            config_source=source,
            config_type=CONFIG_TYPES.get(definition.type, 0),
            documentation=definition.doc if documentation else None,
        )
        if synonyms:
            entry.synonyms = [DescribeConfigsSynonym(name=name, value=value, source=source)]
        out.append(entry)
    return out


def _describe_broker(broker: Broker, keys: list[str] | None) -> list[DescribeConfigsResourceResult]:
    values = {
        "broker.id": str(broker.config.node_id),
        "auto.create.topics.enable": str(broker.config.auto_create_topics).lower(),
        "num.partitions": str(broker.config.num_partitions),
        "socket.request.max.bytes": str(broker.config.max_request_bytes),
    }
    return [
        DescribeConfigsResourceResult(name=k, value=v, read_only=True, config_source=STATIC_BROKER_CONFIG)
        for k, v in values.items()
        if keys is None or k in keys
    ]


@handles(32, 0, 4)
async def describe_configs(
    broker: Broker, ctx: RequestContext, request: DescribeConfigsRequest
) -> DescribeConfigsResponse:
    results = []
    for resource in request.resources:
        result = DescribeConfigsResult(
            resource_type=resource.resource_type, resource_name=resource.resource_name
        )
        results.append(result)
        denied = _denied(
            broker, ctx, Operation.DESCRIBE_CONFIGS, resource.resource_type, resource.resource_name
        )
        if denied is not None:
            result.error_code = denied
            continue
        if resource.resource_type == TOPIC:
            topic = broker.topics.get(resource.resource_name)
            if topic is None:
                result.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                result.error_message = f"topic {resource.resource_name!r} does not exist"
                continue
            result.configs = _describe_topic(
                broker,
                topic,
                resource.configuration_keys,
                request.include_synonyms,
                request.include_documentation,
            )
        elif resource.resource_type == BROKER and resource.resource_name in ("", str(broker.config.node_id)):
            result.configs = _describe_broker(broker, resource.configuration_keys)
        else:
            result.error_code = ErrorCode.INVALID_REQUEST
            result.error_message = (
                f"cannot describe resource type {resource.resource_type} {resource.resource_name!r}"
            )
    return DescribeConfigsResponse(results=results)


def _denied(
    broker: Broker, ctx: RequestContext, operation: Operation, resource_type: int, name: str
) -> ErrorCode | None:
    """The authorization error for a config resource: topics are checked on the topic, the broker's
    own configs on the cluster; other types are left to the handlers to refuse."""
    if resource_type == TOPIC and not broker.authorize(ctx, operation, ResourceType.TOPIC, name):
        return ErrorCode.TOPIC_AUTHORIZATION_FAILED
    if resource_type == BROKER and not broker.authorize(ctx, operation, ResourceType.CLUSTER):
        return ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    return None


def _apply(
    broker: Broker, resource_type: int, name: str, new: dict[str, str] | None, validate_only: bool
) -> tuple[ErrorCode, str | None]:
    """Replace a topic's configs with `new` after checking them (None: the error was found earlier)."""
    if resource_type == BROKER:
        assert new is not None
        return _inject(broker, name, list(new.items()), validate_only)
    if resource_type != TOPIC:
        return (
            ErrorCode.INVALID_REQUEST,
            "only topic configs and the broker's failure injection can be altered",
        )
    topic = broker.topics.get(name)
    if topic is None:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {name!r} does not exist"
    assert new is not None
    for key, value in new.items():
        problem = invalid_topic_config(key, value)
        if problem:
            return ErrorCode.INVALID_CONFIG, problem
    if not validate_only:
        broker.topics.set_configs(topic, new)
    return ErrorCode.NONE, None


def _inject(
    broker: Broker, name: str, configs: list[tuple[str, str | None]], validate_only: bool
) -> tuple[ErrorCode, str | None]:
    """The broker's only alterable configs are failure injections (eventyard.broker.faults): check
    them all, then inject them (unless validate_only); never stored."""
    if name not in ("", str(broker.config.node_id)):
        return ErrorCode.INVALID_REQUEST, f"no broker {name!r}: this is broker {broker.config.node_id}"
    failures: list[Failure] = []
    for key, value in configs:
        if key not in FAILURE_CONFIGS:
            allowed = " and ".join(FAILURE_CONFIGS)
            return ErrorCode.INVALID_REQUEST, f"broker config {key!r} cannot be altered (only {allowed})"
        try:
            failure = parse(key, value)
            broker.faults.check(failure)
        except FaultError as exc:
            return ErrorCode.INVALID_CONFIG, str(exc)
        failures.append(failure)
    if not validate_only:
        for failure in failures:
            broker.faults.inject(failure)
    return ErrorCode.NONE, None


@handles(33, 0, 2)
async def alter_configs(
    broker: Broker, ctx: RequestContext, request: AlterConfigsRequest
) -> AlterConfigsResponse:
    responses = []
    for r in request.resources:
        new = {c.name: c.value for c in r.configs if c.value is not None}
        denied = _denied(broker, ctx, Operation.ALTER_CONFIGS, r.resource_type, r.resource_name)
        if denied is not None:
            error, message = denied, None
        else:
            error, message = _apply(broker, r.resource_type, r.resource_name, new, request.validate_only)
        responses.append(
            AlterConfigsResourceResponse(
                error_code=error,
                error_message=message,
                resource_type=r.resource_type,
                resource_name=r.resource_name,
            )
        )
    return AlterConfigsResponse(responses=responses)


@handles(44, 0, 1)
async def incremental_alter_configs(
    broker: Broker, ctx: RequestContext, request: IncrementalAlterConfigsRequest
) -> IncrementalAlterConfigsResponse:
    responses = []
    for r in request.resources:
        if r.resource_type == BROKER:
            responses.append(_alter_broker(broker, ctx, r.resource_name, r.configs, request.validate_only))
            continue
        topic = broker.topics.get(r.resource_name) if r.resource_type == TOPIC else None
        current = dict(topic.configs) if topic else {}
        error, message = ErrorCode.NONE, None
        denied = _denied(broker, ctx, Operation.ALTER_CONFIGS, r.resource_type, r.resource_name)
        for c in r.configs if denied is None else ():
            if c.name not in TOPIC_CONFIGS:
                error, message = ErrorCode.INVALID_CONFIG, f"unknown topic config {c.name!r}"
                break
            if c.config_operation == SET:
                current[c.name] = c.value or ""
            elif c.config_operation == DELETE:
                current.pop(c.name, None)
            elif c.config_operation in (APPEND, SUBTRACT):
                if TOPIC_CONFIGS[c.name].type != "LIST":
                    error, message = ErrorCode.INVALID_CONFIG, f"{c.name!r} is not a list config"
                    break
                items = [i for i in current.get(c.name, broker.config.topic_default(c.name)).split(",") if i]
                changes = [i for i in (c.value or "").split(",") if i]
                if c.config_operation == APPEND:
                    items += [i for i in changes if i not in items]
                else:
                    items = [i for i in items if i not in changes]
                current[c.name] = ",".join(items)
            else:
                error, message = ErrorCode.INVALID_REQUEST, f"unknown config operation {c.config_operation}"
                break
        if denied is not None:
            error = denied
        elif error == ErrorCode.NONE:
            error, message = _apply(broker, r.resource_type, r.resource_name, current, request.validate_only)
        responses.append(
            IncrementalResourceResponse(
                error_code=error,
                error_message=message,
                resource_type=r.resource_type,
                resource_name=r.resource_name,
            )
        )
    return IncrementalAlterConfigsResponse(responses=responses)


def _alter_broker(
    broker: Broker, ctx: RequestContext, name: str, configs: list[AlterableConfig], validate_only: bool
) -> IncrementalResourceResponse:
    """IncrementalAlterConfigs on the broker: SET of a failure injection."""
    error, message = ErrorCode.NONE, None
    denied = _denied(broker, ctx, Operation.ALTER_CONFIGS, BROKER, name)
    if denied is not None:
        error = denied
    elif any(c.config_operation != SET for c in configs):
        error, message = ErrorCode.INVALID_REQUEST, "failure injection takes the SET operation only"
    else:
        error, message = _inject(broker, name, [(c.name, c.value) for c in configs], validate_only)
    return IncrementalResourceResponse(
        error_code=error, error_message=message, resource_type=BROKER, resource_name=name
    )
