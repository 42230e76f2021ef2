"""`eventyard platform`: the control plane. `serve` runs its HTTP API with uvicorn."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click


@click.group()
def platform() -> None:
    """The control plane: Kafka add-ons on a shared cluster."""


@platform.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API listens on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port of the API (0: any).")
@click.option(
    "--db",
    envvar="EVENTYARD_PLATFORM_DB",
    default="sqlite:///platform.db",
    show_default=True,
    help="The control plane's store: sqlite:///file.db or postgresql://...",
)
@click.option("--token", envvar="EVENTYARD_PLATFORM_TOKEN", help="Operator bearer token (default: printed).")
@click.option(
    "--bootstrap",
    envvar="EVENTYARD_PLATFORM_BOOTSTRAP",
    default="127.0.0.1:9092",
    show_default=True,
    help="The control plane's own connection to the cluster (host:port,...).",
)
@click.option("--admin-user", envvar="EVENTYARD_PLATFORM_ADMIN_USER", help="SCRAM user of the control plane.")
@click.option("--admin-password", envvar="EVENTYARD_PLATFORM_ADMIN_PASSWORD", help="Its password.")
@click.option(
    "--admin-security-protocol",
    envvar="EVENTYARD_PLATFORM_ADMIN_SECURITY_PROTOCOL",
    help="PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL (default: SASL_* with an admin user).",
)
@click.option(
    "--app-bootstrap",
    envvar="EVENTYARD_PLATFORM_APP_BOOTSTRAP",
    help="The bootstrap list apps get as KAFKA_URL (default: --bootstrap).",
)
@click.option(
    "--app-security-protocol",
    envvar="EVENTYARD_PLATFORM_APP_SECURITY_PROTOCOL",
    help="SASL_PLAINTEXT or SASL_SSL (default: SASL_SSL with --ca-file).",
)
@click.option(
    "--ca-file",
    envvar="EVENTYARD_PLATFORM_CA_FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The cluster's CA certificate: trusted by the control plane, given to apps.",
)
@click.option("--log-level", default="INFO", show_default=True)
def serve(
    host: str,
    port: int,
    db: str,
    token: str | None,
    bootstrap: str,
    admin_user: str | None,
    admin_password: str | None,
    admin_security_protocol: str | None,
    app_bootstrap: str | None,
    app_security_protocol: str | None,
    ca_file: Path | None,
    log_level: str,
) -> None:
    """Run the control plane's HTTP API (OpenAPI at /openapi.json)."""
    import uvicorn

    from eventyard.platform.api import create_app
    from eventyard.platform.settings import Settings

    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env(
            token=token,
            db_url=db,
            bootstrap=bootstrap,
            admin_user=admin_user,
            admin_password=admin_password,
            admin_security_protocol=admin_security_protocol,
            app_bootstrap=app_bootstrap,
            app_security_protocol=app_security_protocol,
            ca_file=ca_file,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if token is None:
        click.echo(f"operator token: {settings.token}", err=True)
    config = uvicorn.Config(create_app(settings), host=host, port=port, log_level=log_level.lower())
    server = uvicorn.Server(config)
    server.run()


@platform.command()
@click.option(
    "--data-dir",
    default="./platform-data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The broker's logs, the control plane's store and the generated secrets.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address of the dashboard and API.")
@click.option(
    "--port", default=8080, show_default=True, type=int, help="Port of the dashboard and API (0: any)."
)
@click.option("--kafka-host", default="127.0.0.1", show_default=True, help="Address of the SASL listener.")
@click.option(
    "--kafka-port", default=9092, show_default=True, type=int, help="Port of the SASL listener (0: any)."
)
@click.option(
    "--token",
    envvar="EVENTYARD_PLATFORM_TOKEN",
    help="Operator token (default: generated, kept in --data-dir).",
)
@click.option("--log-level", default="INFO", show_default=True)
def up(
    data_dir: Path, host: str, port: int, kafka_host: str, kafka_port: int, token: str | None, log_level: str
) -> None:
    """A local platform in one command: a broker (SASL/SCRAM, ACLs on) and the control plane with its
    dashboard, until Ctrl-C or SIGTERM. Restarting on the same --data-dir keeps everything."""
    from eventyard.cli.platform_up import Up

    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        Up(data_dir, host, port, kafka_host, kafka_port, token, log_level.lower()).run()
    except (OSError, ValueError) as exc:  # a port in use, an unreadable data directory
        raise click.ClickException(str(exc)) from None
