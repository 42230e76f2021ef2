"""`eventyard kafka`: a developer's daily commands against an add-on on the control plane.

ADDON is optional throughout: without it the command uses the one add-on of `--app`. `tail` and
`write` connect to the cluster with the app's own credentials (from the add-on's config) and add
the add-on's prefix to topic names, so that users type `orders`, not `acme-1234.orders`.
"""

from __future__ import annotations

import uuid

import click

from eventyard.cli.addons import echo_addon, wait_until_provisioned
from eventyard.cli.kafka_common import (
    Duration,
    app_option,
    echo_fields,
    echo_json,
    json_option,
    platform,
    platform_options,
    resolve_addon,
)
from eventyard.cli.kafka_format import (
    human_duration,
)
from eventyard.cli.kafka_topics import consumer_groups, topics
from eventyard.cli.platform_client import PlatformClient
from eventyard.kafka_env import bootstrap_servers, settings_from_env

addon_argument = click.argument("addon", required=False)

# Settings an app gets from the platform that are secrets.
_SECRETS = {"KAFKA_PASSWORD"}
_ORDER = ["KAFKA_URL", "KAFKA_PREFIX", "KAFKA_USERNAME", "KAFKA_PASSWORD"]


@click.group()
def kafka() -> None:
    """Work with a Kafka add-on: topics, groups, tail, write, credentials, failures."""


kafka.add_command(topics)
kafka.add_command(consumer_groups)


@kafka.command("info")
@addon_argument
@app_option()
@json_option
@platform_options
def info(addon: str | None, app: str | None, as_json: bool) -> None:
    """The plan, state, limits and usage, topics and attachments of ADDON."""
    with platform() as client:
        found = client.addon(resolve_addon(client, addon, app))
    if as_json:
        echo_json(found)
    else:
        echo_addon(found)


@kafka.command("wait")
@addon_argument
@app_option()
@click.option(
    "--timeout", type=Duration(), default="10m", show_default=True, help="How long to wait at most."
)
@platform_options
def wait(addon: str | None, app: str | None, timeout: float) -> None:
    """Wait until ADDON is provisioned (exit status 1 if provisioning failed)."""
    with platform() as client:
        name = resolve_addon(client, addon, app)
        wait_until_provisioned(client, name, timeout)
    click.echo(f"{name} is available.")


def _config_lines(config: dict[str, str], show_secrets: bool) -> list[tuple[str, str]]:
    lines = []
    for key in sorted(config, key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k)):
        value = config[key]
        if key in _SECRETS and not show_secrets:
            value = "(hidden: --show-secrets)"
        elif key == "KAFKA_TRUSTED_CERT":
            value = "(a CA certificate, PEM)" if not show_secrets else value
        lines.append((key, value))
    return lines


def _owner(client: PlatformClient, addon: str, app: str | None) -> str:
    """The app whose credential to use: the one given, or the add-on's owner."""
    if app:
        return app
    owner = client.addon(addon).get("app")
    if not owner:
        raise click.UsageError("give --app: the app whose credential to use")
    return str(owner)


@kafka.command("credentials")
@addon_argument
@app_option(help="The app whose credential it is (default: the add-on's owner; env: EVENTYARD_APP).")
@click.option(
    "--reset", is_flag=True, help="Rotate: a new credential; the old one works for the grace period."
)
@click.option(
    "--grace-period",
    type=Duration(),
    help="With --reset: how long the old credential keeps working (default: the platform's, 5 minutes).",
)
@click.option("--show-secrets", is_flag=True, help="Print the password too.")
@json_option
@platform_options
def credentials(
    addon: str | None,
    app: str | None,
    reset: bool,
    grace_period: float | None,
    show_secrets: bool,
    as_json: bool,
) -> None:
    """The settings an app uses to connect to ADDON's cluster, or --reset them."""
    if grace_period is not None and not reset:
        raise click.UsageError("--grace-period goes with --reset")
    with platform() as client:
        name = resolve_addon(client, addon, app)
        owner = _owner(client, name, app)
        if reset:
            grace = None if grace_period is None else round(grace_period)
            answer = client.rotate_credentials(name, owner, grace)
            config = answer.get("config") if isinstance(answer.get("config"), dict) else answer
            assert isinstance(config, dict)
        else:
            config = client.config(name, owner)
    shown = {str(k): str(v) for k, v in config.items() if isinstance(v, str | int)}
    if as_json:
        echo_json(dict(_config_lines(shown, show_secrets)))
        return
    if reset:
        grace_text = "the grace period" if grace_period is None else human_duration(grace_period * 1000)
        click.echo(
            f"Rotated the credential of {owner} on {name}: the old one keeps working for {grace_text}."
        )
    echo_fields(f"{name} credentials for {owner}", _config_lines(shown, show_secrets))


