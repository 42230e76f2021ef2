"""`eventyard groups` run for real against a broker process, with a real librdkafka consumer group."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner, Result
from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition

import eventyard.cli.groups as groups_module
from eventyard.cli import main
from eventyard.testing import BrokerProcess

pytestmark = pytest.mark.timeout(180)

# Records in each partition before the group's consumer reads, and after it has committed.
BEFORE = {0: 6, 1: 9, 2: 0}
AFTER = {0: 4, 1: 0, 2: 5}
ENDS = {p: BEFORE[p] + AFTER[p] for p in BEFORE}  # {0: 10, 1: 9, 2: 5}
CLIENT_ID = "groups-cli-test"


def cli(broker: BrokerProcess, *args: str, input: str | None = None, ok: bool = True) -> Result:
    """Run `eventyard ARGS -b BROKER` in-process."""
    result = CliRunner().invoke(main, [*args, "-b", broker.bootstrap], input=input)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def refused(result: Result, *texts: str) -> None:
    """Exit status 1 through click, with one line of error saying all of `texts`."""
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in texts:
        assert text in lines[0], lines[0]


def listed(broker: BrokerProcess, *args: str) -> dict[str, dict[str, Any]]:
    rows = json.loads(cli(broker, "groups", "list", "--json", *args).stdout)
    return {row["group"]: row for row in rows}


def described(broker: BrokerProcess, group: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(cli(broker, "groups", "describe", group, "--json").stdout)
    return info


def committed(broker: BrokerProcess, group: str, topic: str) -> dict[int, int | None]:
    """The group's committed offsets, read back by a consumer that does not join the group."""
    reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = reader.committed([TopicPartition(topic, p) for p in ENDS], timeout=10)
    finally:
        reader.close()
    return {tp.partition: tp.offset if tp.offset >= 0 else None for tp in found}


