"""The demos' scenarios, as functions of a bootstrap address, so the same checks run on Eventyard's
broker (tests/toolkit) and on Apache Kafka (tests/reference). `bootstrap=None` lets a demo start its
own embedded broker, as a user running `python -m examples.cart` gets; with an address the demo is
run exactly as a user would point it at a cluster (`--bootstrap`), application code untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from eventyard.testing.pytest_plugin import wait_for
from eventyard.toolkit import RecordedEvent, Worker
from examples.orders.domain import OrderPlaced, events
from examples.orders.orders import OrdersService
from examples.orders.services import Email, Inventory, Shipping, subscribe

ROOT = Path(__file__).resolve().parents[2]

# The talk's slides: what cart_items holds after the scripted sequence.
CART_ITEMS_TABLE = (
    "cart_id | sku   | quantity\n--------+-------+---------\nalice   | socks | 3\nbob     | hat   | 1"
)


def run_demo(
    module: str, bootstrap: str | None, *args: str, stdin: str | None = None, timeout: float = 120
) -> str:
    """`python -m <module> [--bootstrap ...] args` from the repository root; returns its output."""
    where = ["--bootstrap", bootstrap] if bootstrap else []
    result = subprocess.run(
        [sys.executable, "-m", module, *where, *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def cart_demo_prints_cart_items(bootstrap: str | None) -> None:
    out = run_demo("examples.cart", bootstrap)
    assert "  rejected: shirt is not in the cart" in out
    assert "alice after her first two events: {'socks': 2, 'shirt': 1} (version 2)" in out
    assert out.rstrip().endswith(CART_ITEMS_TABLE)


def interactive_cart_demo_reads_commands(bootstrap: str | None) -> None:
    commands = (
        "add carol hat 2\nchange carol hat 0\nbogus\nremove carol hat\nadd carol socks 1\ntable\nquit\n"
    )
    out = run_demo("examples.cart", bootstrap, "--interactive", stdin=commands)
    assert "rejected: quantity must be positive, not 0" in out
    assert "commands: add CART SKU QUANTITY" in out
    assert out.rstrip().endswith("carol   | socks | 1")


def orders_demo_reaches_every_service(bootstrap: str | None) -> None:
    out = run_demo("examples.orders", bootstrap)
    for order in ["o-1001", "o-1002", "o-1003", "o-1004"]:
        assert f"orders: placed {order}" in out
        for service in ["inventory", "shipping", "email", "analytics"]:
            assert f"{service}: {order} " in out, (service, order)
    assert "inventory: o-1004 backordered 5 x hat" in out
    assert "email: o-1002 sent the confirmation to bob@example.com (attempt 2)" in out
    assert "units per sku since the first order: {'hat': 6, 'scarf': 1, 'socks': 5}" in out
    assert out.rstrip().endswith("Dead letters: 0")


def late_subscriber_gets_every_order(bootstrap: str, topic: str, timeout: float = 10.0) -> None:
    """Three services in their own groups handle every order; a fourth, added later in a group of
    its own, reads every order from the beginning, and the publisher is neither changed nor told."""
    orders = OrdersService(bootstrap, topic)
    publisher_before = vars(orders).copy()
    services = [Inventory({"socks": 100}), Shipping(), Email()]
    early = [orders.place_order("ann", "ann@example.com", "1 Main St", {"socks": n}) for n in range(1, 6)]
    seen: list[str] = []

    def audit(recorded: RecordedEvent) -> None:  # the fourth subscriber, written by another team
        assert isinstance(recorded.event, OrderPlaced)
        seen.append(recorded.event.order_id)

    try:
        with (
            subscribe(bootstrap, services[0], topic),
            subscribe(bootstrap, services[1], topic),
            subscribe(bootstrap, services[2], topic),
        ):
            wait_for(lambda: all(len(s.done) == 5 for s in services), timeout)
            with Worker(bootstrap, topic, "audit", audit, events):
                late = [
                    orders.place_order("ben", "ben@example.com", "2 Main St", {"socks": 1}) for _ in range(3)
                ]
                ids = {o.order_id for o in early + late}
                wait_for(lambda: set(seen) == ids and all(set(s.done) == ids for s in services), timeout)
    finally:
        orders.close()
    assert vars(orders) == publisher_before  # the publisher was not reconfigured, nor told
    assert sorted(seen) == sorted(ids)
