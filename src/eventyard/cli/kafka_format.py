"""Formatting of the control plane's answers, shared by the CLI and the dashboard: durations,
sizes, and the API's shapes read leniently (no click, no Kafka client: the dashboard imports it)."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


def human_duration(ms: Any) -> str:
    """'7d', '36h', '90s'... for milliseconds; '-' when unknown, 'forever' for -1."""
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return "-"
    if ms < 0:
        return "forever"
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{int(ms // size)}{unit}"
    return f"{int(ms)}ms"


def human_bytes(size: Any) -> str:
    if not isinstance(size, int | float) or isinstance(size, bool):
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value} B"  # not reached


def show(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# -- the shapes of the API's answers, read leniently


def topic_prefixed_name(topic: JSON, prefix: str = "") -> str:
    for key in ("prefixed_name", "full_name", "kafka_name", "qualified_name"):
        if topic.get(key):
            return str(topic[key])
    return prefix + str(topic.get("name", ""))


def topic_size(topic: JSON) -> Any:
    for key in ("size_bytes", "stored_bytes", "bytes", "size"):
        if key in topic:
            return topic[key]
    return None


def topic_compaction(topic: JSON) -> Any:
    if "compaction" in topic:
        return topic["compaction"]
    policy = topic.get("cleanup_policy")
    return None if policy is None else "compact" in str(policy)


def _limit_of(key: str, limits: JSON) -> Any:
    # "topics" is bounded by "max_topics", "stored_bytes" by the plan's "capacity_bytes".
    for candidate in (f"max_{key}", f"{key}_limit", "capacity_bytes" if key.endswith("bytes") else ""):
        if candidate in limits:
            return limits[candidate]
    return None


_USAGE_LABELS = {
    "stored_bytes": "Data size",
    "produce_byte_rate": "Produce rate",
    "consume_byte_rate": "Consume rate",
}


def usage_label(key: str) -> str:
    return _USAGE_LABELS.get(key) or key.replace("_", " ").capitalize()


def usage_rows(addon: JSON) -> list[tuple[str, Any, Any]]:
    """(what, used, limit) for each usage the add-on reports, then its byte-rate limits (used None)."""
    limits = addon.get("limits")
    usage = addon.get("usage")
    limits = limits if isinstance(limits, dict) else {}
    usage = usage if isinstance(usage, dict) else {}
    if usage.get("stored_bytes") is None and usage.get("topics") == 0:
        usage = {**usage, "stored_bytes": 0}  # unknown only when there is something to measure
    rows: list[tuple[str, Any, Any]] = [(key, used, _limit_of(key, limits)) for key, used in usage.items()]
    rows += [(key, None, value) for key, value in limits.items() if key.endswith("_byte_rate")]
    return rows


def format_amount(key: str, value: Any) -> str:
    if "byte_rate" in key or key.endswith("_rate"):
        return "-" if value is None else f"{human_bytes(value)}/s"
    if "bytes" in key:
        return human_bytes(value)
    if key.endswith("_ms") or "retention" in key:
        return human_duration(value)
    return show(value)