def ms_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Scenario:
    """A 3-partition topic and a group whose one consumer read all of BEFORE, committed, and stays live.

    Record n of each partition has timestamp base_ms + n seconds, for --to-datetime.
    """

    def __init__(self, broker: BrokerProcess, topic: str) -> None:
        self.broker, self.topic = broker, topic
        self.group = f"g-{uuid.uuid4().hex[:10]}"
        self.base_ms = int(time.time() * 1000) - 3_600_000
        self.consumer: Consumer | None = None

    def produce(self, counts: dict[int, int], first: dict[int, int]) -> None:
        producer = Producer({"bootstrap.servers": self.broker.bootstrap})
        for p, count in counts.items():
            for n in range(first[p], first[p] + count):
                producer.produce(self.topic, f"v{n}".encode(), partition=p, timestamp=self.base_ms + n * 1000)
        assert producer.flush(30) == 0

    def start(self) -> None:
        cli(self.broker, "topics", "create", self.topic, "--partitions", "3")
        self.produce(BEFORE, dict.fromkeys(BEFORE, 0))
        consumer = Consumer(
            {
                "bootstrap.servers": self.broker.bootstrap,
                "group.id": self.group,
                "client.id": CLIENT_ID,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.consumer = consumer
        consumer.subscribe([self.topic])
        read = 0
        deadline = time.monotonic() + 60
        while read < sum(BEFORE.values()):
            assert time.monotonic() < deadline, f"consumed {read} records"
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                read += 1
        consumer.commit(asynchronous=False)  # positions 6 and 9; nothing for the empty partition 2
        self.produce(AFTER, BEFORE)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()  # LeaveGroup: the group is Empty at once
            self.consumer = None


@pytest.fixture
def scenario(broker: BrokerProcess, topic_name: str) -> Iterator[Scenario]:
    s = Scenario(broker, topic_name)
    try:
        s.start()
        yield s
    finally:
        s.close()


def test_list_and_describe_while_live_then_after_close(broker: BrokerProcess, scenario: Scenario) -> None:
    group, topic = scenario.group, scenario.topic
    assert listed(broker)[group] == {
        "group": group,
        "state": "Stable",
        "protocol_type": "consumer",
        "members": 1,
    }
    assert group in listed(broker, "--state", "Stable")
    assert group in listed(broker, "--state", "stable", "--state", "Empty")  # case-insensitive, repeatable
    assert group not in listed(broker, "--state", "Empty")
    lines = cli(broker, "groups", "list").stdout.splitlines()
    assert lines[0].split() == ["GROUP", "STATE", "PROTOCOL-TYPE", "MEMBERS"]
    assert [group, "Stable", "consumer", "1"] in [line.split() for line in lines[1:]]

    info = described(broker, group)
    assert (info["group"], info["state"], info["protocol_type"], info["assignor"]) == (
        group,
        "Stable",
        "consumer",
        "range",
    )
    assert info["coordinator"]["port"] == broker.port
    [member] = info["members"]
    assert member["client_id"] == CLIENT_ID
    assert member["member_id"].startswith(CLIENT_ID)
    assert member["partitions"] == [{"topic": topic, "partition": p} for p in range(3)]
    owner = member["member_id"]
    assert info["partitions"] == [
        {
            "topic": topic,
            "partition": 0,
            "committed_offset": 6,
            "log_end_offset": 10,
            "lag": 4,
            "owner": owner,
        },
        {
            "topic": topic,
            "partition": 1,
            "committed_offset": 9,
            "log_end_offset": 9,
            "lag": 0,
            "owner": owner,
        },
        # Nothing committed: the lag counts from the log start, as the consumer would begin there.
        {
            "topic": topic,
            "partition": 2,
            "committed_offset": None,
            "log_end_offset": 5,
            "lag": 5,
            "owner": owner,
        },
    ]
    assert info["total_lag"] == 9

    text = cli(broker, "groups", "describe", group).stdout
    assert f"Group: {group}  State: Stable  Protocol type: consumer  Assignor: range" in text
    rows = [line.split() for line in text.splitlines()]
    assert [owner, CLIENT_ID, "127.0.0.1", f"{topic}:0,1,2"] in rows
    assert [topic, "2", "-", "5", "5", owner] in rows
    assert "Total lag: 9" in text

    scenario.close()
    assert listed(broker, "--state", "Empty")[group]["members"] == 0
    assert group not in listed(broker, "--state", "Stable")
    info = described(broker, group)
    assert (info["state"], info["members"], info["total_lag"]) == ("Empty", [], 4)
    # Without members only the committed offsets are left.
    assert info["partitions"] == [
        {
            "topic": topic,
            "partition": 0,
            "committed_offset": 6,
            "log_end_offset": 10,
            "lag": 4,
            "owner": None,
        },
        {"topic": topic, "partition": 1, "committed_offset": 9, "log_end_offset": 9, "lag": 0, "owner": None},
    ]
    text = cli(broker, "groups", "describe", group).stdout
    assert "State: Empty" in text and "Members: none" in text
    assert [topic, "0", "6", "10", "4", "-"] in [line.split() for line in text.splitlines()]


def test_describe_shows_which_member_owns_each_partition(broker: BrokerProcess, topic_name: str) -> None:
    group = f"g-{uuid.uuid4().hex[:10]}"
    cli(broker, "topics", "create", topic_name, "--partitions", "3")
    consumers = [
        Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "client.id": f"member-{i}"})
        for i in range(2)
    ]
    try:
        for consumer in consumers:
            consumer.subscribe([topic_name])
        deadline = time.monotonic() + 60
        while sum(len(c.assignment()) for c in consumers) != 3 or listed(broker)[group]["state"] != "Stable":
            assert time.monotonic() < deadline, "the group did not settle"
            for consumer in consumers:
                consumer.poll(0.2)
        info = described(broker, group)
        members = {m["client_id"]: m for m in info["members"]}
        assert sorted(members) == ["member-0", "member-1"]
        owners = {}
        for i, consumer in enumerate(consumers):
            member = members[f"member-{i}"]
            assigned = sorted(tp.partition for tp in consumer.assignment())
            assert [p["partition"] for p in member["partitions"]] == assigned
            owners.update(dict.fromkeys(assigned, member["member_id"]))
        # Nothing produced or committed: every partition is shown for its owner, with no lag.
        assert [
            (p["partition"], p["owner"], p["committed_offset"], p["lag"]) for p in info["partitions"]
        ] == [(p, owners[p], None, 0) for p in range(3)]
    finally:
        for consumer in consumers:
            consumer.close()


