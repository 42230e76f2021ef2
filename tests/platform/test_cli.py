"""`eventyard addons` and `eventyard kafka` driven for real: a broker process with a SASL listener and
the ACL authorizer, the control plane served by uvicorn on a free port, and the CLI in-process
(CliRunner) or as a child process. `kafka tail` and `kafka write` connect with the app's SCRAM
credential, through the prefixed ACLs the control plane installed."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner, Result
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from eventyard.cli import main
from eventyard.platform.api import create_app
from eventyard.platform.settings import Settings
from eventyard.testing import BrokerProcess
from tests.platform.conftest import ADMIN_PASSWORD, TOKEN, make_settings, sasl_bootstrap

pytestmark = pytest.mark.timeout(240)

ADDON = "kafka-cli-test"
APP = "shop"


class PlatformServer:
    """The control plane's app served by uvicorn in a thread, on a free port."""

    def __init__(self, settings: Settings) -> None:
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="platform", daemon=True)

    def __enter__(self) -> PlatformServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the platform did not start"
            time.sleep(0.05)
        return self

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


# librdkafka reports failed authentications through its logger: keep them out of the test output.
_QUIET = logging.getLogger("tests.platform.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def admin(broker: BrokerProcess) -> AdminClient:
    return AdminClient(admin_conf(broker), logger=_QUIET)


def admin_conf(broker: BrokerProcess) -> dict[str, Any]:
    """The platform's own super user, to look at the cluster behind the CLI's back."""
    return {
        "bootstrap.servers": sasl_bootstrap(broker),
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "admin",
        "sasl.password": ADMIN_PASSWORD,
    }


@pytest.fixture(scope="module")
def broker(secure_broker: BrokerProcess) -> BrokerProcess:
    return secure_broker


@pytest.fixture(scope="module")
def platform(broker: BrokerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformServer]:
    db = tmp_path_factory.mktemp("cli-platform") / "platform.db"
    with PlatformServer(make_settings(broker, f"sqlite:///{db}", reap_interval_s=0.5)) as server:
        yield server


Cli = Callable[..., Result]


@pytest.fixture(scope="module")
def cli(platform: PlatformServer) -> Cli:
    def run(*args: str, ok: bool = True, input: str | None = None, token: str = TOKEN) -> Result:
        env = {
            "EVENTYARD_PLATFORM_URL": platform.url,
            "EVENTYARD_PLATFORM_TOKEN": token,
            "EVENTYARD_APP": None,
        }
        result = CliRunner().invoke(main, list(args), env=env, input=input)
        if ok:
            assert result.exit_code == 0, f"{args}: {result.output}"
        return result

    return run


@pytest.fixture(scope="module")
def addon(cli: Cli) -> str:
    created = cli("addons", "create", "--app", APP, "--plan", "basic-1", "--name", ADDON)
    assert f"Created {ADDON} on {APP} (basic-1)" in created.output
    assert "prefixed with" in created.output
    waited = cli("kafka", "wait", ADDON, "--timeout", "60s")
    assert f"{ADDON} is available." in waited.output
    return ADDON


def failed_cleanly(result: Result, *fragments: str) -> bool:
    """Exit status 1 with a message (no traceback), mentioning each fragment."""
    clean = result.exit_code == 1 and isinstance(result.exception, SystemExit)
    return clean and "Traceback" not in result.output and all(f in result.output for f in fragments)


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def prefix_of(cli: Cli, name: str) -> str:
    prefix = as_json(cli("kafka", "info", name, "--json"))["prefix"]
    assert isinstance(prefix, str) and prefix
    return prefix


# -- errors


def test_unreachable_platform_is_one_line(cli: Cli) -> None:
    result = CliRunner().invoke(main, ["addons", "list", "--platform-url", "http://127.0.0.1:9"])
    assert failed_cleanly(result, "cannot reach the platform at http://127.0.0.1:9")


def test_wrong_token_and_unknown_addon_are_clear_errors(cli: Cli) -> None:
    assert failed_cleanly(cli("addons", "list", token="wrong", ok=False), "token")
    assert failed_cleanly(cli("kafka", "info", "kafka-nope", ok=False), "kafka-nope")
    assert failed_cleanly(cli("addons", "create", "--app", APP, "--plan", "gold-9", ok=False), "gold-9")
    # Without an add-on or an app there is nothing to work on: a usage error (exit 2).
    result = cli("kafka", "topics", "list", ok=False)
    assert result.exit_code == 2 and "--app" in result.output


# -- add-ons


def test_plans_and_addon_listing(cli: Cli, addon: str) -> None:
    plans = cli("addons", "plans").output
    assert plans.splitlines()[0].split()[:3] == ["PLAN", "CAPACITY", "TOPICS"]
    assert "basic-0" in plans and "basic-2" in plans

    listed = {a["name"]: a for a in as_json(cli("addons", "list", "--json"))}
    assert listed[addon]["state"] == "available" and listed[addon]["app"] == APP
    table = cli("addons", "list", "--app", APP).output
    assert addon in table and "available" in table and f"{APP} (read-write)" in table

    info = cli("kafka", "info", "--app", APP).output  # the app's only add-on
    assert f"=== {addon}" in info
    assert "Plan:" in info and "basic-1" in info and "available" in info
    assert "Partitions:" in info and "of 480" in info  # usage against the plan's limit


def test_topics_through_the_control_plane(cli: Cli, addon: str, broker: BrokerProcess) -> None:
    created = cli("kafka", "topics", "create", "orders", addon, "--partitions", "2", "--retention-time", "1d")
    prefix = prefix_of(cli, addon)
    assert f"{prefix}orders on the cluster" in created.output
    # The topic exists on the cluster under its prefixed name.
    metadata = admin(broker).list_topics(timeout=10)
    assert len(metadata.topics[f"{prefix}orders"].partitions) == 2

    lines = cli("kafka", "topics", "list", "--app", APP).output.splitlines()
    assert lines[0].split() == ["TOPIC", "PARTITIONS", "RETENTION", "COMPACTION", "SIZE"]
    assert lines[1].split()[:4] == ["orders", "2", "1d", "no"]

    cli("kafka", "topics", "retention-time", "orders", "36h", addon)
    cli("kafka", "topics", "compaction", "orders", "enable", addon)
    cli("kafka", "topics", "partitions", "orders", "3", addon)
    info = as_json(cli("kafka", "topics", "info", "orders", addon, "--json"))
    assert (info["retention_ms"], info["compaction"], info["partitions"]) == (36 * 3600 * 1000, True, 3)
    shown = cli("kafka", "topics", "info", "orders", addon).output
    assert "36h" in shown and f"{prefix}orders" in shown

    # Beyond the plan: a clean error, not a traceback; partitions only go up.
    assert failed_cleanly(cli("kafka", "topics", "retention-time", "orders", "1s", addon, ok=False))
    assert failed_cleanly(cli("kafka", "topics", "partitions", "orders", "1", addon, ok=False))


def test_write_and_tail_apply_the_prefix(cli: Cli, addon: str) -> None:
    cli("kafka", "topics", "create", "greetings", addon, "--partitions", "1")
    written = cli("kafka", "write", "greetings", "hello, events", addon, "--key", "k1")
    prefix = prefix_of(cli, addon)
    assert f"{prefix}greetings: 1 delivered, 0 failed" in written.output
    tailed = cli(
        "kafka",
        "tail",
        "greetings",
        addon,
        "--from-beginning",
        "-n",
        "1",
        "--timeout",
        "30",
        "--format",
        "json",
    )
    record = json.loads(tailed.stdout.splitlines()[0])
    assert (record["topic"], record["key"], record["value"]) == (f"{prefix}greetings", "k1", "hello, events")

    # A topic the control plane did not make does not exist for the app (no auto-creation, no ACL).
    assert failed_cleanly(cli("kafka", "write", "nowhere", "x", addon, ok=False))


def test_read_only_attachment(cli: Cli, addon: str) -> None:
    cli("kafka", "topics", "create", "audit", addon, "--partitions", "1")
    cli("kafka", "write", "audit", "first", addon)
    attached = cli("addons", "attach", addon, "--app", "reports", "--access", "read-only")
    assert f"Attached {addon} to reports (read-only) as user" in attached.output

    tailed = cli(
        "kafka", "tail", "audit", addon, "--app", "reports", "--from-beginning", "-n", "1", "--timeout", "30"
    )
    assert "value=first" in tailed.stdout
    refused = cli("kafka", "write", "audit", "second", addon, "--app", "reports", ok=False)
    assert refused.exit_code == 1 and "not delivered" in refused.output

    cli("addons", "detach", addon, "--app", "reports")
    assert failed_cleanly(cli("kafka", "credentials", addon, "--app", "reports", ok=False), "reports")


def test_consumer_groups(cli: Cli, addon: str) -> None:
    assert "billing" not in cli("kafka", "consumer-groups", "list", addon).output
    created = cli("kafka", "consumer-groups", "create", "billing", addon)
    assert f"{prefix_of(cli, addon)}billing on the cluster" in created.output
    lines = cli("kafka", "consumer-groups", "list", addon).output.splitlines()
    assert lines[0].split()[0] == "GROUP" and any(line.split()[0] == "billing" for line in lines[1:])
    assert "billing" in [g["name"] for g in as_json(cli("kafka", "consumer-groups", "list", addon, "--json"))]
    cli("kafka", "consumer-groups", "destroy", "billing", addon)
    assert "billing" not in cli("kafka", "consumer-groups", "list", addon).output


def sasl_works(bootstrap: str, username: str, password: str) -> bool:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": username,
            "sasl.password": password,
            "logger": _QUIET,
        }
    )
    try:
        producer.list_topics(timeout=5)
        return True
    except KafkaException:
        return False


