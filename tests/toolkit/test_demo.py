"""The cart demo runs with one command from the repository root and prints the talk's table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_prints_cart_items() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.cart"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "  rejected: shirt is not in the cart" in out
    assert "alice after her first two events: {'socks': 2, 'shirt': 1} (version 2)" in out
    assert out.rstrip().endswith(
        "cart_id | sku   | quantity\n--------+-------+---------\nalice   | socks | 3\nbob     | hat   | 1"
    )


def test_the_interactive_demo_reads_commands() -> None:
    commands = (
        "add carol hat 2\nchange carol hat 0\nbogus\nremove carol hat\nadd carol socks 1\ntable\nquit\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "examples.cart", "--interactive"],
        cwd=ROOT,
        input=commands,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "rejected: quantity must be positive, not 0" in result.stdout
    assert "commands: add CART SKU QUANTITY" in result.stdout
    assert result.stdout.rstrip().endswith("carol   | socks | 1")
