"""Plans: what a tenant may use of the shared cluster.

The basic-0/1/2 figures follow Heroku's published multi-tenant Kafka "Basic" plans (Heroku Dev
Center, "Multi-Tenant Apache Kafka on Heroku": produce 64/512/4096 KB/s, consume 256/2048/16384
KB/s, capacity 4/32/64 GB, 240/480/960 partitions). The topic counts, the retention range (Heroku's
topic limits: 6 hours to 2 weeks) and compaction only from basic-1 up are Eventyard's choices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

KB = 1024
GB = 1024**3
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    produce_byte_rate: int  # per credential, bytes per second (a user quota on the cluster)
    consume_byte_rate: int
    capacity_bytes: int  # stored bytes of all the tenant's topics
    max_partitions: int  # all the tenant's topics together
    max_topics: int
    retention_ms_min: int
    retention_ms_max: int
    compaction_allowed: bool
    max_partitions_per_topic: int = 256
    default_partitions: int = 8
    default_retention_ms: int = DAY_MS
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def partition_retention_bytes(self) -> int:
        """A per-partition size bound that keeps the whole tenant within capacity on a cluster that
        cannot enforce a tenant-wide limit (Apache Kafka): capacity spread over the partition cap."""
        return max(1, self.capacity_bytes // self.max_partitions)


PLANS: dict[str, Plan] = {
    plan.name: plan
    for plan in (
        Plan(
            "basic-0",
            produce_byte_rate=64 * KB,
            consume_byte_rate=256 * KB,
            capacity_bytes=4 * GB,
            max_partitions=240,
            max_topics=40,
            retention_ms_min=6 * HOUR_MS,
            retention_ms_max=7 * DAY_MS,
            compaction_allowed=False,
            description="Experiments and prototypes",
        ),
        Plan(
            "basic-1",
            produce_byte_rate=512 * KB,
            consume_byte_rate=2048 * KB,
            capacity_bytes=32 * GB,
            max_partitions=480,
            max_topics=80,
            retention_ms_min=6 * HOUR_MS,
            retention_ms_max=14 * DAY_MS,
            compaction_allowed=True,
            description="Development, testing and small production loads",
        ),
        Plan(
            "basic-2",
            produce_byte_rate=4096 * KB,
            consume_byte_rate=16384 * KB,
            capacity_bytes=64 * GB,
            max_partitions=960,
            max_topics=160,
            retention_ms_min=6 * HOUR_MS,
            retention_ms_max=14 * DAY_MS,
            compaction_allowed=True,
            description="Production loads that do not need a dedicated cluster",
        ),
    )
}
