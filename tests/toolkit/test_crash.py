"""A projector killed with SIGKILL, mid-batch, against a broker in another process: after restarts the
table is exactly the fold of the whole log, with every event applied once."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from eventyard.testing import BrokerProcess
from eventyard.testing.pytest_plugin import wait_for
from eventyard.toolkit import connect, ensure_topic
from tests.toolkit.helpers import fold_of_log, produce_random_carts

ROOT = Path(__file__).resolve().parents[2]


def state(database: str) -> tuple[int, int, list[tuple[str, str, int]]]:
    """(events applied, sum of the stored next offsets, cart_items) as committed."""
    if database.startswith("sqlite:///"):
        # a plain read, not the projector's BEGIN IMMEDIATE: that would queue behind its writes
        with sqlite3.connect(database.removeprefix("sqlite:///"), timeout=30) as lite:
            if not lite.execute("SELECT 1 FROM sqlite_master WHERE name = 'applied'").fetchone():
                return 0, 0, []
            return _read(lite.execute)
    db = connect(database)
    try:
        with db.transaction() as tx:
            if not tx.query("SELECT 1 FROM information_schema.tables WHERE table_name = 'applied'"):
                return 0, 0, []
            return _read(tx.query)
    finally:
        db.close()


def _read(query: Callable[[str], Iterable[tuple[Any, ...]]]) -> tuple[int, int, list[tuple[str, str, int]]]:
    [(applied,)] = query("SELECT count(*) FROM applied")
    [(offsets,)] = query("SELECT coalesce(sum(next_offset), 0) FROM eventyard_projector_offsets")
    rows = query("SELECT cart_id, sku, quantity FROM cart_items ORDER BY cart_id, sku")
    return int(applied), int(offsets), [(c, s, int(q)) for c, s, q in rows]


def test_sigkill_mid_batch_then_restart(tmp_path: Path, database_url: str) -> None:
    with BrokerProcess(tmp_path / "data") as broker:
        topic = "carts"
        ensure_topic(broker.bootstrap, topic, partitions=3)
        total = produce_random_carts(broker.bootstrap, topic, 1500, seed=11)
        database = database_url

        def projector(crash_after: str = "-", delay: str = "0") -> subprocess.Popen[str]:
            args = ["project", broker.bootstrap, topic, database, crash_after, delay]
            return subprocess.Popen(
                [sys.executable, "-m", "tests.toolkit.workers", *args], cwd=ROOT, text=True
            )

        # 1. It kills itself inside the transaction that applies its 777th event.
        first = projector(crash_after="777")
        assert first.wait(60) == -signal.SIGKILL
        applied, offsets, _ = state(database)
        assert 0 < applied < 777 and applied == offsets  # the open batch vanished, rows and offsets alike

        # 2. Killed from outside while it works (slowly: 2 ms an event).
        second = projector(delay="0.002")
        wait_for(lambda: state(database)[0] > applied + 100, timeout=30)
        second.send_signal(signal.SIGKILL)
        second.wait(10)
        applied, offsets, _ = state(database)
        assert applied == offsets < total

        # 3. Restarted once more, it finishes the log.
        third = projector()
        try:
            wait_for(lambda: state(database)[0] == total, timeout=30)
        finally:
            third.terminate()
            assert third.wait(20) == 0
        applied, offsets, rows = state(database)
        assert applied == offsets == total  # every event once: the primary key refuses a second time
        assert rows == fold_of_log(broker.bootstrap, topic)
