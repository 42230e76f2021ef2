"""python -m examples.cart [--interactive] [--bootstrap HOST:PORT]

Without --bootstrap, the app of a platform add-on (KAFKA_URL and the other config vars set) uses the
add-on's topic `carts`, made beforehand with `eventyard kafka topics create carts --partitions 3`;
else a broker runs inside this process (EmbeddedBroker, in memory)."""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from contextlib import ExitStack

from eventyard.testing import EmbeddedBroker
from eventyard.toolkit import MissingTopic, config_from_env
from eventyard.toolkit.kafka import Config
from examples.cart.app import SCRIPT, USAGE, CartService, format_table, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.cart", description=__doc__)
    parser.add_argument("--bootstrap", help="a running Kafka cluster (default: an embedded broker)")
    parser.add_argument("--topic", help="the event topic (default: carts, or a fresh one on a cluster)")
    parser.add_argument("--interactive", "-i", action="store_true", help="read commands from standard input")
    args = parser.parse_args(argv)
    out = sys.stdout
    with ExitStack() as stack:
        config: Config
        if args.bootstrap:
            config = bootstrap = args.bootstrap
            topic = args.topic or f"carts-{uuid.uuid4().hex[:8]}"
        elif os.environ.get("KAFKA_URL"):  # a platform add-on's app: names get its prefix
            config = config_from_env()
            bootstrap = config["bootstrap.servers"]
            topic = args.topic or "carts"
        else:
            config = bootstrap = stack.enter_context(EmbeddedBroker(data_dir=None)).bootstrap
            topic = args.topic or "carts"
        print(f"Eventyard cart demo: broker {bootstrap}, topic {topic}", file=out)
        service = CartService(config, topic)
        stack.callback(service.close)
        if args.interactive:
            print(USAGE, file=out)
            run(service, sys.stdin, out, echo=not sys.stdin.isatty())
        else:
            run(service, SCRIPT.splitlines(), out, echo=True)
            print("\nThe log, the store of state:", file=out)
            print(service.format_log(), file=out)
            alice = service.carts.load("alice")
            before = service.carts.load("alice", at_offset=service.log.read("alice")[1].offset)
            print(f"\nalice now: {alice.items} (version {alice.version})", file=out)
            print(f"alice after her first two events: {before.items} (version {before.version})", file=out)
        print("\ncart_items, projected into SQLite:", file=out)
        print(format_table(service.table()), file=out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MissingTopic as missing:  # on a platform add-on: its topics are made through the platform
        sys.exit(f"error: {missing}")