@kafka.command("fail")
@addon_argument
@app_option()
@click.option("--topic", help="The topic one of whose partitions loses its leader.")
@click.option("--partition", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--broker", is_flag=True, help="Make the broker drop every connection and stop listening.")
@click.option(
    "--duration", type=Duration(), default="30s", show_default=True, help="How long the failure lasts."
)
@platform_options
def fail(
    addon: str | None, app: str | None, topic: str | None, partition: int, broker: bool, duration: float
) -> None:
    """Rehearse a failure: a partition's leader, or a broker, goes away for a while.

    The cluster is shared: --broker disturbs every tenant, and the platform may refuse it.
    """
    if broker == (topic is not None):
        raise click.UsageError("give either --topic (and --partition) or --broker")
    with platform() as client:
        name = resolve_addon(client, addon, app)
        if broker:
            client.fail(name, "broker", duration)
            what = "The broker drops its connections and stops listening"
        else:
            assert topic is not None
            client.fail(name, "leader", duration, topic=topic, partition=partition)
            what = f"Partition {partition} of {topic} has no leader"
    click.echo(f"{what} for {duration:g}s; it then comes back by itself.")


def _connection(
    client: PlatformClient, addon: str | None, app: str | None
) -> tuple[str, str, tuple[str, ...]]:
    """(prefix, bootstrap, librdkafka settings) for connecting as the app."""
    name = resolve_addon(client, addon, app)
    config = client.config(name, _owner(client, name, app))
    if not bootstrap_servers(config.get("KAFKA_URL", "")):
        raise click.ClickException(
            f"{name} has no KAFKA_URL yet: is it provisioned? (`eventyard kafka wait`)"
        )
    # The same translation as the toolkit's config_from_env, as `--client-setting key=value` pairs.
    settings = settings_from_env(config)
    bootstrap = settings.pop("bootstrap.servers")
    return config.get("KAFKA_PREFIX", ""), bootstrap, tuple(f"{k}={v}" for k, v in settings.items())


@kafka.command("tail")
@click.argument("topic")
@addon_argument
@app_option(help="Read as this app (default: the add-on's owner; env: EVENTYARD_APP).")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest records (default: only new ones).")
@click.option("--partition", "-p", "partitions", multiple=True, type=click.IntRange(min=0))
@click.option("--max-messages", "-n", type=click.IntRange(min=1), help="Stop after this many records.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop after this long without a new record (default: follow until Ctrl-C).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["value", "full", "json"]),
    default="full",
    show_default=True,
)
@platform_options
@click.pass_context
def tail(
    ctx: click.Context,
    topic: str,
    addon: str | None,
    app: str | None,
    from_beginning: bool,
    partitions: tuple[int, ...],
    max_messages: int | None,
    timeout: float | None,
    output_format: str,
) -> None:
    """Print the records of TOPIC (named without the prefix) as they arrive."""
    from eventyard.cli.tail import tail as tail_command

    with platform() as client:
        prefix, bootstrap, settings = _connection(client, addon, app)
    # The throwaway group id carries the prefix too: the app's ACLs cover only its own groups.
    group = f"group.id={prefix}eventyard-tail-{uuid.uuid4().hex}"
    ctx.invoke(
        tail_command,
        topic=prefix + topic,
        from_beginning=from_beginning,
        partitions=partitions,
        offset=None,
        max_messages=max_messages,
        timeout=timeout,
        output_format=output_format,
        bootstrap_server=bootstrap,
        client_settings=(*settings, group),
    )


@kafka.command("write")
@click.argument("topic")
@click.argument("message")
@addon_argument
@app_option(help="Write as this app (default: the add-on's owner; env: EVENTYARD_APP).")
@click.option("--key", "-k", help="The record's key.")
@click.option(
    "--partition", "-p", type=click.IntRange(min=0), help="Send to this partition (default: by key)."
)
@platform_options
@click.pass_context
def write(
    ctx: click.Context,
    topic: str,
    message: str,
    addon: str | None,
    app: str | None,
    key: str | None,
    partition: int | None,
) -> None:
    """Write MESSAGE to TOPIC (named without the prefix)."""
    from eventyard.cli.produce import produce as produce_command

    with platform() as client:
        prefix, bootstrap, settings = _connection(client, addon, app)
    ctx.invoke(
        produce_command,
        topic=prefix + topic,
        values=(message,),
        key=key,
        key_separator=None,
        partition=partition,
        headers=(),
        acks="all",
        compression=None,
        bootstrap_server=bootstrap,
        client_settings=settings,
    )
