"""`eventyard serve`: run a broker until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

import click

from eventyard.broker.config import BrokerConfig, Listener, ScramUser, TlsConfig
from eventyard.broker.server import Server
from eventyard.security.credentials import CredentialStore, Mechanism

log = logging.getLogger("eventyard")


def install_scram_users(store: CredentialStore, users: tuple[ScramUser, ...]) -> None:
    """--add-scram: each credential is set unless the store already holds it, so restarts with the
    same option keep the stored salt; a different password replaces the stored one."""
    for user in users:
        mechanism = Mechanism.from_sasl_name(user.mechanism)
        assert mechanism is not None  # ScramUser.parse checked it
        if store.ensure_password(user.name, mechanism, user.password, iterations=user.iterations):
            log.info("stored the %s credential of %s", user.mechanism, user.name)


def credential_file(data_dir: Path) -> Path:
    """Where a broker with this data directory keeps its SCRAM credentials."""
    return data_dir / "users.json"


def _install_loop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def run(config: BrokerConfig, started: float) -> None:
    server = Server(config)
    await server.start()
    if config.data_dir is None and server.broker is not None:
        # In memory there is no file to seed before the start: the listeners opened a moment ago,
        # but nobody has been told the broker is ready yet.
        install_scram_users(server.broker.credentials, config.scram_users)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    where = "memory" if config.data_dir is None else str(config.data_dir)
    # One line that scripts and tests wait for: the broker is ready.
    elapsed = time.monotonic() - started
    others = "".join(
        f" {protocol}={port}" for protocol, port in server.ports.items() if protocol != "PLAINTEXT"
    )
    listeners = f" (listeners:{others})" if others else ""
    print(
        f"eventyard ready on {config.host}:{server.port}{listeners} (data: {where}) in {elapsed:.3f}s",
        flush=True,
    )
    await stop.wait()
    log.info("shutting down")
    await server.stop()


@click.command()
@click.option(
    "--host", envvar="EVENTYARD_HOST", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "--port", envvar="EVENTYARD_PORT", default=9092, show_default=True, type=int, help="Port (0: any)."
)
@click.option(
    "--advertised-host", envvar="EVENTYARD_ADVERTISED_HOST", help="Host clients are told to connect to."
)
@click.option(
    "--data-dir",
    envvar="EVENTYARD_DATA_DIR",
    default="./data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the logs live.",
)
@click.option(
    "--memory", is_flag=True, envvar="EVENTYARD_MEMORY", help="Keep everything in memory (throwaway)."
)
@click.option(
    "--partitions", "num_partitions", default=1, show_default=True, help="Partitions of auto-created topics."
)
@click.option(
    "--no-auto-create",
    is_flag=True,
    envvar="EVENTYARD_NO_AUTO_CREATE",
    help="Do not create topics on first use.",
)
@click.option(
    "--config",
    "-c",
    "settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="A broker-wide topic config default, such as flush.messages=1 or retention.ms=3600000.",
)
@click.option(
    "--housekeeping-interval",
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="How often segments are rolled by time, retention applied, compaction and timed flushes run.",
)
@click.option(
    "--listener",
    "listeners",
    multiple=True,
    metavar="PROTOCOL://HOST:PORT",
    help="Another listener, PROTOCOL one of SASL_PLAINTEXT, SSL, SASL_SSL (repeatable; port 0: any).",
)
@click.option(
    "--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Server certificate."
)
@click.option(
    "--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Its private key."
)
@click.option(
    "--tls-ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Require client certificates signed by this CA (they become the principal on SSL listeners).",
)
@click.option(
    "--authorizer/--no-authorizer",
    default=False,
    show_default=True,
    envvar="EVENTYARD_AUTHORIZER",
    help="Enforce ACLs (CreateAcls/DeleteAcls): what no ACL allows is denied. Off: everything is allowed.",
)
@click.option(
    "--super-user",
    "super_users",
    multiple=True,
    metavar="PRINCIPAL",
    help="A principal that bypasses ACLs, such as User:admin or User:ANONYMOUS (repeatable).",
)
@click.option(
    "--add-scram",
    "scram_users",
    multiple=True,
    metavar="MECHANISM=[name=NAME,password=PASSWORD]",
    help="Store this SCRAM credential at start unless it is there already, such as "
    "'SCRAM-SHA-512=[name=admin,password=secret]' (repeatable; Kafka's format --add-scram syntax).",
)
@click.option("--log-level", default="INFO", show_default=True, envvar="EVENTYARD_LOG_LEVEL")
def serve(
    host: str,
    port: int,
    advertised_host: str | None,
    data_dir: Path,
    memory: bool,
    num_partitions: int,
    no_auto_create: bool,
    settings: tuple[str, ...],
    housekeeping_interval: float,
    listeners: tuple[str, ...],
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_ca: Path | None,
    authorizer: bool,
    super_users: tuple[str, ...],
    scram_users: tuple[str, ...],
    log_level: str,
) -> None:
    """Run a Kafka-compatible broker."""
    started = time.monotonic()
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from eventyard.broker.config import invalid_topic_config

    defaults: dict[str, str] = {}
    for setting in settings:
        name, sep, value = setting.partition("=")
        problem = invalid_topic_config(name, value) if sep else f"expected NAME=VALUE, got {setting!r}"
        if problem:
            raise click.BadParameter(problem, param_hint="--config")
        defaults[name] = value
    try:
        extra = tuple(Listener.parse(text) for text in listeners)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listener") from None
    tls = None
    if tls_cert or tls_key:
        if not (tls_cert and tls_key):
            raise click.BadParameter("give both --tls-cert and --tls-key", param_hint="--tls-cert")
        tls = TlsConfig(tls_cert, tls_key, tls_ca)
    if any(listener.tls for listener in extra) and tls is None:
        raise click.BadParameter("SSL listeners need --tls-cert and --tls-key", param_hint="--listener")
    for principal in super_users:
        kind, colon, name = principal.partition(":")
        if not (kind and colon and name):
            raise click.BadParameter(f"expected Type:name, got {principal!r}", param_hint="--super-user")
    try:
        bootstrap_users = tuple(ScramUser.parse(text) for text in scram_users)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--add-scram") from None
    if authorizer and not super_users:
        log.warning(
            "--authorizer without --super-user: only stored ACLs with ALTER on the cluster can manage ACLs"
        )
    elif super_users and not authorizer:
        log.warning("--super-user has no effect without --authorizer")
    config = BrokerConfig(
        host=host,
        port=port,
        advertised_host=advertised_host,
        data_dir=None if memory else data_dir,
        auto_create_topics=not no_auto_create,
        num_partitions=num_partitions,
        topic_defaults=defaults,
        housekeeping_interval_s=housekeeping_interval,
        listeners=extra,
        tls=tls,
        authorizer=authorizer,
        super_users=super_users,
        scram_users=bootstrap_users,
    )
    if bootstrap_users and config.data_dir is not None:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            install_scram_users(CredentialStore(credential_file(config.data_dir)), bootstrap_users)
        except ValueError as exc:  # an unreadable credential file
            raise click.ClickException(str(exc)) from None
    _install_loop()
    asyncio.run(run(config, started))
