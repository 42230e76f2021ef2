"""`eventyard addons`: create, list, upgrade, downgrade, attach, detach and destroy Kafka add-ons on
the control plane."""

from __future__ import annotations

import time

import click

from eventyard.cli.kafka_common import (
    Duration,
    app_option,
    echo_fields,
    echo_json,
    echo_table,
    json_option,
    platform,
    platform_options,
)
from eventyard.cli.kafka_format import (
    format_amount,
    human_duration,
    show,
    usage_label,
    usage_rows,
)
from eventyard.cli.platform_client import JSON, PlatformClient

_POLL_INTERVAL = 1.0


@click.group()
def addons() -> None:
    """Create, list, change the plan of, attach and destroy Kafka add-ons."""


@addons.command("plans")
@json_option
@platform_options
def plans(as_json: bool) -> None:
    """The plans an add-on can be created on."""
    with platform() as client:
        found = client.plans()
    if as_json:
        echo_json(found)
        return
    rows = [
        [
            show(plan.get("name")),
            format_amount("capacity_bytes", plan.get("capacity_bytes")),
            show(plan.get("max_topics")),
            show(plan.get("max_partitions")),
            format_amount("produce_byte_rate", plan.get("produce_byte_rate")),
            format_amount("consume_byte_rate", plan.get("consume_byte_rate")),
            human_duration(plan.get("retention_ms_max")),
            show(plan.get("compaction_allowed")),
        ]
        for plan in found
    ]
    header = ["PLAN", "CAPACITY", "TOPICS", "PARTITIONS", "PRODUCE", "CONSUME", "MAX RETENTION", "COMPACTION"]
    echo_table(header, rows, "No plans.")


@addons.command("create")
@app_option(required=True, help="The app that owns the add-on (env: EVENTYARD_APP).")
@click.option("--plan", required=True, metavar="PLAN", help="Such as basic-0 (see `eventyard addons plans`).")
@click.option("--name", help="The add-on's name (default: one is chosen).")
@click.option("--wait", "wait_", is_flag=True, help="Return once it is provisioned.")
@click.option(
    "--timeout", type=Duration(), default="10m", show_default=True, help="How long --wait waits at most."
)
@json_option
@platform_options
def create(app: str, plan: str, name: str | None, wait_: bool, timeout: float, as_json: bool) -> None:
    """Create a Kafka add-on for an app; it is attached to the app read-write."""
    with platform() as client:
        addon = client.create_addon(app, plan, name)
        if wait_:
            addon = wait_until_provisioned(client, str(addon["name"]), timeout, quiet=as_json)
    if as_json:
        echo_json(addon)
        return
    click.echo(f"Created {addon['name']} on {app} ({plan}): {addon.get('state', 'provisioning')}.")
    if addon.get("prefix"):
        click.echo(f"Topic and group names are prefixed with {addon['prefix']!r} for you.")
    if not wait_:
        click.echo(f"Run `eventyard kafka wait {addon['name']}` to wait until it is available.")


def wait_until_provisioned(client: PlatformClient, name: str, timeout: float, quiet: bool = False) -> JSON:
    """Poll the add-on until it is available; a failed or slow provisioning is an error."""
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        addon = client.addon(name)
        state = str(addon.get("state", ""))
        if state == "available":
            if announced:
                click.echo(" done.", err=True)
            return addon
        if state == "failed":
            if announced:
                click.echo(" failed.", err=True)
            reason = addon.get("reason") or addon.get("error") or "no reason given"
            raise click.ClickException(f"provisioning {name} failed: {reason}")
        if time.monotonic() >= deadline:
            raise click.ClickException(f"{name} is still {state or 'not ready'} after {timeout:g}s")
        if not announced and not quiet:
            click.echo(f"Waiting for {name} to be provisioned ({state})...", err=True, nl=False)
            announced = True
        time.sleep(_POLL_INTERVAL)


@addons.command("list")
@app_option(help="Only the add-ons of this app (env: EVENTYARD_APP).")
@json_option
@platform_options
def list_(app: str | None, as_json: bool) -> None:
    """The add-ons, with their plan and state."""
    with platform() as client:
        found = client.addons(app)
    if as_json:
        echo_json(found)
        return
    rows = [
        [
            show(a.get("name")),
            show(a.get("app")),
            show(a.get("plan")),
            show(a.get("state")),
            show(a.get("prefix")),
            ", ".join(_attachment_text(att) for att in a.get("attachments") or []) or "-",
        ]
        for a in found
    ]
    echo_table(["ADD-ON", "APP", "PLAN", "STATE", "PREFIX", "ATTACHED TO"], rows, "No add-ons.")


@addons.command("info")
@click.argument("addon")
@json_option
@platform_options
def info(addon: str, as_json: bool) -> None:
    """The state, limits and usage of ADDON (same as `eventyard kafka info ADDON`)."""
    with platform() as client:
        found = client.addon(addon)
    if as_json:
        echo_json(found)
    else:
        echo_addon(found)


def _attachment_text(attachment: JSON) -> str:
    return f"{attachment.get('app')} ({attachment.get('access', 'read-write')})"


