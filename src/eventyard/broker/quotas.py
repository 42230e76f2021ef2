"""Client quotas (Kafka's, KIP-13, KIP-219, KIP-546): the durable store of quota configurations, the
precedence that picks the quota of a request, and byte-rate accounting over a sliding window that
answers how long to throttle. Sans-IO apart from the store's file and the connection mutes.

Entities are a user, a client id, or both; a name of None is the default entity. For each quota
key separately, the first configured entity in Kafka's order applies:

    user+client-id, user+default client-id, user,
    default user+client-id, default user+default client-id, default user,
    client-id, default client-id.

The entity that matched decides who shares the quota: a quota on user alice is shared by all of
alice's clients; a default-user quota gives each user a quota of their own.

Enforcement: the bytes of a request (Produce) or response (Fetch) are recorded in the matched
entity's samples (11 samples of 1 s), and when the observed rate is above the quota the throttle
time is how long the entity would have to stay idle for its rate to come back down to the quota.
The request is answered normally with that throttle time; the connection then sends no further
request for that long (KIP-219's muting), or, for versions before KIP-219, the answer itself waits.

The store also keeps Eventyard's tenant limits, entities of the type `tenant` alone; tenants.py
validates and enforces them.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventyard.atomic_file import write_atomically
from eventyard.broker.tenants import TENANT, TENANT_KEYS, invalid_tenant_entity, invalid_tenant_value

# Version 2 files may hold tenant entities (Eventyard's tenant limits); a file without any is still
# written as version 1, so that an older broker reads it. Both versions are read.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
USER = "user"
CLIENT_ID = "client-id"
ENTITY_TYPES = (USER, CLIENT_ID, TENANT)  # the order entities are written in

PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"
CONTROLLER_MUTATION_RATE = "controller_mutation_rate"
# Stored and described; only the byte rates are enforced.
QUOTA_KEYS = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE, CONTROLLER_MUTATION_RATE)
INTEGRAL_KEYS = frozenset({PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE})

# DescribeClientQuotas match types (KIP-546).
MATCH_EXACT = 0
MATCH_DEFAULT = 1
MATCH_ANY = 2

SAMPLES = 11
SAMPLE_MS = 1000

# An entity: (type, name) pairs in ENTITY_TYPES order, name None for the default entity.
Entity = tuple[tuple[str, str | None], ...]


class QuotaError(ValueError):
    """An entity, quota or filter that is not valid, or a store file that cannot be read."""


def make_entity(components: Iterable[tuple[str, str | None]]) -> Entity:
    """A checked entity from (type, name) pairs in any order."""
    seen: dict[str, str | None] = {}
    for entity_type, name in components:
        if entity_type not in ENTITY_TYPES:
            raise QuotaError(f"unsupported entity type {entity_type!r} (supported: user, client-id, tenant)")
        if entity_type in seen:
            raise QuotaError(f"duplicate entity type {entity_type!r}")
        seen[entity_type] = name
    if not seen:
        raise QuotaError("an entity needs a user, a client-id or both")
    problem = invalid_tenant_entity(seen)
    if problem:
        raise QuotaError(problem)
    return tuple((t, seen[t]) for t in ENTITY_TYPES if t in seen)


def is_tenant(entity: Entity) -> bool:
    return entity[0][0] == TENANT


def check_key(entity: Entity, key: str) -> None:
    """Tenant entities take tenant limits only, and the others client quotas only."""
    if is_tenant(entity):
        if key not in TENANT_KEYS:
            raise QuotaError(f"a tenant takes {' and '.join(TENANT_KEYS)} only, not {key!r}")
    elif key in TENANT_KEYS:
        raise QuotaError(
            f"{key} is a tenant limit: set it on a 'tenant' entity (alone), not on users or clients"
        )
    elif key not in QUOTA_KEYS:
        raise QuotaError(f"unknown quota key {key!r}")


def check_value(key: str, value: float) -> None:
    if key in TENANT_KEYS:
        problem = invalid_tenant_value(key, value)
        if problem:
            raise QuotaError(problem)
        return
    if key not in QUOTA_KEYS:
        raise QuotaError(f"unknown quota key {key!r}")
    if not math.isfinite(value) or value <= 0:
        raise QuotaError(f"{key} must be a positive number, not {value!r}")
    if key in INTEGRAL_KEYS and value != int(value):
        raise QuotaError(f"{key} must be a whole number of bytes per second, not {value!r}")


@dataclass(frozen=True, slots=True)
class QuotaOp:
    key: str
    value: float = 0.0
    remove: bool = False


@dataclass(frozen=True, slots=True)
class ComponentFilter:
    entity_type: str
    match_type: int
    match: str | None = None


def user_name(principal: str) -> str:
    """The user a principal's quotas are configured under: "User:alice" -> "alice"."""
    return principal.split(":", 1)[1] if ":" in principal else principal


