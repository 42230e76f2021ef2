"""`eventyard serve`: run a broker until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

import click

from eventyard.broker.config import BrokerConfig
from eventyard.broker.server import Server


def _install_loop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def run(config: BrokerConfig, started: float) -> None:
    server = Server(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    where = "memory" if config.data_dir is None else str(config.data_dir)
    # One line that scripts and tests wait for: the broker is ready.
    elapsed = time.monotonic() - started
    print(f"eventyard ready on {config.host}:{server.port} (data: {where}) in {elapsed:.3f}s", flush=True)
    await stop.wait()
    logging.getLogger("eventyard").info("shutting down")
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
    config = BrokerConfig(
        host=host,
        port=port,
        advertised_host=advertised_host,
        data_dir=None if memory else data_dir,
        auto_create_topics=not no_auto_create,
        num_partitions=num_partitions,
        topic_defaults=defaults,
        housekeeping_interval_s=housekeeping_interval,
    )
    _install_loop()
    asyncio.run(run(config, started))
