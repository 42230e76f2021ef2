"""DescribeClientQuotas and AlterClientQuotas (KIP-546) over the broker's quota store
(eventyard.broker.quotas). As in Kafka, describing needs DESCRIBE_CONFIGS on the cluster and
altering needs ALTER_CONFIGS on the cluster (both allowed while the authorizer is off)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from eventyard.broker.handlers import handles
from eventyard.broker.quotas import ComponentFilter, Entity, QuotaError, QuotaOp, make_entity
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages import alter_client_quotas_response as alter_out
from eventyard.protocol.messages import describe_client_quotas_response as describe_out
from eventyard.protocol.messages.alter_client_quotas_request import AlterClientQuotasRequest
from eventyard.protocol.messages.describe_client_quotas_request import DescribeClientQuotasRequest
from eventyard.security.acl import Operation, ResourceType

if TYPE_CHECKING:
    from eventyard.broker.broker import Broker, RequestContext

log = logging.getLogger(__name__)


@handles(48, 0, 1)
async def describe_client_quotas(
    broker: Broker, ctx: RequestContext, request: DescribeClientQuotasRequest
) -> describe_out.DescribeClientQuotasResponse:
    if not broker.authorize(ctx, Operation.DESCRIBE_CONFIGS, ResourceType.CLUSTER):
        return describe_out.DescribeClientQuotasResponse(
            error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
            error_message="DESCRIBE_CONFIGS on the cluster is not allowed",
            entries=None,
        )
    components = [ComponentFilter(c.entity_type, c.match_type, c.match) for c in request.components]
    try:
        found = broker.quotas.store.describe(components, request.strict)
    except QuotaError as exc:
        return describe_out.DescribeClientQuotasResponse(
            error_code=ErrorCode.INVALID_REQUEST, error_message=str(exc), entries=None
        )
    return describe_out.DescribeClientQuotasResponse(
        error_message=None,
        entries=[
            describe_out.EntryData(
                entity=[describe_out.EntityData(entity_type=t, entity_name=n) for t, n in entity],
                values=[describe_out.ValueData(key=k, value=v) for k, v in sorted(values.items())],
            )
            for entity, values in found
        ],
    )


@handles(49, 0, 1)
async def alter_client_quotas(
    broker: Broker, ctx: RequestContext, request: AlterClientQuotasRequest
) -> alter_out.AlterClientQuotasResponse:
    allowed = broker.authorize(ctx, Operation.ALTER_CONFIGS, ResourceType.CLUSTER)
    results: list[alter_out.EntryData] = []
    accepted: list[tuple[Entity, list[QuotaOp], alter_out.EntryData]] = []
    for entry in request.entries:
        result = alter_out.EntryData(
            error_message=None,
            entity=[
                alter_out.EntityData(entity_type=e.entity_type, entity_name=e.entity_name)
                for e in entry.entity
            ],
        )
        results.append(result)
        if not allowed:
            result.error_code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
            result.error_message = "ALTER_CONFIGS on the cluster is not allowed"
            continue
        ops = [QuotaOp(op.key, op.value, op.remove) for op in entry.ops]
        try:
            entity = make_entity((e.entity_type, e.entity_name) for e in entry.entity)
            broker.quotas.store.check(entity, ops)
        except QuotaError as exc:
            result.error_code, result.error_message = ErrorCode.INVALID_REQUEST, str(exc)
            continue
        accepted.append((entity, ops, result))
    if accepted and not request.validate_only:
        try:
            broker.quotas.store.alter([(entity, ops) for entity, ops, _ in accepted])
        except OSError as exc:
            log.error("cannot store client quotas: %s", exc)
            for _, _, result in accepted:
                result.error_code = ErrorCode.UNKNOWN_SERVER_ERROR
                result.error_message = "cannot store client quotas"
        else:
            for entity, ops, _ in accepted:
                log.info("%s altered client quotas of %s: %s", ctx.principal, _describe(entity), _ops(ops))
    return alter_out.AlterClientQuotasResponse(entries=results)


def _describe(entity: Entity) -> str:
    return ",".join(f"{t}={'<default>' if n is None else n}" for t, n in entity)


def _ops(ops: list[QuotaOp]) -> str:
    return ", ".join(f"-{op.key}" if op.remove else f"{op.key}={op.value:g}" for op in ops)
