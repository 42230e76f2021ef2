"""The orders demo: one command runs it, every service handles every order, and a subscriber added
later reads every order from the beginning while the publisher stays as it is."""

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


def test_the_demo_runs_and_every_service_handles_every_order() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.orders"], cwd=ROOT, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for order in ["o-1001", "o-1002", "o-1003", "o-1004"]:
        assert f"orders: placed {order}" in out
        for service in ["inventory", "shipping", "email", "analytics"]:
            assert f"{service}: {order} " in out, (service, order)
    assert "inventory: o-1004 backordered 5 x hat" in out
    assert "email: o-1002 sent the confirmation to bob@example.com (attempt 2)" in out
    assert "units per sku since the first order: {'hat': 6, 'scarf': 1, 'socks': 5}" in out
    assert out.rstrip().endswith("Dead letters: 0")


def test_a_subscriber_added_later_gets_every_order_without_touching_the_publisher(
    eventyard_bootstrap: str, eventyard_topic: str
) -> None:
    orders = OrdersService(eventyard_bootstrap, eventyard_topic)
    publisher_before = vars(orders).copy()
    services = [Inventory({"socks": 100}), Shipping(), Email()]
    early = [orders.place_order("ann", "ann@example.com", "1 Main St", {"socks": n}) for n in range(1, 6)]
    seen: list[str] = []

    def audit(recorded: RecordedEvent) -> None:  # the fourth subscriber, written by another team
        assert isinstance(recorded.event, OrderPlaced)
        seen.append(recorded.event.order_id)

    try:
        with (
            subscribe(eventyard_bootstrap, services[0], eventyard_topic),
            subscribe(eventyard_bootstrap, services[1], eventyard_topic),
            subscribe(eventyard_bootstrap, services[2], eventyard_topic),
        ):
            wait_for(lambda: all(len(s.done) == 5 for s in services))
            with Worker(eventyard_bootstrap, eventyard_topic, "audit", audit, events):
                late = [
                    orders.place_order("ben", "ben@example.com", "2 Main St", {"socks": 1}) for _ in range(3)
                ]
                ids = {o.order_id for o in early + late}
                wait_for(lambda: set(seen) == ids and all(set(s.done) == ids for s in services))
    finally:
        orders.close()
    assert vars(orders) == publisher_before  # the publisher was not reconfigured, nor told
    assert sorted(seen) == sorted(ids)