def candidates(user: str, client_id: str) -> list[tuple[Entity, tuple[str, str]]]:
    """The entities that may hold a request's quota, in precedence order, each with the key of the
    samples it is accounted in (the actual user and/or client id the entity covers)."""
    return [
        (((USER, user), (CLIENT_ID, client_id)), (user, client_id)),
        (((USER, user), (CLIENT_ID, None)), (user, client_id)),
        (((USER, user),), (user, "")),
        (((USER, None), (CLIENT_ID, client_id)), (user, client_id)),
        (((USER, None), (CLIENT_ID, None)), (user, client_id)),
        (((USER, None),), (user, "")),
        (((CLIENT_ID, client_id),), ("", client_id)),
        (((CLIENT_ID, None),), ("", client_id)),
    ]


class QuotaStore:
    """The quota configurations; with a path, every change rewrites a JSON file atomically."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._quotas: dict[Entity, dict[str, float]] = {}
        self._client_quotas = False  # any entity other than a tenant: resolve() has work to do
        self.generation = 0  # bumped on every change, for caches of the configurations (tenants)
        if path is not None and path.exists():
            self._load(path)
        self._changed()

    def _changed(self) -> None:
        self._client_quotas = any(not is_tenant(entity) for entity in self._quotas)
        self.generation += 1

    def tenant_limits(self) -> dict[str, dict[str, float]]:
        """The tenants' limits, by tenant name (a resource-name prefix)."""
        return {str(e[0][1]): dict(v) for e, v in self._quotas.items() if is_tenant(e)}

    def quotas(self, entity: Entity) -> dict[str, float]:
        return dict(self._quotas.get(entity, {}))

    def resolve(self, key: str, user: str, client_id: str) -> tuple[tuple[str, str], float] | None:
        """The quota `key` of a request by `user` with `client_id`, and the samples key it is
        accounted under; None when no entity configures it."""
        if not self._client_quotas:
            return None
        for entity, sample_key in candidates(user, client_id):
            value = self._quotas.get(entity, {}).get(key)
            if value is not None:
                return sample_key, value
        return None

    def check(self, entity: Entity, ops: Sequence[QuotaOp]) -> None:
        keys = set()
        for op in ops:
            if op.key in keys:
                raise QuotaError(f"duplicate quota key {op.key!r}")
            keys.add(op.key)
            check_key(entity, op.key)
            if not op.remove:
                check_value(op.key, op.value)

    def alter(self, changes: Sequence[tuple[Entity, Sequence[QuotaOp]]]) -> None:
        """Apply checked changes and persist; all or nothing."""
        before = {entity: dict(values) for entity, values in self._quotas.items()}
        for entity, ops in changes:
            values = self._quotas.setdefault(entity, {})
            for op in ops:
                if op.remove:
                    values.pop(op.key, None)
                else:
                    values[op.key] = float(op.value)
            if not values:
                del self._quotas[entity]
        try:
            self.save()
        except OSError:
            self._quotas = before
            raise
        finally:
            self._changed()

    def describe(
        self, components: Sequence[ComponentFilter], strict: bool
    ) -> list[tuple[Entity, dict[str, float]]]:
        """The entities matching a DescribeClientQuotas filter, with their quotas."""
        wanted: dict[str, ComponentFilter] = {}
        for c in components:
            if c.entity_type in wanted:
                raise QuotaError(f"duplicate filter component for entity type {c.entity_type!r}")
            if c.match_type == MATCH_EXACT and c.match is None:
                raise QuotaError(f"an exact match of {c.entity_type!r} needs a name")
            if c.match_type not in (MATCH_EXACT, MATCH_DEFAULT, MATCH_ANY):
                raise QuotaError(f"unknown match type {c.match_type}")
            if c.entity_type not in ENTITY_TYPES:
                raise QuotaError(f"unsupported entity type {c.entity_type!r}")
            if c.entity_type == TENANT and c.match_type == MATCH_DEFAULT:
                raise QuotaError("tenants have no default entity: match a tenant exactly or any tenant")
            wanted[c.entity_type] = c
        found = []
        for entity, values in self._quotas.items():
            names = dict(entity)
            if strict and set(names) != set(wanted):
                continue
            if all(_matches(c, names) for c in wanted.values()):
                found.append((entity, dict(values)))
        return sorted(found, key=lambda item: [(t, n is not None, n or "") for t, n in item[0]])

    def save(self) -> None:
        if self.path is None:
            return
        data = {
            "version": FORMAT_VERSION if any(map(is_tenant, self._quotas)) else 1,
            "quotas": [
                {"entity": [{"type": t, "name": n} for t, n in entity], "values": values}
                for entity, values in self._quotas.items()
            ],
        }
        write_atomically(self.path, json.dumps(data, indent=2).encode() + b"\n")

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_bytes())
            if data.get("version") not in READABLE_VERSIONS:
                raise QuotaError(f"unsupported quota file version {data.get('version')!r}")
            for item in data["quotas"]:
                entity = make_entity((c["type"], c["name"]) for c in item["entity"])
                values = {str(k): float(v) for k, v in item["values"].items()}
                for k, v in values.items():
                    check_key(entity, k)
                    check_value(k, v)
                if values:
                    self._quotas[entity] = values
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise QuotaError(f"cannot read quota file {path}: {exc}") from exc


