"""python -m examples.orders [--bootstrap HOST:PORT]

Without --bootstrap, the app of a platform add-on (KAFKA_URL and the other config vars set) uses the
add-on's topics `orders` and `orders.<service>.dead-letter` (inventory, shipping, email, analytics),
made beforehand with `eventyard kafka topics create`; else a broker runs inside this process."""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack

from eventyard.testing import EmbeddedBroker
from eventyard.toolkit import MissingTopic, Worker, config_from_env
from eventyard.toolkit.kafka import Config
from examples.orders.domain import describe
from examples.orders.orders import OrdersService
from examples.orders.services import Analytics, Email, Inventory, Service, Shipping, subscribe

ORDERS = [
    ("alice", "alice@example.com", "1 Rue de la Paix, Paris", {"socks": 2, "hat": 1}),
    ("bob", "bob@example.com", "10 Downing St, London", {"scarf": 1}),
    ("carol", "carol@example.com", "221B Baker St, London", {"socks": 3}),
    ("dave", "dave@example.com", "742 Evergreen Terrace", {"hat": 5}),
]


def wait_until_handled(services: Sequence[Service], orders: set[str], workers: Sequence[Worker]) -> None:
    deadline = time.monotonic() + 60
    while any(set(s.done) != orders for s in services):
        failed = [w.error for w in workers if w.error is not None]
        if failed:
            raise failed[0]
        if time.monotonic() > deadline:
            raise TimeoutError("the services did not handle every order in 60 s")
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.orders", description=__doc__)
    parser.add_argument("--bootstrap", help="a running Kafka cluster (default: an embedded broker)")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        config: Config
        if args.bootstrap:
            config = bootstrap = args.bootstrap
            topic = f"orders-{uuid.uuid4().hex[:8]}"
        elif os.environ.get("KAFKA_URL"):  # a platform add-on's app: names get its prefix
            config = config_from_env()
            bootstrap, topic = config["bootstrap.servers"], "orders"
        else:
            config = bootstrap = stack.enter_context(EmbeddedBroker(data_dir=None)).bootstrap
            topic = "orders"
        print(f"Eventyard orders demo: broker {bootstrap}, topic {topic}")
        orders = OrdersService(config, topic)
        stack.callback(orders.close)

        print("\n1. Three services subscribe, each in its own consumer group:")
        inventory = Inventory({"socks": 10, "hat": 3, "scarf": 1})
        services: list[Service] = [inventory, Shipping(), Email(flaky={"o-1002"})]
        workers = [stack.enter_context(subscribe(config, s, topic)) for s in services]
        print("   " + ", ".join(s.group for s in services))

        print("\n2. The orders service publishes OrderPlaced, and knows nothing of them:")
        placed = [orders.place_order(*order) for order in ORDERS]
        for order in placed:
            print(f"   orders: placed {order.order_id} for {order.customer}: {describe(order.items)}")

        wait_until_handled(services, {o.order_id for o in placed}, workers)
        print("\n3. What each service did:")
        for service in services:
            print("\n".join(service.report()))

        print("\n4. A new service subscribes later, in a group of its own; orders is not touched:")
        analytics = Analytics()
        workers.append(stack.enter_context(subscribe(config, analytics, topic)))
        wait_until_handled([analytics], {o.order_id for o in placed}, workers)
        print("\n".join(analytics.report()))
        units = dict(sorted(analytics.units.items()))
        print(f"analytics: units per sku since the first order: {units}")
        email = services[2]
        assert isinstance(email, Email)
        retried = sorted(order_id for order_id, attempts in email.attempts.items() if attempts > 1)
        print(f"\nRetried by the email worker after a timeout: {', '.join(retried) or 'none'}")
        print(f"Dead letters: {sum(w.dead_lettered for w in workers)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MissingTopic as missing:  # on a platform add-on: its topics are made through the platform
        sys.exit(f"error: {missing}")
