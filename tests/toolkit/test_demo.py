"""The cart demo runs with one command from the repository root and prints the talk's table."""

from __future__ import annotations

from tests.toolkit.demo_scenarios import cart_demo_prints_cart_items, interactive_cart_demo_reads_commands


def test_the_demo_prints_cart_items() -> None:
    cart_demo_prints_cart_items(bootstrap=None)  # an embedded broker, started by the demo itself


def test_the_interactive_demo_reads_commands() -> None:
    interactive_cart_demo_reads_commands(bootstrap=None)