def test_credentials_and_reset(cli: Cli, addon: str) -> None:
    shown = cli("kafka", "credentials", addon).output
    assert "KAFKA_USERNAME" in shown and "(hidden: --show-secrets)" in shown
    before = as_json(cli("kafka", "credentials", addon, "--json", "--show-secrets"))
    assert before["KAFKA_PASSWORD"] not in shown
    assert sasl_works(before["KAFKA_URL"], before["KAFKA_USERNAME"], before["KAFKA_PASSWORD"])

    reset = cli("kafka", "credentials", addon, "--reset", "--grace-period", "0s", "--json", "--show-secrets")
    after = as_json(reset)
    assert after["KAFKA_USERNAME"] != before["KAFKA_USERNAME"]
    assert after["KAFKA_PASSWORD"] != before["KAFKA_PASSWORD"]
    assert sasl_works(after["KAFKA_URL"], after["KAFKA_USERNAME"], after["KAFKA_PASSWORD"])
    # No grace period: the old credential is gone at once.
    assert not sasl_works(before["KAFKA_URL"], before["KAFKA_USERNAME"], before["KAFKA_PASSWORD"])
    # tail and write pick up the new credential from the platform.
    cli("kafka", "topics", "create", "after-reset", addon, "--partitions", "1")
    cli("kafka", "write", "after-reset", "still here", addon)

    assert (
        cli("kafka", "credentials", addon, "--grace-period", "5m", ok=False).exit_code == 2
    )  # needs --reset


