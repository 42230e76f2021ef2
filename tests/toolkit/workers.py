"""Child processes of the toolkit tests: python -m tests.toolkit.workers COMMAND ARGS..."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from eventyard.toolkit import ConcurrencyConflict, KafkaEventLog, Projector, Repository
from examples.cart.domain import Cart, events
from tests.toolkit.helpers import AuditedCartItems


def project(bootstrap: str, topic: str, database: str, crash_after: str, delay: str) -> None:
    """Run the audited cart projection until SIGTERM (or the self-inflicted SIGKILL)."""
    projection = AuditedCartItems(int(crash_after) if crash_after != "-" else None, float(delay))
    config = {
        "bootstrap.servers": bootstrap,
        "group.instance.id": "projector-1",  # static member: a restart takes over at once (KIP-345)
        "session.timeout.ms": 6000,
    }
    projector = Projector(config, topic, projection, events, database, batch_size=50)
    signal.signal(signal.SIGTERM, lambda *_: projector.stop())
    print("running", flush=True)
    projector.run()
    projector.close()


def conflict(bootstrap: str, topic: str, index: str, barrier: str, sku: str) -> None:
    """Load alice's cart, wait until the other process loaded it too, then change the quantity."""
    log = KafkaEventLog(bootstrap, topic, events, index)
    carts = Repository(Cart, log)
    cart = carts.load("alice")
    Path(barrier, f"{sku}.loaded").touch()
    while len(list(Path(barrier).glob("*.loaded"))) < 2:
        time.sleep(0.005)
    cart.change_quantity("socks", 7 if sku == "a" else 9)
    try:
        carts.save(cart)
        print("saved", flush=True)
    except ConcurrencyConflict as error:
        print(f"conflict {error.expected} {error.actual}", flush=True)
    log.close()


if __name__ == "__main__":
    {"project": project, "conflict": conflict}[sys.argv[1]](*sys.argv[2:])
