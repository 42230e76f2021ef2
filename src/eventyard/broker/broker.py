"""The broker: topics, partitions and the handlers, independent of the network transport."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from eventyard.broker.config import BrokerConfig, compaction_config, log_config
from eventyard.broker.faults import FaultInjector, Network
from eventyard.broker.groups import GroupService
from eventyard.broker.handlers import Route, load_all
from eventyard.broker.partition import Partition
from eventyard.broker.quotas import QuotaManager, QuotaStore
from eventyard.broker.session import Session
from eventyard.broker.tenants import TenantLimits
from eventyard.broker.topics import TopicRegistry
from eventyard.protocol.api import ApiMessages
from eventyard.protocol.messages.request_header import RequestHeader
from eventyard.security.acl import CLUSTER_NAME, AclStore, Operation, ResourceType, operations_bitfield
from eventyard.security.credentials import CredentialStore
from eventyard.storage.base import CompactionConfig, StorageEngine, StorageError

log = logging.getLogger(__name__)
audit = logging.getLogger("eventyard.authorizer")
# The "authorized operations" fields when a client did not ask for them (or nothing decides them).
OPERATIONS_NOT_REQUESTED = -(2**31)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class RequestContext:
    header: RequestHeader
    api: ApiMessages
    session: Session

    @property
    def version(self) -> int:
        return self.header.request_api_version

    @property
    def client_host(self) -> str:
        return self.session.peer

    @property
    def principal(self) -> str:
        return self.session.principal

    @property
    def client_address(self) -> str:
        """The client's IP address, without the port: what ACL hosts are compared with."""
        return self.session.peer.rsplit(":", 1)[0].strip("[]")


def open_engine(config: BrokerConfig) -> StorageEngine:
    if config.data_dir is None:
        from eventyard.storage.memory_log import MemoryStorageEngine

        return MemoryStorageEngine()
    from eventyard.storage.file_log import FileStorageEngine

    config.data_dir.mkdir(parents=True, exist_ok=True)
    return FileStorageEngine(config.data_dir)