def echo_addon(addon: JSON) -> None:
    """The `info` view of an add-on; never shows a secret."""
    topics = addon.get("topics") or []
    fields = [
        ("Plan", show(addon.get("plan"))),
        ("State", show(addon.get("state"))),
        ("App", show(addon.get("app"))),
        ("Prefix", show(addon.get("prefix"))),
    ]
    if addon.get("state") in ("failed", "deprovisioning") and (addon.get("reason") or addon.get("error")):
        fields.append(("Reason", show(addon.get("reason") or addon.get("error"))))
    if addon.get("created_at"):
        fields.append(("Created", show(addon.get("created_at"))))
    history = [h for h in addon.get("plan_history") or [] if isinstance(h, dict)]
    if history:
        last = history[-1]
        fields.append(
            ("Plan changed", f"{show(last.get('changed_at'))} (from {show(last.get('from_plan'))})")
        )
    for key, used, limit in usage_rows(addon):
        label = usage_label(key)
        if used is None and key.endswith("_rate"):
            fields.append((label, format_amount(key, limit)))
        else:
            fields.append((label, f"{format_amount(key, used)} of {format_amount(key, limit)}"))
    names = [str(t.get("name")) if isinstance(t, dict) else str(t) for t in topics]
    fields.append(("Topic names", ", ".join(names) if names else "none"))
    attachments = [_attachment_text(att) for att in addon.get("attachments") or [] if isinstance(att, dict)]
    fields.append(("Attachments", ", ".join(attachments) if attachments else "none"))
    echo_fields(str(addon.get("name")), fields)


@addons.command("destroy")
@click.argument("addon")
@click.option("--confirm", metavar="ADDON", help="The add-on's name again, to confirm without a prompt.")
@platform_options
def destroy(addon: str, confirm: str | None) -> None:
    """Destroy ADDON: its topics, data, credentials and attachments are deleted."""
    if confirm is None:
        click.echo(
            f"This deletes {addon} with all its topics and data, and revokes its credentials.", err=True
        )
        confirm = click.prompt("Type the add-on's name to confirm", err=True)
    if confirm != addon:
        raise click.ClickException(f"confirmation {confirm!r} does not match the add-on's name {addon!r}")
    with platform() as client:
        result = client.destroy_addon(addon)
    if result.get("state") == "deprovisioning":
        click.echo(
            f"Destroying {addon}: its credentials and topics are removed in the background once the "
            f"cluster answers again ({result.get('reason') or 'the cluster cannot be reached'}).\n"
            f"`eventyard addons info {addon}` shows its state until it is gone."
        )
        return
    click.echo(f"Destroyed {addon}.")


@addons.command("upgrade")
@click.argument("addon")
@click.argument("plan")
@json_option
@platform_options
def upgrade(addon: str, plan: str, as_json: bool) -> None:
    """Move ADDON to a bigger PLAN: every credential's rates and the add-on's limits change at once."""
    change_plan(addon, plan, "Upgraded", as_json)


@addons.command("downgrade")
@click.argument("addon")
@click.argument("plan")
@json_option
@platform_options
def downgrade(addon: str, plan: str, as_json: bool) -> None:
    """Move ADDON to a smaller PLAN. Refused, with what to change first, while its topics do not fit
    the plan (too many topics or partitions, retention outside its range, compaction it lacks)."""
    change_plan(addon, plan, "Downgraded", as_json)


def change_plan(addon: str, plan: str, verb: str, as_json: bool) -> None:
    with platform() as client:
        before = str(client.addon(addon).get("plan"))
        after = client.change_plan(addon, plan)
    if as_json:
        echo_json(after)
        return
    if before == plan:
        click.echo(f"{addon} is already on {plan}.")
        return
    limits = after.get("limits") if isinstance(after.get("limits"), dict) else {}
    click.echo(f"{verb} {addon} from {before} to {plan}.")
    if limits:
        produce = format_amount("produce_byte_rate", limits.get("produce_byte_rate"))
        consume = format_amount("consume_byte_rate", limits.get("consume_byte_rate"))
        click.echo(
            f"Each credential: produce {produce}, consume {consume}; "
            f"the add-on: {show(limits.get('max_topics'))} topics, "
            f"{show(limits.get('max_partitions'))} partitions, "
            f"{format_amount('capacity_bytes', limits.get('capacity_bytes'))}."
        )


@addons.command("attach")
@click.argument("addon")
@app_option(required=True, help="The app to attach it to (env: EVENTYARD_APP).")
@click.option(
    "--access",
    type=click.Choice(["read-write", "read-only"]),
    default="read-write",
    show_default=True,
    help="read-only: the app may read and describe the topics, not write to them.",
)
@platform_options
def attach(addon: str, app: str, access: str) -> None:
    """Give another app credentials for ADDON's topics."""
    with platform() as client:
        attachment = client.attach(addon, app, access)
    config = attachment.get("config") if isinstance(attachment.get("config"), dict) else {}
    user = attachment.get("username") or (config or {}).get("KAFKA_USERNAME")
    as_user = f" as user {user}" if user else ""
    click.echo(f"Attached {addon} to {app} ({access}){as_user}.")
    click.echo(f"Its settings: `eventyard kafka credentials {addon} --app {app}`.")


@addons.command("detach")
@click.argument("addon")
@app_option(required=True, help="The app to detach it from (env: EVENTYARD_APP).")
@platform_options
def detach(addon: str, app: str) -> None:
    """Take ADDON away from an app: its credential is deleted."""
    with platform() as client:
        client.detach(addon, app)
    click.echo(f"Detached {addon} from {app}.")
