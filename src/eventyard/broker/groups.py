"""The group coordinator's runtime: parks JoinGroup/SyncGroup requests, runs its timers,
and journals what it records. The decisions are all in eventyard.coordinator.group."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, TypeVar

from eventyard.broker.journal import Journal
from eventyard.coordinator.consumer_group import ConsumerGroupCoordinator
from eventyard.coordinator.group import GroupConfig, GroupCoordinator, Kind, Outcome, Pending
from eventyard.coordinator.group_results import JoinResult, SyncResult

log = logging.getLogger(__name__)
R = TypeVar("R")


class GroupService:
    """Both kinds of group: classic ones (JoinGroup/SyncGroup) and KIP-848 consumer groups
    (ConsumerGroupHeartbeat), which share one id space and one store of committed offsets."""

    def __init__(self, data_dir: Path | None, now_ms: Any, config: GroupConfig | None = None) -> None:
        self.coordinator = GroupCoordinator(config or GroupConfig())
        self.consumer = ConsumerGroupCoordinator(is_classic_group=self._is_active_classic_group)
        self.journal = Journal(data_dir / "consumer-groups.journal" if data_dir else None)
        self._now_ms = now_ms
        self._parked: dict[tuple[str, str, Kind], asyncio.Future[JoinResult | SyncResult]] = {}
        self._timer: asyncio.TimerHandle | None = None
        now = now_ms()
        for record in self.journal.open():
            self.coordinator.replay(record, now)

    def now_ms(self) -> int:
        return int(self._now_ms())

    def _is_active_classic_group(self, group_id: str) -> bool:
        # An empty classic group only holds offsets: a consumer group may take it over, as in Kafka.
        group = self.coordinator.groups.get(group_id)
        return group is not None and bool(group.members)

    def consumer_tick(self) -> None:
        """Run the consumer groups' timers (session and rebalance timeouts), then reschedule."""
        for expired in self.consumer.tick(self.now_ms()):
            log.info(
                "consumer group %s: member %s removed (%s)",
                expired.group_id,
                expired.member_id,
                expired.reason,
            )
        self._schedule()

    def apply(self, outcome: Outcome[R]) -> R:
        """Journal the records and deliver the completions of an outcome; return its response."""
        self.journal.append(outcome.records)
        for completion in outcome.completions:
            waiter = self._parked.pop((completion.group_id, completion.member_id, completion.kind), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(completion.response)
        self._schedule()
        return outcome.response

    async def wait(self, response: JoinResult | SyncResult | Pending) -> JoinResult | SyncResult:
        """The answer to a JoinGroup or SyncGroup, waiting for it if the request was parked."""
        if not isinstance(response, Pending):
            return response
        key = (response.group_id, response.member_id, response.kind)
        waiter: asyncio.Future[JoinResult | SyncResult] = asyncio.get_running_loop().create_future()
        previous = self._parked.get(key)
        if previous is not None and not previous.done():
            previous.cancel()  # a newer request for the same member replaces it
        self._parked[key] = waiter
        try:
            return await waiter
        finally:
            if self._parked.get(key) is waiter:
                del self._parked[key]

    def _schedule(self) -> None:
        deadlines = [
            d for d in (self.coordinator.next_deadline(), self.consumer.next_deadline()) if d is not None
        ]
        deadline = min(deadlines) if deadlines else None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, (deadline - self.now_ms()) / 1000)
        self._timer = loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self.apply(self.coordinator.tick(self.now_ms()))
            self.consumer_tick()
        except Exception:
            log.exception("group coordinator tick failed")
            self._schedule()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for waiter in self._parked.values():
            waiter.cancel()
        self.journal.close()
