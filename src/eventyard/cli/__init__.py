"""The `eventyard` command: one command line over the broker and any Kafka cluster."""

from __future__ import annotations

import importlib

import click

# Commands load on first use, so that `eventyard serve` starts without importing a Kafka client.
COMMANDS = {
    "serve": "eventyard.cli.serve:serve",
    "topics": "eventyard.cli.topics:topics",
    "produce": "eventyard.cli.produce:produce",
    "tail": "eventyard.cli.tail:tail",
    "groups": "eventyard.cli.groups:groups",
    "addons": "eventyard.cli.addons:addons",
    "kafka": "eventyard.cli.kafka:kafka",
    "platform": "eventyard.cli.platform:platform",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eventyard")
def main() -> None:
    """Eventyard: a Kafka-compatible event streaming platform in Python."""