def leader_of(broker: BrokerProcess, topic: str, partition: int) -> int:
    metadata = admin(broker).list_topics(topic, timeout=10)
    leader: int = metadata.topics[topic].partitions[partition].leader
    return leader


def test_fail_a_partition_leader_for_a_while(cli: Cli, addon: str, broker: BrokerProcess) -> None:
    cli("kafka", "topics", "create", "rehearsal", addon, "--partitions", "2")
    full = prefix_of(cli, addon) + "rehearsal"
    assert leader_of(broker, full, 0) >= 0
    failed = cli("kafka", "fail", addon, "--topic", "rehearsal", "--partition", "0", "--duration", "2s")
    assert "Partition 0 of rehearsal has no leader for 2s" in failed.output
    assert leader_of(broker, full, 0) == -1
    assert leader_of(broker, full, 1) >= 0  # only that partition
    deadline = time.monotonic() + 30
    while leader_of(broker, full, 0) == -1:
        assert time.monotonic() < deadline, "the leader did not come back"
        time.sleep(0.2)
    cli("kafka", "write", "rehearsal", "after the failure", addon, "--partition", "0")

    assert cli("kafka", "fail", addon, ok=False).exit_code == 2  # neither --topic nor --broker
    assert failed_cleanly(cli("kafka", "fail", addon, "--topic", "nope", ok=False), "nope")