def test_reset_offsets_refused_while_active_then_applied(broker: BrokerProcess, scenario: Scenario) -> None:
    group, topic = scenario.group, scenario.topic
    before = {0: 6, 1: 9, 2: None}
    assert committed(broker, group, topic) == before
    result = cli(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", ok=False)
    refused(result, f"cannot reset the offsets of group {group!r}", "Stable with 1 member(s)", "stop its")
    assert committed(broker, group, topic) == before
    scenario.close()

    def reset(*args: str, input: str | None = None, ok: bool = True) -> Result:
        return cli(broker, "groups", "reset-offsets", group, "--topic", topic, *args, input=input, ok=ok)

    plan = reset("--to-earliest", "--dry-run").stdout.splitlines()
    assert plan[0].split() == ["TOPIC", "PARTITION", "CURRENT", "NEW"]
    assert [line.split() for line in plan[1:4]] == [
        [topic, "0", "6", "0"],
        [topic, "1", "9", "0"],
        [topic, "2", "-", "0"],
    ]
    assert "Dry run" in plan[4]
    assert committed(broker, group, topic) == before
    # Without --yes it asks; "no" changes nothing.
    assert reset("--to-earliest", input="n\n", ok=False).exit_code == 1
    assert committed(broker, group, topic) == before

    assert "Reset the offsets" in reset("--to-earliest", "--yes").stdout
    assert committed(broker, group, topic) == {0: 0, 1: 0, 2: 0}
    # Past the end of a log: its end.
    reset("--to-offset", "7", "--yes")
    assert committed(broker, group, topic) == {0: 7, 1: 7, 2: 5}
    # Only the partitions named; before the start: the start.
    cli(broker, "groups", "reset-offsets", group, "--topic", f"{topic}:0,1", "--shift-by", "-3", "--yes")
    assert committed(broker, group, topic) == {0: 4, 1: 4, 2: 5}
    cli(broker, "groups", "reset-offsets", group, "--topic", f"{topic}:1", "--shift-by", "-100", "--yes")
    assert committed(broker, group, topic) == {0: 4, 1: 0, 2: 5}
    # Record n has timestamp base + n s: the first at or after base + 2.5 s is offset 3 everywhere.
    reset("--to-datetime", ms_iso(scenario.base_ms + 2500), "--yes")
    assert committed(broker, group, topic) == {0: 3, 1: 3, 2: 3}
    # After every record: the end of each log.
    reset("--to-datetime", ms_iso(scenario.base_ms + 60_000), "--yes")
    assert committed(broker, group, topic) == ENDS
    reset("--to-earliest", "--yes")
    reset("--to-latest", "--yes")
    assert committed(broker, group, topic) == ENDS
    assert described(broker, group)["total_lag"] == 0
    # Still Empty: resetting did not make the group active.
    assert listed(broker)[group]["state"] == "Empty"


def test_reset_refused_by_the_broker_when_the_group_is_active(
    broker: BrokerProcess, scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer may join between the state check and the commit: the broker's refusal is explained."""
    monkeypatch.setattr(groups_module, "_IDLE", set(ConsumerGroupState))  # skip the state check
    group, topic = scenario.group, scenario.topic
    result = cli(
        broker, "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--yes", ok=False
    )
    refused(result, f"cannot reset the offsets of group {group!r}", "the group has active members")
    assert committed(broker, group, topic) == {0: 6, 1: 9, 2: None}


def test_delete_refused_while_active_then_deleted(broker: BrokerProcess, scenario: Scenario) -> None:
    group = scenario.group
    result = cli(broker, "groups", "delete", group, "--yes", ok=False)
    refused(result, f"cannot delete consumer group {group!r}", "active members")
    assert listed(broker)[group]["state"] == "Stable"
    scenario.close()
    # Without --yes it asks; "no" keeps the group.
    assert cli(broker, "groups", "delete", group, input="n\n", ok=False).exit_code == 1
    assert group in listed(broker)
    assert f"Deleted consumer group {group}." in cli(broker, "groups", "delete", group, "--yes").stdout
    assert group not in listed(broker)
    refused(cli(broker, "groups", "describe", group, ok=False), f"consumer group {group!r} does not exist")
    refused(
        cli(broker, "groups", "delete", group, "--yes", ok=False), f"consumer group {group!r} does not exist"
    )
    assert committed(broker, group, scenario.topic) == dict.fromkeys(ENDS)


def test_reset_offsets_of_a_new_group_creates_it(broker: BrokerProcess, topic_name: str) -> None:
    """Like Kafka's tool: offsets can be set up before any consumer of the group runs."""
    group = f"g-{uuid.uuid4().hex[:10]}"
    cli(broker, "topics", "create", topic_name, "--partitions", "3")
    cli(broker, "produce", topic_name, "a", "b", "c", "--partition", "1")
    refused(cli(broker, "groups", "describe", group, ok=False), "does not exist")
    cli(broker, "groups", "reset-offsets", group, "--topic", f"{topic_name}:1", "--to-offset", "2", "--yes")
    # No member ever joined: an empty protocol type.
    assert listed(broker)[group] == {"group": group, "state": "Empty", "protocol_type": "", "members": 0}
    info = described(broker, group)
    assert info["partitions"] == [
        {
            "topic": topic_name,
            "partition": 1,
            "committed_offset": 2,
            "log_end_offset": 3,
            "lag": 1,
            "owner": None,
        }
    ]
    # Offsets of a deleted topic stay; the log end and lag are then unknown.
    cli(broker, "topics", "delete", topic_name, "--yes")
    [partition] = described(broker, group)["partitions"]
    assert (partition["committed_offset"], partition["log_end_offset"], partition["lag"]) == (2, None, None)
    cli(broker, "groups", "delete", group, "--yes")


def test_bad_requests_fail_cleanly(broker: BrokerProcess, scenario: Scenario) -> None:
    scenario.close()
    group, topic = scenario.group, scenario.topic
    refused(cli(broker, "groups", "describe", "no-such-group", ok=False), "'no-such-group' does not exist")

    def reset(*args: str) -> Result:
        return cli(broker, "groups", "reset-offsets", group, *args, ok=False)

    refused(reset("--topic", f"{topic}:3", "--to-latest", "--yes"), f"topic {topic!r} has no partition 3")
    refused(reset("--topic", f"{topic}-missing", "--to-latest", "--yes"), "does not exist")
    # Shifting needs a committed offset; partition 2 has none.
    refused(reset("--topic", topic, "--shift-by", "1", "--yes"), f"no committed offset on {topic}:2")
    for usage in (
        ["--topic", topic],
        ["--topic", topic, "--to-earliest", "--to-latest"],
        ["--topic", f"{topic}:x", "--to-earliest"],
        ["--topic", topic, "--to-datetime", "yesterday"],
        ["--to-earliest"],
    ):
        assert reset(*usage).exit_code == 2, usage  # usage errors, caught before connecting
    assert committed(broker, group, topic) == {0: 6, 1: 9, 2: None}


def test_unreachable_broker_fails_fast() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for args in (["list"], ["describe", "g"]):  # each waits out the 10 s request timeout
        started = time.monotonic()
        result = CliRunner().invoke(main, ["groups", *args, "-b", f"127.0.0.1:{port}"])
        assert time.monotonic() - started < 15
        refused(result, "cannot connect to Kafka")
