"""CreateAcls, DescribeAcls and DeleteAcls over the broker's AclStore (eventyard.security.acl).

Like Kafka without an authorizer, a broker started without --authorizer answers SECURITY_DISABLED:
ACLs that would not be enforced are not stored either.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from eventyard.broker.handlers import handles
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.create_acls_request import CreateAclsRequest
from eventyard.protocol.messages.create_acls_response import AclCreationResult, CreateAclsResponse
from eventyard.protocol.messages.delete_acls_request import DeleteAclsRequest
from eventyard.protocol.messages.delete_acls_response import (
    DeleteAclsFilterResult,
    DeleteAclsMatchingAcl,
    DeleteAclsResponse,
)
from eventyard.protocol.messages.describe_acls_request import DescribeAclsRequest
from eventyard.protocol.messages.describe_acls_response import (
    AclDescription,
    DescribeAclsResource,
    DescribeAclsResponse,
)
from eventyard.security.acl import AclBinding, AclError, AclFilter, Operation, ResourceType

if TYPE_CHECKING:
    from eventyard.broker.broker import Broker, RequestContext

log = logging.getLogger(__name__)

NO_AUTHORIZER = "no authorizer is configured on the broker (start it with --authorizer)"


@handles(30, 0, 3)
async def create_acls(broker: Broker, ctx: RequestContext, request: CreateAclsRequest) -> CreateAclsResponse:
    refusal = _refusal(broker, ctx, Operation.ALTER)
    if refusal is not None:
        error, message = refusal
        return CreateAclsResponse(
            results=[AclCreationResult(error_code=error, error_message=message) for _ in request.creations]
        )
    results: list[AclCreationResult] = []
    accepted: list[tuple[AclBinding, AclCreationResult]] = []
    for c in request.creations:
        result = AclCreationResult(error_message=None)
        results.append(result)
        try:
            binding = AclBinding.of(
                c.resource_type,
                c.resource_name,
                c.resource_pattern_type,
                c.principal,
                c.host,
                c.operation,
                c.permission_type,
            )
        except AclError as exc:
            result.error_code, result.error_message = ErrorCode.INVALID_REQUEST, str(exc)
            continue
        accepted.append((binding, result))
    if accepted:
        try:
            broker.acls.create([binding for binding, _ in accepted])
        except OSError as exc:
            log.error("cannot store ACLs: %s", exc)
            for _, result in accepted:
                result.error_code, result.error_message = ErrorCode.UNKNOWN_SERVER_ERROR, "cannot store ACLs"
        else:
            for binding, _ in accepted:
                log.info("%s added ACL %s", ctx.principal, _describe(binding))
    return CreateAclsResponse(results=results)


@handles(29, 0, 3)
async def describe_acls(
    broker: Broker, ctx: RequestContext, request: DescribeAclsRequest
) -> DescribeAclsResponse:
    refusal = _refusal(broker, ctx, Operation.DESCRIBE)
    if refusal is not None:
        return DescribeAclsResponse(error_code=refusal[0], error_message=refusal[1])
    try:
        selected = AclFilter.of(
            request.resource_type_filter,
            request.resource_name_filter,
            request.pattern_type_filter,
            request.principal_filter,
            request.host_filter,
            request.operation,
            request.permission_type,
        )
    except AclError as exc:
        return DescribeAclsResponse(error_code=ErrorCode.INVALID_REQUEST, error_message=str(exc))
    # One entry per resource pattern, with its ACLs, as Kafka answers.
    resources: dict[tuple[int, str, int], DescribeAclsResource] = {}
    for acl in broker.acls.describe(selected):
        key = (acl.resource_type, acl.resource_name, acl.pattern_type)
        resource = resources.get(key)
        if resource is None:
            resource = resources[key] = DescribeAclsResource(
                resource_type=acl.resource_type,
                resource_name=acl.resource_name,
                pattern_type=acl.pattern_type,
            )
        resource.acls.append(
            AclDescription(
                principal=acl.principal,
                host=acl.host,
                operation=acl.operation,
                permission_type=acl.permission,
            )
        )
    return DescribeAclsResponse(error_message=None, resources=list(resources.values()))


@handles(31, 0, 3)
async def delete_acls(broker: Broker, ctx: RequestContext, request: DeleteAclsRequest) -> DeleteAclsResponse:
    refusal = _refusal(broker, ctx, Operation.ALTER)
    if refusal is not None:
        error, message = refusal
        return DeleteAclsResponse(
            filter_results=[
                DeleteAclsFilterResult(error_code=error, error_message=message) for _ in request.filters
            ]
        )
    results: list[DeleteAclsFilterResult] = []
    accepted: list[tuple[AclFilter, DeleteAclsFilterResult]] = []
    for f in request.filters:
        result = DeleteAclsFilterResult(error_message=None)
        results.append(result)
        try:
            selected = AclFilter.of(
                f.resource_type_filter,
                f.resource_name_filter,
                f.pattern_type_filter,
                f.principal_filter,
                f.host_filter,
                f.operation,
                f.permission_type,
            )
        except AclError as exc:
            result.error_code, result.error_message = ErrorCode.INVALID_REQUEST, str(exc)
            continue
        accepted.append((selected, result))
    if not accepted:
        return DeleteAclsResponse(filter_results=results)
    try:
        matched = broker.acls.delete([selected for selected, _ in accepted])
    except OSError as exc:
        log.error("cannot store ACLs: %s", exc)
        for _, result in accepted:
            result.error_code, result.error_message = ErrorCode.UNKNOWN_SERVER_ERROR, "cannot store ACLs"
        return DeleteAclsResponse(filter_results=results)
    for (_, result), bindings in zip(accepted, matched, strict=True):
        for acl in bindings:
            log.info("%s removed ACL %s", ctx.principal, _describe(acl))
        result.matching_acls = [
            DeleteAclsMatchingAcl(
                error_message=None,
                resource_type=acl.resource_type,
                resource_name=acl.resource_name,
                pattern_type=acl.pattern_type,
                principal=acl.principal,
                host=acl.host,
                operation=acl.operation,
                permission_type=acl.permission,
            )
            for acl in bindings
        ]
    return DeleteAclsResponse(filter_results=results)


def _refusal(broker: Broker, ctx: RequestContext, operation: Operation) -> tuple[ErrorCode, str] | None:
    """Why the ACL APIs are refused to this request, or None: they need the authorizer, and ALTER
    (create, delete) or DESCRIBE on the cluster."""
    if not broker.config.authorizer:
        return ErrorCode.SECURITY_DISABLED, NO_AUTHORIZER
    if not broker.authorize(ctx, operation, ResourceType.CLUSTER):
        return ErrorCode.CLUSTER_AUTHORIZATION_FAILED, f"{operation.name} on the cluster is not allowed"
    return None


def _describe(acl: AclBinding) -> str:
    return (
        f"{acl.permission.name} {acl.principal} from {acl.host} {acl.operation.name} on "
        f"{acl.resource_type.name}:{acl.pattern_type.name}:{acl.resource_name}"
    )
