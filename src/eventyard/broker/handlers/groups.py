"""Classic consumer groups: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
DescribeGroups, ListGroups and DeleteGroups (committed offsets are in group_offsets.py). Translation
only: the rules live in the coordinator (eventyard.coordinator.group)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventyard.broker.handlers import handles
from eventyard.coordinator.group_results import JoinResult, SyncResult
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.delete_groups_request import DeleteGroupsRequest
from eventyard.protocol.messages.delete_groups_response import DeletableGroupResult, DeleteGroupsResponse
from eventyard.protocol.messages.describe_groups_request import DescribeGroupsRequest
from eventyard.protocol.messages.describe_groups_response import (
    DescribedGroup,
    DescribedGroupMember,
    DescribeGroupsResponse,
)
from eventyard.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from eventyard.protocol.messages.find_coordinator_response import Coordinator, FindCoordinatorResponse
from eventyard.protocol.messages.heartbeat_request import HeartbeatRequest
from eventyard.protocol.messages.heartbeat_response import HeartbeatResponse
from eventyard.protocol.messages.join_group_request import JoinGroupRequest
from eventyard.protocol.messages.join_group_response import JoinGroupResponse, JoinGroupResponseMember
from eventyard.protocol.messages.leave_group_request import LeaveGroupRequest
from eventyard.protocol.messages.leave_group_response import LeaveGroupResponse, MemberResponse
from eventyard.protocol.messages.list_groups_request import ListGroupsRequest
from eventyard.protocol.messages.list_groups_response import ListedGroup, ListGroupsResponse
from eventyard.protocol.messages.sync_group_request import SyncGroupRequest
from eventyard.protocol.messages.sync_group_response import SyncGroupResponse
from eventyard.security.acl import Operation, ResourceType

if TYPE_CHECKING:
    from eventyard.broker.broker import Broker, RequestContext

GROUP_KEY = 0
DENIED = ErrorCode.GROUP_AUTHORIZATION_FAILED


def may_access_group(
    broker: Broker, ctx: RequestContext, group_id: str, operation: Operation = Operation.READ
) -> bool:
    return broker.authorize(ctx, operation, ResourceType.GROUP, group_id)


@handles(10, 0, 6)
async def find_coordinator(
    broker: Broker, ctx: RequestContext, request: FindCoordinatorRequest
) -> FindCoordinatorResponse:
    node, host, port = broker.config.node_id, ctx.session.advertised_host, ctx.session.port

    def answer(key: str) -> Coordinator:
        if request.key_type != GROUP_KEY:
            error, message = ErrorCode.INVALID_REQUEST, "only consumer group coordinators exist here"
        elif not may_access_group(broker, ctx, key, Operation.DESCRIBE):
            error, message = DENIED, None
        else:
            return Coordinator(key=key, node_id=node, host=host, port=port)
        return Coordinator(key=key, node_id=-1, host="", port=-1, error_code=error, error_message=message)

    if ctx.version >= 4:
        return FindCoordinatorResponse(coordinators=[answer(k) for k in request.coordinator_keys])
    one = answer(request.key)
    return FindCoordinatorResponse(
        error_code=one.error_code,
        error_message=one.error_message,
        node_id=one.node_id,
        host=one.host,
        port=one.port,
    )


@handles(11, 0, 9)
async def join_group(broker: Broker, ctx: RequestContext, request: JoinGroupRequest) -> JoinGroupResponse:
    if not may_access_group(broker, ctx, request.group_id):
        return JoinGroupResponse(error_code=DENIED)
    groups = broker.groups
    outcome = groups.coordinator.join(
        request.group_id,
        request.member_id,
        protocol_type=request.protocol_type,
        protocols=[(p.name, p.metadata) for p in request.protocols],
        session_timeout_ms=request.session_timeout_ms,
        rebalance_timeout_ms=request.rebalance_timeout_ms,
        group_instance_id=request.group_instance_id,
        client_id=ctx.header.client_id or "",
        client_host=ctx.client_host.rsplit(":", 1)[0],
        require_known_member_id=ctx.version >= 4,
        supports_skip_assignment=ctx.version >= 9,
        reason=request.reason,
        now_ms=groups.now_ms(),
    )
    result = await groups.wait(groups.apply(outcome))
    assert isinstance(result, JoinResult)
    flexible_names = ctx.version >= 7  # protocol type and name became nullable in v7
    return JoinGroupResponse(
        error_code=result.error_code,
        generation_id=result.generation_id,
        protocol_type=result.protocol_type if flexible_names else None,
        protocol_name=result.protocol_name if flexible_names else (result.protocol_name or ""),
        leader=result.leader,
        skip_assignment=result.skip_assignment,
        member_id=result.member_id,
        members=[
            JoinGroupResponseMember(
                member_id=m.member_id, group_instance_id=m.group_instance_id, metadata=m.metadata
            )
            for m in result.members
        ],
    )


@handles(14, 0, 5)
async def sync_group(broker: Broker, ctx: RequestContext, request: SyncGroupRequest) -> SyncGroupResponse:
    if not may_access_group(broker, ctx, request.group_id):
        return SyncGroupResponse(error_code=DENIED)
    groups = broker.groups
    outcome = groups.coordinator.sync(
        request.group_id,
        request.member_id,
        request.generation_id,
        group_instance_id=request.group_instance_id,
        protocol_type=request.protocol_type,
        protocol_name=request.protocol_name,
        assignments=[(a.member_id, a.assignment) for a in request.assignments],
        now_ms=groups.now_ms(),
    )
    result = await groups.wait(groups.apply(outcome))
    assert isinstance(result, SyncResult)
    return SyncGroupResponse(
        error_code=result.error_code,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name,
        assignment=result.assignment,
    )


@handles(12, 0, 4)
async def heartbeat(broker: Broker, ctx: RequestContext, request: HeartbeatRequest) -> HeartbeatResponse:
    if not may_access_group(broker, ctx, request.group_id):
        return HeartbeatResponse(error_code=DENIED)
    groups = broker.groups
    error = groups.apply(
        groups.coordinator.heartbeat(
            request.group_id,
            request.member_id,
            request.generation_id,
            group_instance_id=request.group_instance_id,
            now_ms=groups.now_ms(),
        )
    )
    return HeartbeatResponse(error_code=error)


@handles(13, 0, 5)
async def leave_group(broker: Broker, ctx: RequestContext, request: LeaveGroupRequest) -> LeaveGroupResponse:
    if not may_access_group(broker, ctx, request.group_id):
        return LeaveGroupResponse(error_code=DENIED)
    groups = broker.groups
    batched = ctx.version >= 3
    members = (
        [(m.member_id, m.group_instance_id) for m in request.members]
        if batched
        else [(request.member_id, None)]
    )
    result = groups.apply(groups.coordinator.leave(request.group_id, members, now_ms=groups.now_ms()))
    if not batched:
        error = result.members[0].error_code if result.members else result.error_code
        return LeaveGroupResponse(error_code=error or result.error_code)
    return LeaveGroupResponse(
        error_code=result.error_code,
        members=[
            MemberResponse(
                member_id=m.member_id, group_instance_id=m.group_instance_id, error_code=m.error_code
            )
            for m in result.members
        ],
    )


@handles(15, 0, 5)
async def describe_groups(
    broker: Broker, ctx: RequestContext, request: DescribeGroupsRequest
) -> DescribeGroupsResponse:
    groups = broker.groups
    described = []
    for group_id in request.groups:
        if not may_access_group(broker, ctx, group_id, Operation.DESCRIBE):
            described.append(DescribedGroup(error_code=DENIED, group_id=group_id))
            continue
        d = groups.apply(groups.coordinator.describe(group_id, now_ms=groups.now_ms()))
        described.append(
            DescribedGroup(
                error_code=d.error_code,
                group_id=d.group_id,
                group_state=d.state,
                protocol_type=d.protocol_type,
                protocol_data=d.protocol_data,
                authorized_operations=broker.authorized_operations(
                    ctx, request.include_authorized_operations, ResourceType.GROUP, group_id
                ),
                members=[
                    DescribedGroupMember(
                        member_id=m.member_id,
                        group_instance_id=m.group_instance_id,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        member_metadata=m.metadata,
                        member_assignment=m.assignment,
                    )
                    for m in d.members
                ],
            )
        )
    return DescribeGroupsResponse(groups=described)


@handles(16, 0, 5)
async def list_groups(broker: Broker, ctx: RequestContext, request: ListGroupsRequest) -> ListGroupsResponse:
    groups = broker.groups
    now = groups.now_ms()
    consumer = groups.consumer.list_groups(request.states_filter, request.types_filter, now_ms=now)
    classic = groups.apply(
        groups.coordinator.list_groups(request.states_filter, request.types_filter, now_ms=now)
    )
    # A consumer group's offsets live in the classic store: list that id once, as the consumer group.
    listed = consumer + [g for g in classic if not groups.consumer.is_group(g.group_id)]
    if not broker.authorize(ctx, Operation.DESCRIBE, ResourceType.CLUSTER, log_denied=False):
        listed = [
            g
            for g in listed
            if broker.authorize(ctx, Operation.DESCRIBE, ResourceType.GROUP, g.group_id, log_denied=False)
        ]
    return ListGroupsResponse(
        groups=[
            ListedGroup(
                group_id=g.group_id,
                protocol_type=g.protocol_type,
                group_state=g.state,
                group_type=g.group_type,
            )
            for g in listed
        ]
    )


@handles(42, 0, 2)
async def delete_groups(
    broker: Broker, ctx: RequestContext, request: DeleteGroupsRequest
) -> DeleteGroupsResponse:
    groups = broker.groups
    now = groups.now_ms()
    allowed = [
        g for g in dict.fromkeys(request.groups_names) if may_access_group(broker, ctx, g, Operation.DELETE)
    ]
    # KIP-848 groups go first (only empty ones may); the classic store then drops their offsets.
    consumer_results = {
        g: groups.consumer.delete(g, now_ms=now) for g in allowed if groups.consumer.is_group(g)
    }
    deletable = [g for g in allowed if consumer_results.get(g, ErrorCode.NONE) == ErrorCode.NONE]
    outcome = groups.apply(groups.coordinator.delete_groups(deletable, now_ms=now))
    results = {r.group_id: r.error_code for r in outcome}
    for group_id, error in consumer_results.items():
        # A consumer group that never committed has nothing in the classic store: that is success.
        if error != ErrorCode.NONE or results.get(group_id) == ErrorCode.GROUP_ID_NOT_FOUND:
            results[group_id] = error
    return DeleteGroupsResponse(
        results=[
            DeletableGroupResult(group_id=g, error_code=results.get(g, DENIED)) for g in request.groups_names
        ]
    )