def _matches(component: ComponentFilter, names: dict[str, str | None]) -> bool:
    if component.entity_type not in names:
        return False
    name = names[component.entity_type]
    if component.match_type == MATCH_EXACT:
        return name == component.match
    if component.match_type == MATCH_DEFAULT:
        return name is None
    return True  # MATCH_ANY: any name, the default included


@dataclass(slots=True)
class SampledRate:
    """Bytes over a sliding window of `samples` samples of `sample_ms` each."""

    samples: int = SAMPLES
    sample_ms: int = SAMPLE_MS
    _samples: deque[list[int]] = field(default_factory=deque)  # [start_ms, total]

    def record(self, value: int, now_ms: int) -> None:
        self._expire(now_ms)
        if not self._samples or now_ms >= self._samples[-1][0] + self.sample_ms:
            self._samples.append([now_ms, 0])
        self._samples[-1][1] += value

    def _expire(self, now_ms: int) -> None:
        while self._samples and self._samples[0][0] + self.samples * self.sample_ms <= now_ms:
            self._samples.popleft()

    def window_ms(self, now_ms: int) -> int:
        """The span the rate is measured over: since the oldest sample, at least one sample long."""
        self._expire(now_ms)
        if not self._samples:
            return self.sample_ms
        return max(now_ms - self._samples[0][0], self.sample_ms)

    def total(self, now_ms: int) -> int:
        self._expire(now_ms)
        return sum(total for _, total in self._samples)

    def rate(self, now_ms: int) -> float:
        """Bytes per second."""
        return self.total(now_ms) * 1000 / self.window_ms(now_ms)

    def throttle_ms(self, quota: float, now_ms: int) -> int:
        """How long the entity must stay idle for its rate to come down to `quota` (0: not above it),
        at most the whole window."""
        window = self.window_ms(now_ms)
        excess = self.total(now_ms) - quota * window / 1000
        if excess <= 0:
            return 0
        return min(math.ceil(excess / quota * 1000), self.samples * self.sample_ms)

    def idle_since(self, now_ms: int) -> bool:
        self._expire(now_ms)
        return not self._samples


def monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


class QuotaManager:
    """The store, the rates of the entities that have quotas, and the muted connections."""

    def __init__(self, store: QuotaStore, clock: Any = monotonic_ms) -> None:
        self.store = store
        self.clock = clock
        self._rates: dict[tuple[str, str, str], SampledRate] = {}
        self._muted: dict[int, tuple[object, float]] = {}  # id(session) -> (session, until)
        self._last_prune = 0

    def record(self, key: str, principal: str, client_id: str | None, nbytes: int) -> int:
        """Account `nbytes` to the entity holding the request's `key` quota; the throttle time in ms
        (0 when there is no quota or the rate is within it)."""
        resolved = self.store.resolve(key, user_name(principal), client_id or "")
        if resolved is None:
            return 0
        (user, client), quota = resolved
        now = self.clock()
        self._prune(now)
        rate = self._rates.get((key, user, client))
        if rate is None:
            rate = self._rates[(key, user, client)] = SampledRate()
        rate.record(nbytes, now)
        return rate.throttle_ms(quota, now)

    def _prune(self, now: int) -> None:
        if now - self._last_prune < SAMPLES * SAMPLE_MS:
            return
        self._last_prune = now
        for k in [k for k, r in self._rates.items() if r.idle_since(now)]:
            del self._rates[k]
        wall = time.monotonic()
        for session_id in [i for i, (_, until) in self._muted.items() if until <= wall]:
            del self._muted[session_id]

    # --- muting: a throttled connection's next request waits (KIP-219) ---

    def mute(self, session: object, throttle_ms: int) -> None:
        until = time.monotonic() + throttle_ms / 1000
        previous = self._muted.get(id(session))
        if previous is None or previous[1] < until:
            # The session itself is kept so that its id cannot be reused while the entry lives.
            self._muted[id(session)] = (session, until)

    async def wait_unmuted(self, session: object) -> None:
        entry = self._muted.pop(id(session), None)
        if entry is not None and entry[0] is session:
            delay = entry[1] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)


async def throttle(manager: QuotaManager, session: object, throttle_ms: int, mute: bool) -> None:
    """Apply a throttle: mute the connection (the answer goes out now, the next request waits), or
    for clients that predate KIP-219, delay the answer itself."""
    if throttle_ms <= 0:
        return
    if mute:
        manager.mute(session, throttle_ms)
    else:
        await asyncio.sleep(throttle_ms / 1000)
