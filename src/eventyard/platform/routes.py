"""The /v1 routes: thin, synchronous handlers (FastAPI runs them in its thread pool) over the service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response

from eventyard.platform import schemas
from eventyard.platform.schemas import ErrorOut
from eventyard.platform.service import PlatformService

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "Bad input"),
        (401, "No or wrong bearer token"),
        (404, "Unknown add-on, app, topic or group"),
        (409, "Conflict: exists already, or the add-on is not available"),
        (422, "Beyond the plan's limits, or usage that does not fit the plan asked for"),
        (502, "The Kafka cluster refused or failed"),
    )
}


def register(router: APIRouter, service: PlatformService) -> None:
    @router.get("/plans", response_model=list[schemas.PlanOut], responses=_ERRORS, tags=["plans"])
    def list_plans() -> list[dict[str, Any]]:
        """The plans add-ons are created on."""
        return service.plans()

    @router.post(
        "/addons", status_code=202, response_model=schemas.AddonOut, responses=_ERRORS, tags=["add-ons"]
    )
    def create_addon(body: schemas.AddonIn) -> dict[str, Any]:
        """Create an add-on for an app. Provisioning continues in the background: poll
        GET /v1/addons/{addon} until its state is `available` (or `failed`, with a reason)."""
        return service.create_addon(body.app, body.plan, body.name)

    @router.get("/addons", response_model=list[schemas.AddonOut], responses=_ERRORS, tags=["add-ons"])
    def list_addons(app: str | None = Query(None, description="Only add-ons attached to this app")) -> Any:
        """Every add-on, or those attached to one app."""
        return service.list_addons(app)

    @router.get("/addons/{addon}", response_model=schemas.AddonDetailOut, responses=_ERRORS, tags=["add-ons"])
    def get_addon(addon: str) -> dict[str, Any]:
        """State, plan, prefix, topics, groups, attachments, the plan's limits and current usage."""
        return service.describe(addon)

    @router.patch(
        "/addons/{addon}", response_model=schemas.AddonDetailOut, responses=_ERRORS, tags=["add-ons"]
    )
    def change_plan(addon: str, body: schemas.AddonPatch) -> dict[str, Any]:
        """Move the add-on to another plan (an upgrade or a downgrade): every credential's quotas, the
        tenant limits and the plan change together. 422 when the add-on's topics do not fit the new
        plan, with what to change first; the plan history is in `plan_history`."""
        return service.change_plan(addon, body.plan)

    @router.delete(
        "/addons/{addon}",
        responses={**_ERRORS, 202: {"description": "Deprovisioning waits for the cluster"}},
        tags=["add-ons"],
    )
    def delete_addon(addon: str, response: Response) -> dict[str, Any]:
        """Deprovision: the add-on's topics, groups, users, ACLs and quotas are removed (200, state
        `deleted`). When the cluster cannot be reached, 202: the add-on stays `deprovisioning` and
        the cleanup finishes in the background once the cluster is back."""
        result = service.delete_addon(addon)
        if result["state"] != "deleted":
            response.status_code = 202
        return result

    @router.get(
        "/addons/{addon}/config",
        response_model=schemas.ConfigOut,
        responses=_ERRORS,
        tags=["credentials"],
        description=schemas.CONFIG_DESCRIPTION,
    )
    def get_config(addon: str, app: str | None = Query(None, description="Default: the owning app")) -> Any:
        return service.config(addon, app)

    @router.post("/addons/{addon}/attachments", status_code=201, responses=_ERRORS, tags=["credentials"])
    def attach(addon: str, body: schemas.AttachmentIn) -> dict[str, Any]:
        """Attach the add-on to another app, with its own credential (read-write or read-only);
        the answer carries that app's config."""
        return service.attach(addon, body.app, body.access)

    @router.delete("/addons/{addon}/attachments/{app}", responses=_ERRORS, tags=["credentials"])
    def detach(addon: str, app: str) -> dict[str, Any]:
        """Detach an app: its credentials stop working at once."""
        return service.detach(addon, app)

    @router.post(
        "/addons/{addon}/credentials/rotate",
        response_model=schemas.ConfigOut,
        responses=_ERRORS,
        tags=["credentials"],
    )
    def rotate(addon: str, body: schemas.RotateIn) -> Any:
        """A new credential for the app, returned as its new config; the old one keeps working for
        grace_period_s seconds, then it is deleted."""
        return service.rotate(addon, body.app, body.grace_period_s)

    @router.get(
        "/addons/{addon}/topics", response_model=list[schemas.TopicOut], responses=_ERRORS, tags=["topics"]
    )
    def list_topics(addon: str) -> Any:
        return service.list_topics(addon)

    @router.post(
        "/addons/{addon}/topics",
        status_code=201,
        response_model=schemas.TopicOut,
        responses=_ERRORS,
        tags=["topics"],
    )
    def create_topic(addon: str, body: schemas.TopicIn) -> Any:
        """Create a topic within the plan (partitions, topic count, retention range, compaction)."""
        return service.create_topic(
            addon, body.name, body.partitions, body.retention_ms, body.compaction, body.replication
        )

    @router.get(
        "/addons/{addon}/topics/{topic}", response_model=schemas.TopicOut, responses=_ERRORS, tags=["topics"]
    )
    def get_topic(addon: str, topic: str) -> Any:
        return service.get_topic(addon, topic)

    @router.patch(
        "/addons/{addon}/topics/{topic}", response_model=schemas.TopicOut, responses=_ERRORS, tags=["topics"]
    )
    def update_topic(addon: str, topic: str, body: schemas.TopicPatch) -> Any:
        """Retune a topic: retention and compaction any time, partitions only up."""
        return service.update_topic(addon, topic, body.retention_ms, body.compaction, body.partitions)

    @router.delete("/addons/{addon}/topics/{topic}", responses=_ERRORS, tags=["topics"])
    def delete_topic(addon: str, topic: str) -> dict[str, Any]:
        return service.delete_topic(addon, topic)

    @router.get(
        "/addons/{addon}/groups", response_model=list[schemas.GroupOut], responses=_ERRORS, tags=["groups"]
    )
    def list_groups(addon: str) -> Any:
        return service.list_groups(addon)

    @router.post(
        "/addons/{addon}/groups",
        status_code=201,
        response_model=schemas.GroupOut,
        responses=_ERRORS,
        tags=["groups"],
    )
    def create_group(addon: str, body: schemas.GroupIn) -> Any:
        """Register a consumer group (the cluster creates it when a consumer first joins)."""
        return service.create_group(addon, body.name)

    @router.delete("/addons/{addon}/groups/{group}", responses=_ERRORS, tags=["groups"])
    def delete_group(addon: str, group: str) -> dict[str, Any]:
        """Delete a group and its committed offsets (409 while consumers are in it)."""
        return service.delete_group(addon, group)

    @router.post("/addons/{addon}/fail", responses=_ERRORS, tags=["failure injection"])
    def fail(addon: str, body: schemas.FailIn) -> dict[str, Any]:
        """Make a partition lose its leader, or a broker drop its clients, for duration_s seconds."""
        return service.fail(addon, body.target, body.topic, body.partition, body.duration_s)
