"""The client-side commands (`topics`, `produce`, `tail`) run for real against a broker process."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from click.testing import CliRunner, Result

from eventyard.cli import main
from eventyard.testing import BrokerProcess

pytestmark = pytest.mark.timeout(120)

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def cli(broker: BrokerProcess, *args: str, input: str | None = None, ok: bool = True) -> Result:
    """Run `eventyard ARGS -b BROKER` in-process."""
    result = CliRunner().invoke(main, [*args, "-b", broker.bootstrap], input=input)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def failed_cleanly(result: Result) -> bool:
    """Exit status 1 through click (a message), not an exception escaping the command."""
    return result.exit_code == 1 and isinstance(result.exception, SystemExit)


def eventyard(*args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m eventyard ARGS` as a child process."""
    return subprocess.run(
        [sys.executable, "-m", "eventyard", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def tail_json(broker: BrokerProcess, topic: str, *args: str) -> list[dict[str, Any]]:
    # --timeout is a safety net: the tests expect tail to stop at --max-messages long before.
    result = cli(broker, "tail", topic, "--format", "json", "--timeout", "15", *args)
    return [json.loads(line) for line in result.stdout.splitlines()]


def topic_names(broker: BrokerProcess, *args: str) -> dict[str, int]:
    lines = cli(broker, "topics", "list", *args).stdout.splitlines()
    assert lines[0].split() == ["TOPIC", "PARTITIONS"]
    return {name: int(count) for name, count in (line.split() for line in lines[1:])}


def describe(broker: BrokerProcess, topic: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(cli(broker, "topics", "describe", topic, "--json").stdout)
    return info


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_topic_create_list_describe_delete(broker: BrokerProcess, topic_name: str) -> None:
    created = cli(
        broker, "topics", "create", topic_name, "--partitions", "3", "--config", "retention.ms=86400000"
    )
    assert topic_name in created.stdout
    assert topic_names(broker)[topic_name] == 3

    info = describe(broker, topic_name)
    assert info["topic"] == topic_name
    assert info["replication_factor"] == 1
    assert [p["partition"] for p in info["partitions"]] == [0, 1, 2]
    for partition in info["partitions"]:
        assert partition["leader"] >= 0
        assert partition["replicas"] == [partition["leader"]]
        assert partition["isr"] == [partition["leader"]]
        assert (partition["log_start_offset"], partition["log_end_offset"]) == (0, 0)
    configs = {c["name"]: c for c in info["configs"]}
    assert configs["retention.ms"]["value"] == "86400000"
    assert configs["retention.ms"]["source"] == "topic"

    text = cli(broker, "topics", "describe", topic_name).stdout
    assert f"Topic: {topic_name}  Partitions: 3  Replication factor: 1" in text
    assert "retention.ms=86400000" in text

    # Without --yes it asks, and "no" keeps the topic.
    refused = cli(broker, "topics", "delete", topic_name, input="n\n", ok=False)
    assert refused.exit_code == 1
    assert topic_name in topic_names(broker)

    assert "Deleted" in cli(broker, "topics", "delete", topic_name, "--yes").stdout
    assert topic_name not in topic_names(broker)
    assert failed_cleanly(cli(broker, "topics", "describe", topic_name, ok=False))


def test_list_hides_internal_topics_unless_all(broker: BrokerProcess, topic_name: str) -> None:
    internal = f"__{topic_name}"
    cli(broker, "topics", "create", internal, "--partitions", "1")
    cli(broker, "topics", "create", topic_name, "--partitions", "2")
    shown = topic_names(broker)
    assert shown[topic_name] == 2
    assert internal not in shown
    assert topic_names(broker, "--all")[internal] == 1
    cli(broker, "topics", "delete", internal, "--yes")  # the broker is shared with other tests


def test_produce_from_args_and_stdin_then_tail_json(broker: BrokerProcess, topic_name: str) -> None:
    cli(broker, "topics", "create", topic_name, "--partitions", "3")
    produced = cli(
        broker,
        "produce", topic_name, "a", "b", "c",
        "--key", "k1", "--partition", "1", "--header", "trace=abc", "--header", "source=cli",
    )  # fmt: skip
    assert f"{topic_name}: 3 delivered, 0 failed" in produced.stderr
    # Blank lines are skipped; only the first separator splits; values may be empty.
    stdin = "u1:hello\n\nu2:wor:ld\nu3:\n"
    produced = cli(
        broker,
        "produce",
        topic_name,
        "--key-separator",
        ":",
        "--partition",
        "2",
        "--acks",
        "all",
        input=stdin,
    )
    assert f"{topic_name}: 3 delivered, 0 failed" in produced.stderr

    records = tail_json(broker, topic_name, "--from-beginning", "--max-messages", "6")
    records.sort(key=lambda r: (r["partition"], r["offset"]))
    headers = [["trace", "abc"], ["source", "cli"]]
    assert [(r["partition"], r["offset"], r["key"], r["value"], r["headers"]) for r in records] == [
        (1, 0, "k1", "a", headers),
        (1, 1, "k1", "b", headers),
        (1, 2, "k1", "c", headers),
        (2, 0, "u1", "hello", []),
        (2, 1, "u2", "wor:ld", []),
        (2, 2, "u3", "", []),
    ]
    for record in records:
        assert record["topic"] == topic_name
        assert ISO_MS.match(record["timestamp"])
        assert abs(record["timestamp_ms"] / 1000 - time.time()) < 600

    ends = [p["log_end_offset"] for p in describe(broker, topic_name)["partitions"]]
    assert ends == [0, 3, 3]


def test_same_key_same_partition_and_compression(broker: BrokerProcess, topic_name: str) -> None:
    cli(broker, "topics", "create", topic_name, "--partitions", "3")
    lines = "".join(f"{i}\n" for i in range(20))
    produced = cli(broker, "produce", topic_name, "--key", "user-7", "--compression", "gzip", input=lines)
    assert "20 delivered, 0 failed" in produced.stderr
    records = tail_json(broker, topic_name, "--from-beginning", "--max-messages", "20")
    assert len({r["partition"] for r in records}) == 1
    assert [r["value"] for r in records] == [str(i) for i in range(20)]
    assert [r["offset"] for r in records] == list(range(20))


def test_tail_partition_offset_and_formats(broker: BrokerProcess, topic_name: str) -> None:
    cli(broker, "topics", "create", topic_name, "--partitions", "2")
    cli(broker, "produce", topic_name, "v0", "v1", "v2", "v3", "v4", "--partition", "0", "--key", "k")
    cli(broker, "produce", topic_name, "w0", "w1", "--partition", "1", "--header", "h=1")

    records = tail_json(broker, topic_name, "--partition", "0", "--offset", "3", "--max-messages", "2")
    assert [(r["partition"], r["offset"], r["value"]) for r in records] == [(0, 3, "v3"), (0, 4, "v4")]

    # A negative offset counts back from the end of each partition.
    records = tail_json(broker, topic_name, "-p", "0", "-p", "1", "--offset", "-1", "--max-messages", "2")
    assert sorted((r["partition"], r["offset"], r["value"]) for r in records) == [(0, 4, "v4"), (1, 1, "w1")]

    values = cli(broker, "tail", topic_name, "-p", "0", "--offset", "2", "-n", "3", "--timeout", "15")
    assert values.stdout == "v2\nv3\nv4\n"

    full = cli(broker, "tail", topic_name, "-p", "1", "--from-beginning", "-n", "1", "--format", "full")
    match = re.fullmatch(
        r"partition=1 offset=0 timestamp=(\S+) key=\(null\) value=w0 headers=h=1\n", full.stdout
    )
    assert match is not None, full.stdout
    assert ISO_MS.match(match.group(1))


def test_tail_timeout_stops_when_idle(broker: BrokerProcess, topic_name: str) -> None:
    cli(broker, "topics", "create", topic_name, "--partitions", "1")
    cli(broker, "produce", topic_name, "only")
    started = time.monotonic()
    result = cli(broker, "tail", topic_name, "--from-beginning", "--timeout", "2")
    assert result.stdout == "only\n"
    assert 2 <= time.monotonic() - started < 20


def test_subprocess_tail_starts_at_the_end(broker: BrokerProcess, topic_name: str) -> None:
    """`python -m eventyard`: tail without --from-beginning skips what was there and prints what comes."""
    bootstrap = ["--bootstrap-server", broker.bootstrap]
    created = eventyard("topics", "create", topic_name, "--partitions", "1", *bootstrap)
    assert created.returncode == 0, created.stderr
    produced = eventyard("produce", topic_name, *bootstrap, input="old-1\nold-2\n")
    assert produced.returncode == 0, produced.stderr
    assert "2 delivered, 0 failed" in produced.stderr

    tail = subprocess.Popen(
        [sys.executable, "-m", "eventyard", "tail", topic_name, "-n", "1", "--timeout", "30", *bootstrap],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # tail only learns where the end is once it has started; keep producing until it prints one.
        for i in range(40):
            if tail.poll() is not None:
                break
            cli(broker, "produce", topic_name, f"new-{i}")
            time.sleep(0.5)
        out, err = tail.communicate(timeout=30)
    finally:
        tail.kill()
    assert tail.returncode == 0, err
    assert re.fullmatch(r"new-\d+\n", out), out


def test_describe_missing_topic_fails_without_creating_it(broker: BrokerProcess, topic_name: str) -> None:
    # The broker auto-creates topics on metadata requests that allow it: describe must not.
    result = cli(broker, "topics", "describe", topic_name, ok=False)
    assert failed_cleanly(result)
    assert f"topic {topic_name!r} does not exist" in result.stderr
    assert topic_name not in topic_names(broker)
    tail = cli(broker, "tail", topic_name, "--timeout", "1", ok=False)
    assert failed_cleanly(tail)
    assert "does not exist" in tail.stderr
    assert topic_name not in topic_names(broker)


def test_create_with_invalid_config_fails(broker: BrokerProcess, topic_name: str) -> None:
    result = cli(broker, "topics", "create", topic_name, "--config", "retention.ms=soon", ok=False)
    assert failed_cleanly(result)
    assert f"cannot create topic {topic_name!r}" in result.stderr
    assert "retention.ms" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert topic_name not in topic_names(broker)

    malformed = cli(broker, "topics", "create", topic_name, "--config", "retention.ms", ok=False)
    assert malformed.exit_code == 2  # a usage error, caught before talking to the broker
    assert "expected KEY=VALUE" in malformed.stderr


def test_create_existing_topic_fails(broker: BrokerProcess, topic_name: str) -> None:
    cli(broker, "topics", "create", topic_name)
    again = cli(broker, "topics", "create", topic_name, ok=False)
    assert failed_cleanly(again)
    assert "already exists" in again.stderr.lower()


def test_unknown_partition_and_bad_lines_fail(broker: BrokerProcess, topic_name: str) -> None:
    cli(broker, "topics", "create", topic_name, "--partitions", "2")
    produce = cli(broker, "produce", topic_name, "x", "--partition", "5", ok=False)
    assert failed_cleanly(produce)
    assert "has no partition 5" in produce.stderr
    tail = cli(broker, "tail", topic_name, "--partition", "2", "--timeout", "1", ok=False)
    assert failed_cleanly(tail)
    assert "has no partition 2" in tail.stderr

    # A line without the separator is counted as failed; the others are still sent.
    mixed = cli(
        broker, "produce", topic_name, "--key-separator", "=", "-p", "0", input="a=1\nnope\nb=2\n", ok=False
    )
    assert failed_cleanly(mixed)
    assert "2 delivered, 1 failed (of 3)" in mixed.stderr
    assert "no key separator" in mixed.stderr
    assert [(r["key"], r["value"]) for r in tail_json(broker, topic_name, "--from-beginning", "-n", "2")] == [
        ("a", "1"),
        ("b", "2"),
    ]


def test_invalid_client_setting_fails(broker: BrokerProcess) -> None:
    result = cli(broker, "topics", "list", "-X", "no.such.setting=1", ok=False)
    assert failed_cleanly(result)
    assert "no.such.setting" in result.stderr


def test_bootstrap_from_environment(broker: BrokerProcess, topic_name: str) -> None:
    cli(broker, "topics", "create", topic_name)
    result = CliRunner().invoke(main, ["topics", "list"], env={"EVENTYARD_BOOTSTRAP": broker.bootstrap})
    assert result.exit_code == 0, result.output
    assert topic_name in result.stdout


def test_unreachable_broker_fails_fast_subprocess() -> None:
    started = time.monotonic()
    result = eventyard("topics", "list", "-b", f"127.0.0.1:{closed_port()}", timeout=30)
    assert time.monotonic() - started < 15
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot connect to Kafka" in lines[0]
    assert result.stdout == ""


def test_unreachable_broker_produce_fails_fast() -> None:
    started = time.monotonic()
    args = ["produce", "t", "x", "-b", f"127.0.0.1:{closed_port()}"]
    result = CliRunner().invoke(main, args)
    assert time.monotonic() - started < 15
    assert failed_cleanly(result)
    assert "cannot connect to Kafka" in result.stderr


def test_describe_shows_size_on_disk_and_config_changes(broker: BrokerProcess, topic_name: str) -> None:
    runner = CliRunner()
    base = ["-b", broker.bootstrap]
    assert runner.invoke(main, ["topics", "create", topic_name, "--partitions", "2", *base]).exit_code == 0
    assert runner.invoke(main, ["produce", topic_name, "--partition", "1", "a" * 500, *base]).exit_code == 0
    result = runner.invoke(main, ["topics", "describe", topic_name, "--json", *base])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    sizes = {p["partition"]: p["size_bytes"] for p in info["partitions"]}
    assert sizes[0] == 0 and sizes[1] > 500
    assert [p["segments"] for p in info["partitions"]] == [1, 1]
    table = runner.invoke(main, ["topics", "describe", topic_name, *base]).output
    assert "SEGMENTS" in table
    result = runner.invoke(
        main,
        [
            "topics",
            "config",
            topic_name,
            "--set",
            "retention.ms=1234",
            "--set",
            "cleanup.policy=compact",
            *base,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "retention.ms=1234  [topic]" in result.output
    assert "cleanup.policy=compact  [topic]" in result.output
    result = runner.invoke(main, ["topics", "config", topic_name, "--delete", "retention.ms", *base])
    assert "retention.ms=604800000  [default]" in result.output
    result = runner.invoke(main, ["topics", "config", topic_name, "--set", "retention.ms=soon", *base])
    assert result.exit_code == 1 and "retention.ms" in result.output
