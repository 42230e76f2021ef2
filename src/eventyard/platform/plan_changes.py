"""Moving an add-on to another plan, as Heroku's `addons:upgrade` / `addons:downgrade`: the user
quotas of every credential, the tenant limits on the cluster (or, on Apache Kafka, retention.bytes
of every topic) and the stored plan change together. A plan the add-on's current usage does not fit
is refused (422) with the list of what to change first; nothing is deleted on the tenant's behalf."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from eventyard.platform.errors import PlanLimit, PlatformError

if TYPE_CHECKING:
    from eventyard.platform.cluster import ClusterAdmin
    from eventyard.platform.plans import Plan
    from eventyard.platform.store import Addon, Store, Topic

log = logging.getLogger(__name__)


def _names(topics: list[Topic]) -> str:
    return ", ".join(t.name for t in topics)


def misfits(plan: Plan, topics: list[Topic], stored_bytes: int | None) -> list[str]:
    """What keeps an add-on with these topics (and stored bytes, when known) off the plan, each
    with what to do about it; empty when it fits."""
    problems: list[str] = []
    if len(topics) > plan.max_topics:
        problems.append(
            f"{len(topics)} topics, {plan.name} allows {plan.max_topics}: "
            f"destroy {len(topics) - plan.max_topics} of them"
        )
    used = sum(t.partitions for t in topics)
    if used > plan.max_partitions:
        problems.append(
            f"{used} partitions in all, {plan.name} allows {plan.max_partitions}: "
            f"destroy topics holding at least {used - plan.max_partitions} partitions"
        )
    wide = [t for t in topics if t.partitions > plan.max_partitions_per_topic]
    if wide:
        problems.append(
            f"topics with more than {plan.max_partitions_per_topic} partitions, {plan.name}'s per-topic "
            f"cap (partitions never shrink, so destroy them): {_names(wide)}"
        )
    kept = [t for t in topics if not plan.retention_ms_min <= t.retention_ms <= plan.retention_ms_max]
    if kept:
        problems.append(
            f"retention outside {plan.name}'s {plan.retention_ms_min} to {plan.retention_ms_max} ms "
            f"(change it): {_names(kept)}"
        )
    if not plan.compaction_allowed:
        compacted = [t for t in topics if t.compaction]
        if compacted:
            problems.append(
                f"compacted topics, {plan.name} has no compaction (disable it): {_names(compacted)}"
            )
    if stored_bytes is not None and stored_bytes > plan.capacity_bytes:
        problems.append(
            f"{stored_bytes} bytes stored, {plan.name} holds {plan.capacity_bytes}: "
            "shorten retention or destroy topics"
        )
    return problems


class PlanChangeMixin:
    store: Store
    cluster: ClusterAdmin

    if TYPE_CHECKING:

        def available(self, name: str) -> Addon: ...
        def plan(self, name: str) -> Plan: ...
        def lock(self, addon: str) -> threading.Lock: ...
        def now_ms(self) -> int: ...
        def describe(self, name: str, usage: bool = True) -> dict[str, Any]: ...

    def change_plan(self, name: str, plan_name: str) -> dict[str, Any]:
        """Move the add-on to another plan (up or down); the add-on as GET shows it. The same plan
        again changes nothing."""
        new = self.plan(plan_name)
        with self.lock(name):  # no topic is made or retuned in between
            addon = self.available(name)
            if addon.plan == new.name:
                return self.describe(name)
            old = self.plan(addon.plan)
            topics = self.store.topics(name)
            stored = None
            if topics and new.capacity_bytes < old.capacity_bytes:  # only a smaller capacity can misfit
                stored = self.cluster.stored_bytes({addon.prefix + t.name: t.partitions for t in topics})
            problems = misfits(new, topics, stored)
            if problems:
                raise PlanLimit(f"{name} does not fit plan {new.name}; first change: " + "; ".join(problems))
            try:
                self._apply_plan(addon, new, topics)
            except PlatformError:
                # Back to the old plan's settings, so that the cluster agrees with the store.
                try:
                    self._apply_plan(addon, old, topics)
                except PlatformError as exc:
                    log.warning("restoring plan %s on %s: %s", old.name, name, exc.message)
                raise
            self.store.change_plan(name, old.name, new.name, self.now_ms())
        log.info("add-on %s moved from %s to %s", name, old.name, new.name)
        return self.describe(name)

    def _apply_plan(self, addon: Addon, plan: Plan, topics: list[Topic]) -> None:
        """The plan's limits on the cluster: idempotent, so also the way back after a failure."""
        if addon.tenant_limits:
            self.cluster.set_tenant_limits(addon.prefix, plan.max_partitions, plan.capacity_bytes)
        else:  # Apache Kafka: the capacity is bounded per partition
            for topic in topics:
                self.cluster.alter_topic(
                    addon.prefix + topic.name, {"retention.bytes": str(plan.partition_retention_bytes())}
                )
        for credential in self.store.credentials(addon.name):  # rotated-out ones too, until reaped
            self.cluster.set_user_quota(credential.username, plan.produce_byte_rate, plan.consume_byte_rate)
