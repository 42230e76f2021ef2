"""Topics: names, ids, partition counts and configs, kept durably, and their partitions."""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventyard.atomic_file import write_atomically
from eventyard.broker.config import TOPIC_CONFIGS, BrokerConfig, log_config
from eventyard.broker.partition import Partition
from eventyard.storage.base import StorageEngine, StorageError

log = logging.getLogger(__name__)

MAX_TOPIC_NAME = 249
_LEGAL_NAME = re.compile(r"[a-zA-Z0-9._-]+")  # fullmatch: "$" would let a final newline through


def invalid_topic_name(name: str) -> str | None:
    """Kafka's rules for topic names; an error message, or None if the name is legal."""
    if not name:
        return "topic name is empty"
    if name in (".", ".."):
        return f"topic name {name!r} is not allowed"
    if len(name) > MAX_TOPIC_NAME:
        return f"topic name is longer than {MAX_TOPIC_NAME} characters"
    if not _LEGAL_NAME.fullmatch(name):
        return f"topic name {name!r} has characters other than ASCII alphanumerics, '.', '_' and '-'"
    return None


@dataclass
class Topic:
    name: str
    id: uuid.UUID
    configs: dict[str, str]  # only the ones set on the topic
    partitions: list[Partition] = field(default_factory=list)

    @property
    def internal(self) -> bool:
        return self.name.startswith("__")


class MetadataStore:
    """The cluster's own small state (ids, topics, configs) in one JSON file, written atomically."""

    def __init__(self, data_dir: Path | None) -> None:
        self.path = data_dir / "metadata.json" if data_dir else None

    def load(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return {}
        return dict(json.loads(self.path.read_text()))

    def save(self, state: dict[str, Any]) -> None:
        """Write tmp, fsync, rename: a crash leaves the old file or the new one, never half of one."""
        if self.path is None:
            return
        try:
            write_atomically(self.path, json.dumps(state, indent=1, sort_keys=True).encode())
        except OSError as exc:
            raise StorageError(f"cannot write {self.path}: {exc}") from exc


class TopicRegistry:
    def __init__(self, config: BrokerConfig, engine: StorageEngine) -> None:
        self.config = config
        self.engine = engine
        self.store = MetadataStore(config.data_dir)
        state = self.store.load()
        self.cluster_id: str = state.get("cluster_id") or uuid.uuid4().hex[:22]
        self.next_producer_id: int = state.get("next_producer_id", 1000)
        self.topics: dict[str, Topic] = {}
        self.by_id: dict[uuid.UUID, Topic] = {}
        for name, t in state.get("topics", {}).items():
            topic = Topic(name, uuid.UUID(t["id"]), dict(t["configs"]))
            self._attach(topic)
            self._open_partitions(topic, 0, int(t["partitions"]))
        self._save()

    def _attach(self, topic: Topic) -> None:
        self.topics[topic.name] = topic
        self.by_id[topic.id] = topic

    def _open_partitions(self, topic: Topic, start: int, end: int) -> None:
        storage_config = log_config(self.effective_configs(topic))
        for index in range(start, end):
            topic.partitions.append(
                Partition(topic.name, index, self.engine.open_log(topic.name, index, storage_config))
            )

    def _save(self) -> None:
        self.store.save(
            {
                "cluster_id": self.cluster_id,
                "next_producer_id": self.next_producer_id,
                "topics": {
                    t.name: {"id": str(t.id), "partitions": len(t.partitions), "configs": t.configs}
                    for t in self.topics.values()
                },
            }
        )

    def effective_configs(self, topic: Topic) -> dict[str, str]:
        return {name: topic.configs.get(name, self.config.topic_default(name)) for name in TOPIC_CONFIGS}

    def get(self, name: str) -> Topic | None:
        return self.topics.get(name)

    def partition(self, name: str, index: int) -> Partition | None:
        topic = self.topics.get(name)
        if topic is None or not 0 <= index < len(topic.partitions):
            return None
        return topic.partitions[index]

    def create(self, name: str, partitions: int, configs: dict[str, str]) -> Topic:
        topic = Topic(name, uuid.uuid4(), dict(configs))
        self._attach(topic)
        try:
            self._open_partitions(topic, 0, partitions)
            self._save()
        except (StorageError, OSError):
            del self.topics[name], self.by_id[topic.id]
            for p in topic.partitions:
                p.log.close()
                self.engine.delete_log(name, p.index)
            raise
        log.info("created topic %s with %d partitions", name, partitions)
        return topic

    def delete(self, name: str) -> None:
        topic = self.topics.pop(name)
        del self.by_id[topic.id]
        self._save()
        for p in topic.partitions:
            p.wake_fetchers()
            p.log.close()
            self.engine.delete_log(name, p.index)
        log.info("deleted topic %s", name)

    def add_partitions(self, topic: Topic, total: int) -> None:
        self._open_partitions(topic, len(topic.partitions), total)
        self._save()

    def set_configs(self, topic: Topic, configs: dict[str, str]) -> None:
        topic.configs = dict(configs)
        self._save()
        storage_config = log_config(self.effective_configs(topic))
        for partition in topic.partitions:
            partition.log.config = storage_config

    def allocate_producer_id(self) -> int:
        pid = self.next_producer_id
        self.next_producer_id += 1
        self._save()
        return pid

    def close(self) -> None:
        for topic in self.topics.values():
            for p in topic.partitions:
                p.log.close()
        self.engine.close()
