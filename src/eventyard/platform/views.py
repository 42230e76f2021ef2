"""JSON views of the store's records, as the API answers them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from eventyard.platform.plans import Plan
from eventyard.platform.settings import Settings
from eventyard.platform.store import Addon, Attachment, Credential, Group, PlanChange, Topic


def timestamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def addon(record: Addon, attachments: list[Attachment]) -> dict[str, Any]:
    return {
        "name": record.name,
        "app": record.app,
        "plan": record.plan,
        "state": record.state,
        "reason": record.reason,
        "prefix": record.prefix,
        "created_at": timestamp(record.created_ms),
        "attachments": [{"app": a.app, "access": a.access} for a in attachments],
    }


def addon_detail(
    record: Addon,
    plan: Plan,
    attachments: list[Attachment],
    topics: list[Topic],
    groups: list[Group],
    stored_bytes: int | None,
    plan_changes: list[PlanChange] | None = None,
) -> dict[str, Any]:
    changes = plan_changes or []
    return {
        **addon(record, attachments),
        "topics": [topic(record, t) for t in topics],
        "groups": [{"name": g.name, "full_name": record.prefix + g.name} for g in groups],
        "limits": plan.to_json(),
        "usage": {
            "topics": len(topics),
            "partitions": sum(t.partitions for t in topics),
            "stored_bytes": stored_bytes,
        },
        "tenant_limits_on_cluster": record.tenant_limits,
        "plan_changed_at": timestamp(changes[-1].changed_ms) if changes else None,
        "plan_history": [
            {"from_plan": c.from_plan, "to_plan": c.to_plan, "changed_at": timestamp(c.changed_ms)}
            for c in changes
        ],
    }


def topic(record: Addon, stored: Topic) -> dict[str, Any]:
    return {
        "name": stored.name,
        "full_name": record.prefix + stored.name,
        "partitions": stored.partitions,
        "replication": stored.replication,
        "retention_ms": stored.retention_ms,
        "compaction": stored.compaction,
        "created_at": timestamp(stored.created_ms),
    }


def group(record: Addon, name: str, state: str, managed: bool) -> dict[str, Any]:
    return {"name": name, "full_name": record.prefix + name, "state": state, "managed": managed}


def config(settings: Settings, record: Addon, credential: Credential) -> dict[str, str]:
    """The environment variables an app needs (Heroku's names for its Kafka add-on)."""
    env = {
        "KAFKA_URL": settings.apps_bootstrap,
        "KAFKA_PREFIX": record.prefix,
        "KAFKA_USERNAME": credential.username,
        "KAFKA_PASSWORD": credential.password,
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SECURITY_PROTOCOL": settings.app_security_protocol,
    }
    ca = settings.ca_pem
    if ca and settings.app_security_protocol == "SASL_SSL":
        env["KAFKA_TRUSTED_CERT"] = ca
    return env