class Broker:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.routes: dict[int, Route] = load_all()
        self.topics = TopicRegistry(config, open_engine(config))
        self.groups = GroupService(config.data_dir, now_ms, config.groups)
        self.credentials = CredentialStore(config.data_dir / "users.json" if config.data_dir else None)
        self.acls = AclStore(config.data_dir / "acls.json" if config.data_dir else None, config.super_users)
        self.quotas = QuotaManager(QuotaStore(config.data_dir / "quotas.json" if config.data_dir else None))
        self.tenants = TenantLimits(self.quotas.store, self.topics)
        self.faults = FaultInjector(self.topics)
        self.network: Network | None = None  # the Server, once it listens
        self.started_ms = now_ms()
        self._flushes: dict[Partition, asyncio.Future[None]] = {}
        self._housekeeping: asyncio.Task[None] | None = None
        self._compactions: dict[Partition, asyncio.Task[None]] = {}

    @staticmethod
    def now_ms() -> int:
        return now_ms()

    def attach_network(self, network: Network) -> None:
        self.network = self.faults.network = network

    def supported_versions(self) -> dict[int, tuple[int, int]]:
        return {key: (r.min_version, r.max_version) for key, r in sorted(self.routes.items())}

    async def handle(self, ctx: RequestContext, request: Any) -> Any:
        route = self.routes[ctx.api.key]
        await self.quotas.wait_unmuted(ctx.session)  # a throttled connection waits (KIP-219)
        return await route.handler(self, ctx, request)

    # --- authorization: every answer is "allowed" while the authorizer is off ---

    def authorize(
        self,
        ctx: RequestContext,
        operation: Operation,
        resource_type: ResourceType,
        name: str = CLUSTER_NAME,
        *,
        log_denied: bool = True,
    ) -> bool:
        """May the request's principal do `operation` on the resource? Denials are logged, except
        when a listing is merely filtered (log_denied=False), as Kafka does."""
        if not self.config.authorizer:
            return True
        if self.acls.authorize(ctx.principal, ctx.client_address, operation, resource_type, name):
            return True
        if log_denied:
            audit.info(
                "denied: principal=%s host=%s operation=%s resource=%s:%s (%s)",
                ctx.principal,
                ctx.client_address,
                operation.name,
                resource_type.name,
                name,
                ctx.api.name,
            )
        return False

    def authorize_any(self, ctx: RequestContext, operation: Operation, resource_type: ResourceType) -> bool:
        """May the principal do `operation` on some resource of the type (Kafka's by-resource-type check)?"""
        if not self.config.authorizer:
            return True
        return self.acls.authorize_any(ctx.principal, ctx.client_address, operation, resource_type)

    def authorized_operations(
        self, ctx: RequestContext, requested: bool, resource_type: ResourceType, name: str = CLUSTER_NAME
    ) -> int:
        """The KIP-430 bitfield of what the principal may do on a resource, when asked for."""
        if not (requested and self.config.authorizer):
            return OPERATIONS_NOT_REQUESTED
        ops = self.acls.authorized_operations(ctx.principal, ctx.client_address, resource_type, name)
        return operations_bitfield(ops)

    # --- durability: the flush policy ---

    async def flush_if_due(self, partition: Partition) -> None:
        """fsync a partition when its flush.messages is reached; concurrent callers share one fsync."""
        topic = self.topics.get(partition.topic)
        if topic is None:
            return
        configs = self.topics.effective_configs(topic)
        if partition.unflushed_messages >= int(configs["flush.messages"]):
            await self.flush(partition)

    async def flush(self, partition: Partition) -> None:
        pending = self._flushes.get(partition)
        if pending is not None:
            await asyncio.shield(pending)
            if partition.unflushed_messages == 0:
                return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushes[partition] = future
        flushed = partition.unflushed_messages
        try:
            await asyncio.get_running_loop().run_in_executor(None, partition.log.flush)
            partition.unflushed_messages -= flushed
            partition.last_flush_ms = now_ms()
            future.set_result(None)
        except StorageError as exc:
            future.set_exception(exc)
            raise
        finally:
            if self._flushes.get(partition) is future:
                del self._flushes[partition]

    # --- housekeeping: time-based flush, roll and retention ---

    def start(self) -> None:
        self._housekeeping = asyncio.get_running_loop().create_task(self._housekeep())

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(self.config.housekeeping_interval_s)
            try:
                await self.housekeep_once()
            except Exception:
                log.exception("housekeeping failed")

    async def housekeep_once(self) -> None:
        now = now_ms()
        for topic in list(self.topics.topics.values()):
            configs = self.topics.effective_configs(topic)
            storage_config = log_config(configs)
            flush_ms = int(configs["flush.ms"])
            for partition in topic.partitions:
                try:
                    partition.log.roll_if_due(storage_config, now)
                    if "delete" in configs["cleanup.policy"]:
                        partition.log.apply_retention(storage_config, now)
                    if "compact" in configs["cleanup.policy"]:
                        self._start_compaction(partition, compaction_config(configs))
                    if partition.unflushed_messages and now - partition.last_flush_ms >= flush_ms:
                        await self.flush(partition)
                except StorageError:
                    log.exception("storage error on %s-%d", topic.name, partition.index)
        self.tenants.refresh()  # after retention: the stored bytes that max_stored_bytes is checked on
        self.groups.journal.flush()

    def _start_compaction(self, partition: Partition, config: CompactionConfig) -> None:
        """Clean a compacted partition in a worker thread, one run per partition at a time:
        appends and fetches carry on meanwhile (the log only locks for the final swap)."""
        if partition in self._compactions:
            return

        async def run() -> None:
            try:
                stats = await asyncio.get_running_loop().run_in_executor(
                    None, partition.log.compact, config, now_ms()
                )
                if stats.segments_cleaned:
                    log.info(
                        "compacted %s-%d: %d of %d records kept, %d -> %d bytes in %.2fs",
                        partition.topic,
                        partition.index,
                        stats.records_kept,
                        stats.records_read,
                        stats.bytes_before,
                        stats.bytes_after,
                        stats.elapsed,
                    )
            except StorageError:
                log.exception("compaction of %s-%d failed", partition.topic, partition.index)
            finally:
                del self._compactions[partition]

        self._compactions[partition] = asyncio.get_running_loop().create_task(run())

    async def close(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        self.faults.close()
        # A compaction in a thread cannot be interrupted; let it finish before the logs close.
        await asyncio.gather(*self._compactions.values(), return_exceptions=True)
        self.groups.close()
        for topic in self.topics.topics.values():
            for partition in topic.partitions:
                try:
                    partition.log.flush()
                except StorageError:
                    log.exception("flush on shutdown failed for %s-%d", topic.name, partition.index)
        self.topics.close()
