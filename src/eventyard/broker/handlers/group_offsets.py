"""Committed offsets of groups: OffsetCommit, OffsetFetch and OffsetDelete, for classic and KIP-848
groups alike (one store, in the classic coordinator)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventyard.broker.handlers import handles
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages import offset_fetch_response as ofr
from eventyard.protocol.messages.offset_commit_request import OffsetCommitRequest
from eventyard.protocol.messages.offset_commit_response import (
    OffsetCommitResponse,
    OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
)
from eventyard.protocol.messages.offset_delete_request import OffsetDeleteRequest
from eventyard.protocol.messages.offset_delete_response import (
    OffsetDeleteResponse,
    OffsetDeleteResponsePartition,
    OffsetDeleteResponseTopic,
)
from eventyard.protocol.messages.offset_fetch_request import OffsetFetchRequest
from eventyard.security.acl import Operation, ResourceType

if TYPE_CHECKING:
    from eventyard.broker.broker import Broker, RequestContext

from eventyard.broker.handlers.groups import DENIED, may_access_group


@handles(8, 0, 9)
async def offset_commit(
    broker: Broker, ctx: RequestContext, request: OffsetCommitRequest
) -> OffsetCommitResponse:
    groups = broker.groups
    errors: dict[tuple[str, int], ErrorCode] = {}
    entries = []
    group_allowed = may_access_group(broker, ctx, request.group_id)
    for t in request.topics:
        # READ on the group, then on each topic; refused partitions are not committed.
        refused = DENIED if not group_allowed else None
        if refused is None and not broker.authorize(ctx, Operation.READ, ResourceType.TOPIC, t.name):
            refused = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        for p in t.partitions:
            if refused is not None:
                errors[(t.name, p.partition_index)] = refused
            elif broker.topics.partition(t.name, p.partition_index) is None:
                errors[(t.name, p.partition_index)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                entries.append(
                    (
                        t.name,
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.committed_metadata,
                    )
                )
    if entries and groups.consumer.is_group(request.group_id):
        # A KIP-848 group: its coordinator checks the member and epoch; the offsets go to the one
        # store of committed offsets, as a commit on behalf of the group.
        error = groups.consumer.validate_commit(
            request.group_id, request.member_id, request.generation_id_or_member_epoch, now_ms=groups.now_ms()
        )
        if error != ErrorCode.NONE:
            errors.update({(topic, partition): error for topic, partition, *_ in entries})
            entries = []
        member_id, generation = "", -1
    else:
        member_id, generation = request.member_id, request.generation_id_or_member_epoch
    if entries:
        results = groups.apply(
            groups.coordinator.commit(
                request.group_id,
                member_id,
                generation,
                entries,
                group_instance_id=request.group_instance_id,
                now_ms=groups.now_ms(),
            )
        )
        errors.update({(r.topic, r.partition): r.error_code for r in results})
    return OffsetCommitResponse(
        topics=[
            OffsetCommitResponseTopic(
                name=t.name,
                partitions=[
                    OffsetCommitResponsePartition(
                        partition_index=p.partition_index, error_code=errors[(t.name, p.partition_index)]
                    )
                    for p in t.partitions
                ],
            )
            for t in request.topics
        ]
    )


def _fetch_group(
    broker: Broker, ctx: RequestContext, group_id: str, wanted: list[tuple[str, list[int]]] | None
) -> dict[str, list[tuple[int, int, int, str | None, ErrorCode]]]:
    """Committed offsets of a group by topic: (partition, offset, leader epoch, metadata, error).
    Topics the client may not DESCRIBE are left out of "all", and refused when named."""
    groups = broker.groups
    partitions = None if wanted is None else [(name, p) for name, ps in wanted for p in ps]
    fetched = groups.apply(groups.coordinator.fetch_offsets(group_id, partitions, now_ms=groups.now_ms()))
    by_topic: dict[str, list[tuple[int, int, int, str | None, ErrorCode]]] = {
        name: [] for name, _ in wanted or []
    }
    for f in fetched:
        by_topic.setdefault(f.topic, []).append(
            (f.partition, f.offset, f.leader_epoch, f.metadata, f.error_code)
        )
    for name, parts in list(by_topic.items()):
        if broker.authorize(ctx, Operation.DESCRIBE, ResourceType.TOPIC, name, log_denied=wanted is not None):
            continue
        if wanted is None:
            del by_topic[name]
        else:
            by_topic[name] = [(p, -1, -1, "", ErrorCode.TOPIC_AUTHORIZATION_FAILED) for p, *_ in parts]
    return by_topic


@handles(9, 0, 9)
async def offset_fetch(
    broker: Broker, ctx: RequestContext, request: OffsetFetchRequest
) -> ofr.OffsetFetchResponse:
    if ctx.version >= 8:
        results = []
        for g in request.groups:
            if not may_access_group(broker, ctx, g.group_id, Operation.DESCRIBE):
                results.append(ofr.OffsetFetchResponseGroup(group_id=g.group_id, error_code=DENIED))
                continue
            wanted = None if g.topics is None else [(t.name, t.partition_indexes) for t in g.topics]
            by_topic = _fetch_group(broker, ctx, g.group_id, wanted)
            results.append(
                ofr.OffsetFetchResponseGroup(
                    group_id=g.group_id,
                    topics=[
                        ofr.OffsetFetchResponseTopics(
                            name=name,
                            partitions=[
                                ofr.OffsetFetchResponsePartitions(
                                    partition_index=p,
                                    committed_offset=o,
                                    committed_leader_epoch=e,
                                    metadata=m,
                                    error_code=err,
                                )
                                for p, o, e, m, err in parts
                            ],
                        )
                        for name, parts in by_topic.items()
                    ],
                )
            )
        return ofr.OffsetFetchResponse(groups=results)
    wanted = None if request.topics is None else [(t.name, t.partition_indexes) for t in request.topics]
    if not may_access_group(broker, ctx, request.group_id, Operation.DESCRIBE):
        if ctx.version >= 2:
            return ofr.OffsetFetchResponse(error_code=DENIED)
        # v0-1 have no top-level error: every partition asked for carries it.
        by_topic = {name: [(p, -1, -1, "", DENIED) for p in ps] for name, ps in wanted or []}
    else:
        by_topic = _fetch_group(broker, ctx, request.group_id, wanted)
    return ofr.OffsetFetchResponse(
        topics=[
            ofr.OffsetFetchResponseTopic(
                name=name,
                partitions=[
                    ofr.OffsetFetchResponsePartition(
                        partition_index=p,
                        committed_offset=o,
                        committed_leader_epoch=e,
                        metadata=m,
                        error_code=err,
                    )
                    for p, o, e, m, err in parts
                ],
            )
            for name, parts in by_topic.items()
        ]
    )


@handles(47, 0, 0)
async def offset_delete(
    broker: Broker, ctx: RequestContext, request: OffsetDeleteRequest
) -> OffsetDeleteResponse:
    groups = broker.groups
    if not may_access_group(broker, ctx, request.group_id, Operation.DELETE):
        return OffsetDeleteResponse(error_code=DENIED)
    allowed = {
        t.name: broker.authorize(ctx, Operation.READ, ResourceType.TOPIC, t.name) for t in request.topics
    }
    wanted = [(t.name, p.partition_index) for t in request.topics for p in t.partitions if allowed[t.name]]
    refused = [
        (t.name, p.partition_index) for t in request.topics for p in t.partitions if not allowed[t.name]
    ]
    result = groups.apply(groups.coordinator.delete_offsets(request.group_id, wanted, now_ms=groups.now_ms()))
    errors = {(r.topic, r.partition): r.error_code for r in result.partitions}
    errors |= {key: ErrorCode.TOPIC_AUTHORIZATION_FAILED for key in refused}
    return OffsetDeleteResponse(
        error_code=result.error_code,
        topics=[
            OffsetDeleteResponseTopic(
                name=t.name,
                partitions=[
                    OffsetDeleteResponsePartition(
                        partition_index=p.partition_index,
                        error_code=errors.get((t.name, p.partition_index), ErrorCode.NONE),
                    )
                    for p in t.partitions
                ],
            )
            for t in request.topics
        ],
    )
