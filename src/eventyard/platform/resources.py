"""Topics and consumer groups of an add-on, made through the control plane within its plan: the
partition caps, the topic count, the retention range and whether compaction is allowed. The
cluster enforces the tenant-wide caps too where it can (Eventyard's tenant limits); Apache Kafka
gets per-topic retention.bytes instead."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from eventyard.platform import naming, views
from eventyard.platform.errors import BadRequest, Conflict, NotFound, PlanLimit
from eventyard.platform.store import Group, Topic

if TYPE_CHECKING:
    from eventyard.platform.cluster import ClusterAdmin
    from eventyard.platform.plans import Plan
    from eventyard.platform.store import Addon, Store


def cleanup_policy(compaction: bool) -> str:
    # Compacted topics keep time retention too, so that a tenant's storage stays bounded.
    return "compact,delete" if compaction else "delete"


class ResourcesMixin:
    store: Store
    cluster: ClusterAdmin

    if TYPE_CHECKING:

        def available(self, name: str) -> Addon: ...
        def plan(self, name: str) -> Plan: ...
        def lock(self, addon: str) -> threading.Lock: ...
        def now_ms(self) -> int: ...

    # -- topics

    def list_topics(self, name: str) -> list[dict[str, Any]]:
        addon = self.available(name)
        return [views.topic(addon, t) for t in self.store.topics(name)]

    def get_topic(self, name: str, topic: str) -> dict[str, Any]:
        addon = self.available(name)
        stored = self._topic(name, topic)
        size = self.cluster.stored_bytes({addon.prefix + topic: stored.partitions})
        return {**views.topic(addon, stored), "stored_bytes": size}

    def _topic(self, name: str, topic: str) -> Topic:
        stored = self.store.topic(name, topic)
        if stored is None:
            raise NotFound(f"no topic {topic!r} in {name}")
        return stored

    def create_topic(
        self,
        name: str,
        topic: str,
        partitions: int | None = None,
        retention_ms: int | None = None,
        compaction: bool = False,
        replication: int | None = None,
    ) -> dict[str, Any]:
        addon = self.available(name)
        plan = self.plan(addon.plan)
        full = naming.check_resource("topic", topic, addon.prefix)
        partitions = plan.default_partitions if partitions is None else partitions
        retention_ms = plan.default_retention_ms if retention_ms is None else retention_ms
        if partitions < 1:
            raise BadRequest("partitions must be at least 1")
        _check_retention(plan, retention_ms)
        if compaction and not plan.compaction_allowed:
            raise PlanLimit(f"plan {plan.name} does not allow compacted topics")
        if partitions > plan.max_partitions_per_topic:
            raise PlanLimit(
                f"plan {plan.name} allows at most {plan.max_partitions_per_topic} partitions per topic"
            )
        brokers = len(self.cluster.brokers())
        if replication is None:
            replication = min(3, brokers)
        elif not 1 <= replication <= brokers:
            raise BadRequest(f"replication must be between 1 and {brokers}, the cluster's brokers")
        with self.lock(name):
            existing = self.store.topics(name)
            if any(t.name == topic for t in existing):
                raise Conflict(f"topic {topic!r} exists in {name}")
            if len(existing) + 1 > plan.max_topics:
                raise PlanLimit(f"plan {plan.name} allows at most {plan.max_topics} topics")
            used = sum(t.partitions for t in existing)
            if used + partitions > plan.max_partitions:
                raise PlanLimit(
                    f"plan {plan.name} allows {plan.max_partitions} partitions in all; "
                    f"{used} are used, {partitions} more asked for"
                )
            configs = {"retention.ms": str(retention_ms), "cleanup.policy": cleanup_policy(compaction)}
            if not addon.tenant_limits:
                configs["retention.bytes"] = str(plan.partition_retention_bytes())
            self.cluster.create_topic(full, partitions, replication, configs)
            stored = Topic(name, topic, partitions, replication, retention_ms, compaction, self.now_ms())
            self.store.save_topic(stored)
        return views.topic(addon, stored)

    def update_topic(
        self,
        name: str,
        topic: str,
        retention_ms: int | None = None,
        compaction: bool | None = None,
        partitions: int | None = None,
    ) -> dict[str, Any]:
        """Retune a topic: retention and compaction any time, partitions only up."""
        addon = self.available(name)
        plan = self.plan(addon.plan)
        full = addon.prefix + topic
        with self.lock(name):
            stored = self._topic(name, topic)
            configs: dict[str, str] = {}
            if retention_ms is not None:
                _check_retention(plan, retention_ms)
                configs["retention.ms"] = str(retention_ms)
            if compaction is not None:
                if compaction and not plan.compaction_allowed:
                    raise PlanLimit(f"plan {plan.name} does not allow compacted topics")
                configs["cleanup.policy"] = cleanup_policy(compaction)
            if partitions is not None and partitions != stored.partitions:
                if partitions < stored.partitions:
                    raise BadRequest(f"partitions can only grow: {topic} has {stored.partitions}")
                if partitions > plan.max_partitions_per_topic:
                    raise PlanLimit(
                        f"plan {plan.name} allows {plan.max_partitions_per_topic} partitions per topic"
                    )
                used = sum(t.partitions for t in self.store.topics(name)) - stored.partitions
                if used + partitions > plan.max_partitions:
                    raise PlanLimit(
                        f"plan {plan.name} allows {plan.max_partitions} partitions in all; "
                        f"{used} are used by the other topics, {partitions} asked for"
                    )
            if configs:
                self.cluster.alter_topic(full, configs)
            if partitions is not None and partitions > stored.partitions:
                self.cluster.add_partitions(full, partitions)
            stored = replace(
                stored,
                retention_ms=stored.retention_ms if retention_ms is None else retention_ms,
                compaction=stored.compaction if compaction is None else compaction,
                partitions=max(stored.partitions, partitions or 0),
            )
            self.store.save_topic(stored)
        return views.topic(addon, stored)

    def delete_topic(self, name: str, topic: str) -> dict[str, Any]:
        addon = self.available(name)
        with self.lock(name):
            self._topic(name, topic)
            self.cluster.delete_topics([addon.prefix + topic])
            self.store.delete_topic(name, topic)
        return {"name": topic, "full_name": addon.prefix + topic, "state": "deleted"}

    # -- consumer groups

    def list_groups(self, name: str) -> list[dict[str, Any]]:
        """The groups made through the control plane, and any other the cluster has under the prefix."""
        addon = self.available(name)
        live = {
            full.removeprefix(addon.prefix): state
            for full, state in self.cluster.groups(addon.prefix).items()
        }
        known = {g.name: g for g in self.store.groups(name)}
        return [
            views.group(addon, group, live.get(group, "unused"), group in known)
            for group in sorted(set(known) | set(live))
        ]

    def create_group(self, name: str, group: str) -> dict[str, Any]:
        addon = self.available(name)
        naming.check_resource("group", group, addon.prefix)
        if not self.store.insert_group(Group(name, group, self.now_ms())):
            raise Conflict(f"group {group!r} exists in {name}")
        return views.group(addon, group, "unused", True)

    def delete_group(self, name: str, group: str) -> dict[str, Any]:
        addon = self.available(name)
        live = self.cluster.groups(addon.prefix)
        full = addon.prefix + group
        known = any(g.name == group for g in self.store.groups(name))
        if not known and full not in live:
            raise NotFound(f"no group {group!r} in {name}")
        if full in live:
            self.cluster.delete_group(full)  # NON_EMPTY_GROUP (members connected) -> 409
        self.store.delete_group(name, group)
        return {"name": group, "full_name": full, "state": "deleted"}


def _check_retention(plan: Plan, retention_ms: int) -> None:
    if not plan.retention_ms_min <= retention_ms <= plan.retention_ms_max:
        raise PlanLimit(
            f"plan {plan.name} keeps data between {plan.retention_ms_min} and {plan.retention_ms_max} ms; "
            f"retention_ms {retention_ms} is outside"
        )