def test_create_wait_and_destroy(cli: Cli, broker: BrokerProcess) -> None:
    created = as_json(cli("addons", "create", "--app", "shortlived", "--plan", "basic-0", "--wait", "--json"))
    name, prefix = created["name"], created["prefix"]
    assert created["state"] == "available"
    cli("kafka", "topics", "create", "events", "--app", "shortlived")
    cluster = admin(broker)
    assert f"{prefix}events" in cluster.list_topics(timeout=10).topics

    # basic-0 does not allow compaction: the plan's limit, as a one-line error.
    refused = cli("kafka", "topics", "compaction", "events", "enable", name, ok=False)
    assert failed_cleanly(refused, "plan basic-0 does not allow compacted topics", "plan_limit")

    assert failed_cleanly(cli("kafka", "topics", "destroy", "events", name, "--confirm", "other", ok=False))
    cli("kafka", "topics", "destroy", "events", name, input="events\n")
    assert failed_cleanly(cli("addons", "destroy", name, "--confirm", "wrong", ok=False), "does not match")
    cli("addons", "destroy", name, "--confirm", name)
    assert failed_cleanly(cli("kafka", "info", name, ok=False), name)
    assert f"{prefix}events" not in cluster.list_topics(timeout=10).topics


def test_the_installed_command(platform: PlatformServer, addon: str) -> None:
    """`python -m eventyard kafka info` as a child process, configured by the environment alone."""
    env = dict(
        os.environ, EVENTYARD_PLATFORM_URL=platform.url, EVENTYARD_PLATFORM_TOKEN=TOKEN, EVENTYARD_APP=APP
    )
    done = subprocess.run(
        [sys.executable, "-m", "eventyard", "kafka", "info", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["name"] == addon
    bad = subprocess.run(
        [sys.executable, "-m", "eventyard", "kafka", "info", "kafka-missing"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("Error: ") and "Traceback" not in bad.stderr


def test_wait_reports_a_failed_provisioning(tmp_path: Path) -> None:
    """A control plane that cannot reach its cluster: provisioning fails, and `wait` says why."""
    settings = Settings(token=TOKEN, db_url=f"sqlite:///{tmp_path / 'p.db'}", bootstrap="127.0.0.1:9")
    with PlatformServer(settings) as server:
        env = {"EVENTYARD_PLATFORM_URL": server.url, "EVENTYARD_PLATFORM_TOKEN": TOKEN, "EVENTYARD_APP": None}
        runner = CliRunner()
        created = runner.invoke(
            main, ["addons", "create", "--app", APP, "--plan", "basic-0", "--json"], env=env
        )
        assert created.exit_code == 0, created.output
        name = json.loads(created.stdout)["name"]
        waited = runner.invoke(main, ["kafka", "wait", name, "--timeout", "60s"], env=env)
        assert failed_cleanly(waited, f"provisioning {name} failed", "cannot reach the cluster")


def test_tail_follows_new_records_until_interrupted(platform: PlatformServer, cli: Cli, addon: str) -> None:
    """`eventyard kafka tail` as a child process: it prints what `kafka write` sends, then Ctrl-C ends it."""
    cli("kafka", "topics", "create", "live", addon, "--partitions", "1")
    env = dict(
        os.environ, EVENTYARD_PLATFORM_URL=platform.url, EVENTYARD_PLATFORM_TOKEN=TOKEN, PYTHONUNBUFFERED="1"
    )
    args = [sys.executable, "-m", "eventyard", "kafka", "tail", "live", addon, "--format", "value"]
    follower = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert follower.stdout is not None
        lines: list[str] = []
        stdout = follower.stdout

        def read() -> None:
            for line in stdout:
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        # tail starts at the end: write until a record lands after it has subscribed.
        deadline = time.monotonic() + 60
        while not lines:
            assert follower.poll() is None, follower.stderr.read() if follower.stderr else ""
            assert time.monotonic() < deadline, "tail printed nothing"
            cli("kafka", "write", "live", "now", addon)
            time.sleep(1)
        assert lines[0] == "now\n"
        follower.send_signal(signal.SIGINT)
        assert follower.wait(30) == 0
        assert "Traceback" not in (follower.stderr.read() if follower.stderr else "")
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
