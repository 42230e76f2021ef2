"""The `eventyard` command: one command line over the broker and any Kafka cluster."""

from __future__ import annotations

import click

from eventyard.cli.serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eventyard")
def main() -> None:
    """Eventyard: a Kafka-compatible event streaming platform in Python."""


main.add_command(serve)

