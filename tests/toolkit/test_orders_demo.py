"""The orders demo: one command runs it, every service handles every order, and a subscriber added
later reads every order from the beginning while the publisher stays as it is."""

from __future__ import annotations

from tests.toolkit.demo_scenarios import late_subscriber_gets_every_order, orders_demo_reaches_every_service


def test_the_demo_runs_and_every_service_handles_every_order() -> None:
    orders_demo_reaches_every_service(bootstrap=None)  # an embedded broker, started by the demo itself


def test_a_subscriber_added_later_gets_every_order_without_touching_the_publisher(
    eventyard_bootstrap: str, eventyard_topic: str
) -> None:
    late_subscriber_gets_every_order(eventyard_bootstrap, eventyard_topic)
