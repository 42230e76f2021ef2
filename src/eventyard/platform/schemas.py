"""Request and response bodies of the HTTP API (pydantic): validation and the OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from eventyard.platform.naming import ADDON_PATTERN, APP_PATTERN, RESOURCE_PATTERN
from eventyard.platform.service import MAX_GRACE_S

Access = Literal["read-write", "read-only"]
# The name rules in the OpenAPI document, so that clients (and fuzzers) know them; the service checks
# them itself (eventyard.platform.naming), with messages that say what a name may be.
APP: JsonDict = {"pattern": APP_PATTERN}
ADDON: JsonDict = {"pattern": ADDON_PATTERN}
RESOURCE: JsonDict = {"pattern": RESOURCE_PATTERN}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _json_types(cls, data: Any) -> Any:
        """Take numbers and booleans only as the OpenAPI types say: pydantic's lax mode would read
        `true` as 1, "5" as 5 and "yes" as True. (Full strict mode would also refuse 5.0, which
        JSON Schema counts as an integer.)"""
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key)
                if field is None or value is None:
                    continue
                kinds = set(get_args(field.annotation)) | {field.annotation}
                if int in kinds and (isinstance(value, bool) or not isinstance(value, int | float)):
                    raise ValueError(f"{key} must be a number")
                if bool in kinds and not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
        return data


class ErrorOut(BaseModel):
    error: str = Field(
        description="A stable code: bad_request, unauthorized, not_found, conflict, plan_limit, ..."
    )
    message: str = Field(description="What went wrong, for people")


class PlanOut(BaseModel):
    name: str
    produce_byte_rate: int = Field(description="Bytes per second each credential may produce")
    consume_byte_rate: int = Field(description="Bytes per second each credential may consume")
    capacity_bytes: int = Field(description="Bytes all the add-on's topics may store together")
    max_partitions: int = Field(description="Partitions of all the add-on's topics together")
    max_topics: int
    retention_ms_min: int
    retention_ms_max: int
    compaction_allowed: bool
    max_partitions_per_topic: int
    default_partitions: int
    default_retention_ms: int
    description: str


class AddonIn(Strict):
    app: str = Field(
        description="The app that owns the add-on; it is attached read-write",
        examples=["shop-api"],
        json_schema_extra=APP,
    )
    plan: str = Field(description="A plan name from GET /v1/plans", examples=["basic-0"])
    name: str | None = Field(
        None, description="The add-on's name; generated when absent", json_schema_extra=ADDON
    )


class AttachmentOut(BaseModel):
    app: str
    access: Access


class AddonOut(BaseModel):
    name: str
    app: str
    plan: str
    state: Literal["provisioning", "available", "failed", "deprovisioning"]
    reason: str | None = Field(
        None, description="Why provisioning failed, or why deprovisioning waits for the cluster"
    )
    prefix: str = Field(description="Every topic and consumer group of the add-on starts with it")
    created_at: str
    attachments: list[AttachmentOut]


class TopicIn(Strict):
    name: str = Field(description="Without the prefix", examples=["orders"], json_schema_extra=RESOURCE)
    partitions: int | None = Field(None, ge=1, description="Default: the plan's default_partitions")
    retention_ms: int | None = Field(None, ge=1, description="Within the plan's retention range")
    compaction: bool = Field(
        False, description="Compacted (keeps the latest record per key); plan permitting"
    )
    replication: int | None = Field(None, ge=1, description="Default: min(3, brokers)")


class TopicPatch(Strict):
    retention_ms: int | None = Field(None, ge=1)
    compaction: bool | None = None
    partitions: int | None = Field(None, ge=1, description="Only up")


class TopicOut(BaseModel):
    name: str
    full_name: str = Field(description="The name on the cluster: prefix + name")
    partitions: int
    replication: int
    retention_ms: int
    compaction: bool
    created_at: str
    stored_bytes: int | None = None


class GroupIn(Strict):
    name: str = Field(description="Without the prefix", examples=["billing"], json_schema_extra=RESOURCE)


class GroupOut(BaseModel):
    name: str
    full_name: str
    state: str = Field(description="The cluster's view: empty, stable, ... or unused (never joined)")
    managed: bool = Field(description="Made through the control plane")


class GroupRef(BaseModel):
    name: str
    full_name: str


class Usage(BaseModel):
    topics: int
    partitions: int
    stored_bytes: int | None = Field(description="From DescribeLogDirs; null when unknown")


class PlanChangeOut(BaseModel):
    from_plan: str
    to_plan: str
    changed_at: str


class AddonDetailOut(AddonOut):
    topics: list[TopicOut]
    groups: list[GroupRef]
    limits: PlanOut
    usage: Usage
    tenant_limits_on_cluster: bool = Field(
        description="The cluster enforces the partition and storage caps itself"
    )
    plan_changed_at: str | None = Field(None, description="When the plan last changed; null: never")
    plan_history: list[PlanChangeOut] = Field(default_factory=list, description="Plan changes, oldest first")


class AddonPatch(Strict):
    plan: str = Field(description="The plan to move to (an upgrade or a downgrade)", examples=["basic-1"])


class AttachmentIn(Strict):
    app: str = Field(json_schema_extra=APP)
    access: Access = "read-write"


class RotateIn(Strict):
    app: str | None = Field(None, description="Default: the owning app")
    grace_period_s: int = Field(
        300, ge=0, le=MAX_GRACE_S, description="How long the old credential keeps working"
    )


class FailIn(Strict):
    target: Literal["leader", "broker"]
    topic: str | None = Field(None, description="For target leader: the topic, without the prefix")
    partition: int | None = Field(None, ge=0)
    duration_s: float = Field(gt=0, le=600)


ConfigOut = dict[str, str]
CONFIG_DESCRIPTION = (
    "Environment variables for the app: KAFKA_URL (comma-separated host:port), KAFKA_PREFIX, KAFKA_USERNAME, "
    "KAFKA_PASSWORD, KAFKA_SASL_MECHANISM, KAFKA_SECURITY_PROTOCOL and, over TLS, KAFKA_TRUSTED_CERT (CA PEM)"
)
