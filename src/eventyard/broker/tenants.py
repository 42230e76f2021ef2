"""Tenant limits, an Eventyard extension of client quotas for a managed service's add-ons.

A tenant is a quota entity of its own type, `tenant`, named by a resource-name prefix such as
`acme-1234.`; it owns every topic whose name starts with the prefix. Its limits are set with
AlterClientQuotas and read with DescribeClientQuotas, and kept with the client quotas (quotas.py):

- `max_partitions`: CreateTopics, CreatePartitions and topic auto-creation that would take the
  tenant's total partition count above it are refused with POLICY_VIOLATION.
- `max_stored_bytes`: Produce to a tenant's topic is refused with POLICY_VIOLATION while the
  tenant's stored bytes (the sum of its partitions' log sizes) are at or above it.

Where prefixes overlap ("acme." and "acme.eu."), a topic counts towards each, and each limit applies.

The stored-bytes check is on the produce hot path, so it reads a per-tenant total that is kept in
memory: recomputed from the logs by housekeeping (every housekeeping interval) and right after a
limit changes, a topic is deleted or records are deleted, and increased on every append in
between. A tenant can therefore go over its limit by at most the produce request that crosses it
(the check comes before the append), and space freed by retention or compaction counts only from
the next recomputation, at most one housekeeping interval later.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventyard.broker.quotas import QuotaStore
    from eventyard.broker.topics import TopicRegistry

TENANT = "tenant"
MAX_PARTITIONS = "max_partitions"
MAX_STORED_BYTES = "max_stored_bytes"
TENANT_KEYS = (MAX_PARTITIONS, MAX_STORED_BYTES)
# Above this many topic names the topic -> tenants cache is dropped and rebuilt as needed.
CACHE_LIMIT = 100_000


def invalid_tenant_entity(components: dict[str, str | None]) -> str | None:
    """Why an entity with a tenant component is not valid (None: it is, or it has no tenant)."""
    if TENANT not in components:
        return None
    if len(components) > 1:
        return "the tenant entity type stands alone: it cannot be combined with user or client-id"
    if not components[TENANT]:
        return "a tenant needs a name: the prefix of its topic names, such as 'acme-1234.'"
    return None


def invalid_tenant_value(key: str, value: float) -> str | None:
    if not math.isfinite(value) or value <= 0 or value != int(value):
        return f"{key} must be a whole number greater than 0, not {value!r}"
    return None


class TenantLimits:
    """Enforcement of the tenants' limits over the topic registry, with the stored-bytes totals."""

    def __init__(self, store: QuotaStore, topics: TopicRegistry) -> None:
        self.store = store
        self.topics = topics
        self._generation = -1
        self._limits: dict[str, dict[str, int]] = {}
        self._capped: dict[str, tuple[str, ...]] = {}  # topic -> tenants with max_stored_bytes
        self._stored: dict[str, int] = {}  # tenant -> stored bytes (see the module docstring)
        self._stale = True

    def _sync(self) -> None:
        if self.store.generation == self._generation:
            return
        self._generation = self.store.generation
        self._limits = {
            name: {k: int(v) for k, v in values.items()}
            for name, values in self.store.tenant_limits().items()
        }
        self._capped.clear()
        self._stale = True

    def limits(self) -> dict[str, dict[str, int]]:
        self._sync()
        return self._limits

    # --- partitions ---

    def partition_problem(self, additions: Iterable[tuple[str, int]]) -> str | None:
        """Why adding these (topic, partitions) would break a tenant's max_partitions, or None."""
        self._sync()
        if not self._limits:
            return None
        additions = list(additions)
        for tenant, limits in self._limits.items():
            cap = limits.get(MAX_PARTITIONS)
            adding = sum(n for name, n in additions if name.startswith(tenant))
            if cap is None or adding <= 0:
                continue
            current = sum(len(t.partitions) for n, t in self.topics.topics.items() if n.startswith(tenant))
            if current + adding > cap:
                return (
                    f"tenant {tenant!r} is limited to {MAX_PARTITIONS}={cap}: it has {current} "
                    f"partitions and this would add {adding}"
                )
        return None

    # --- stored bytes (the produce hot path) ---

    def _capped_tenants(self, topic: str) -> tuple[str, ...]:
        found = self._capped.get(topic)
        if found is None:
            if len(self._capped) >= CACHE_LIMIT:
                self._capped.clear()
            found = self._capped[topic] = tuple(
                t for t, limits in self._limits.items() if MAX_STORED_BYTES in limits and topic.startswith(t)
            )
        return found

    def produce_problem(self, topic: str) -> str | None:
        """Why a produce to `topic` is refused (a tenant at its max_stored_bytes), or None."""
        self._sync()
        if not self._limits:
            return None
        tenants = self._capped_tenants(topic)
        if not tenants:
            return None
        if self._stale:
            self.refresh()
        for tenant in tenants:
            cap = self._limits[tenant][MAX_STORED_BYTES]
            stored = self._stored.get(tenant, 0)
            if stored >= cap:
                return (
                    f"tenant {tenant!r} has reached its {MAX_STORED_BYTES} limit of {cap} bytes "
                    f"({stored} bytes stored)"
                )
        return None

    def appended(self, topic: str, nbytes: int) -> None:
        """Count bytes just appended to a topic towards its tenants' totals."""
        if not self._limits:
            return
        for tenant in self._capped_tenants(topic):
            self._stored[tenant] = self._stored.get(tenant, 0) + nbytes

    def invalidate(self) -> None:
        """Stored bytes went down (a topic or records deleted): recompute before the next check."""
        self._stale = True

    def refresh(self) -> None:
        """Recompute the tenants' stored bytes from the logs (housekeeping, or after a change)."""
        self._sync()
        self._stale = False
        if not any(MAX_STORED_BYTES in limits for limits in self._limits.values()):
            self._stored = {}
            return
        stored = dict.fromkeys((t for t, lim in self._limits.items() if MAX_STORED_BYTES in lim), 0)
        for name, topic in list(self.topics.topics.items()):
            tenants = self._capped_tenants(name)
            if not tenants:
                continue
            size = sum(p.log.size_bytes for p in topic.partitions)
            for tenant in tenants:
                stored[tenant] += size
        self._stored = stored
