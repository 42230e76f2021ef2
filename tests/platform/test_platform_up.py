"""`eventyard platform up` as a developer runs it: one child process (broker + control plane), then
the developer CLI as child processes from `addons create --wait` to `kafka tail`, a SIGTERM, and a
restart on the same data directory. And the broker's `--add-scram` bootstrap credentials."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from eventyard.broker.config import ScramUser
from eventyard.testing import BrokerProcess
from tests.platform.conftest import client_conf

pytestmark = pytest.mark.timeout(300)

_EXPORT = re.compile(r"export EVENTYARD_PLATFORM_URL=(\S+) EVENTYARD_PLATFORM_TOKEN=(\S+)")
_KAFKA = re.compile(r"Kafka: +(\S+):(\d+)")


def _clean_env() -> dict[str, str]:
    # The developer's own EVENTYARD_* settings must not leak into what is under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTYARD_")}
    return dict(env, PYTHONUNBUFFERED="1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PlatformUp:
    """`eventyard platform up` in a child process; url and token read from what it prints."""

    def __init__(self, data_dir: Path, kafka_port: int) -> None:
        self.data_dir, self.kafka_port = data_dir, kafka_port
        self.log: deque[str] = deque(maxlen=500)
        self.process: subprocess.Popen[str] | None = None
        self.url = self.token = self.kafka = ""

    def start(self, timeout: float = 60.0) -> PlatformUp:
        args = [sys.executable, "-m", "eventyard", "platform", "up", "--data-dir", str(self.data_dir)]
        args += ["--port", "0", "--kafka-port", str(self.kafka_port), "--log-level", "warning"]
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_clean_env()
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.log.append(line)
            if kafka := _KAFKA.search(line):
                self.kafka = f"{kafka.group(1)}:{kafka.group(2)}"
            if export := _EXPORT.search(line):
                self.url, self.token = export.groups()
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.process.kill()
        raise AssertionError("platform up did not start:\n" + "".join(self.log))

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line)

    def stop(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()

    def cli(self, *args: str, timeout: float = 120.0) -> str:
        """The developer CLI against this platform, as a child process; its stdout."""
        env = dict(_clean_env(), EVENTYARD_PLATFORM_URL=self.url, EVENTYARD_PLATFORM_TOKEN=self.token)
        done = subprocess.run(
            [sys.executable, "-m", "eventyard", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"eventyard {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout


def _read_all(conf: dict[str, Any], prefix: str, partitions: int, timeout: float = 60.0) -> list[bytes]:
    topic = prefix + "orders"
    # librdkafka looks up the group's coordinator even for assign(): a group within the prefix.
    consumer = Consumer({**conf, "group.id": prefix + "check", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(values) < 2:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            values.append(message.value())
        return values
    finally:
        consumer.close()


def test_platform_up_round_trip_and_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "platform-data"
    platform = PlatformUp(data_dir, _free_port()).start()
    try:
        created = json.loads(
            platform.cli("addons", "create", "--app", "shop", "--plan", "basic-0", "--wait", "--json")
        )
        addon = created["name"]
        assert created["state"] == "available", created
        platform.cli("kafka", "topics", "create", "orders", "--partitions", "2", "--app", "shop")
        platform.cli("kafka", "write", "orders", "first", "--key", "k", "--app", "shop")
        tail = ("kafka", "tail", "orders", "--app", "shop", "--from-beginning", "--format", "value")
        assert platform.cli(*tail, "-n", "1", "--timeout", "60").strip() == "first"
        env = json.loads(platform.cli("kafka", "credentials", "--app", "shop", "--show-secrets", "--json"))
        env = env.get("config", env)
        assert env["KAFKA_URL"] == platform.kafka and env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        first = (platform.url, platform.token)
    finally:
        code = platform.stop()
    assert code == 0, "".join(platform.log)
    assert (data_dir / "admin-password").stat().st_mode & 0o077 == 0
    assert "first" not in (data_dir / "broker" / "users.json").read_text()

    platform.start()  # the same data directory and Kafka port
    try:
        assert platform.token == first[1]  # the token is kept, so exported settings stay valid
        info = json.loads(platform.cli("addons", "info", addon, "--json"))
        assert info["state"] == "available" and any(t["name"] == "orders" for t in info["topics"]), info
        # The credential from before the restart still authenticates and still may write.
        producer = Producer(client_conf(env))
        producer.produce(env["KAFKA_PREFIX"] + "orders", b"second", key=b"k")
        assert producer.flush(60) == 0
        assert sorted(_read_all(client_conf(env), env["KAFKA_PREFIX"], 2)) == [b"first", b"second"]
        # And a wrong password still does not.
        assert _refused({**client_conf(env), "sasl.password": "wrong"})
        assert not _refused(client_conf(env))
    finally:
        assert platform.stop() == 0, "".join(platform.log)


# -- the broker's --add-scram


def _admin_conf(broker: BrokerProcess, password: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": f"127.0.0.1:{broker.listener_ports['SASL_PLAINTEXT']}",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "admin",
        "sasl.password": password,
    }


def _can_create_topic(broker: BrokerProcess, password: str, topic: str) -> bool:
    """Creating a topic needs the super user: proof that the password authenticated as admin."""
    admin = AdminClient(
        _admin_conf(broker, password)
    )  # kept referenced: a collected client cancels its futures
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
        return True
    except KafkaException:
        return False


def _refused(conf: dict[str, Any]) -> bool:
    """The broker answers these credentials with an authentication failure (not merely no answer)."""
    errors: list[KafkaError] = []
    admin = AdminClient({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=1)
            return False
        except KafkaException:
            admin.poll(0.1)  # serves error_cb
        if any(error.code() == KafkaError._AUTHENTICATION for error in errors):
            return True
    return False


def _broker(data_dir: Path | None, password: str) -> BrokerProcess:
    return BrokerProcess(
        data_dir,
        "--authorizer",
        "--super-user",
        "User:admin",
        "--listener",
        "SASL_PLAINTEXT://127.0.0.1:0",
        "--add-scram",
        f"SCRAM-SHA-512=[name=admin,password={password}]",
    )


def test_add_scram_bootstraps_the_admin_idempotently(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    broker = _broker(data_dir, "s3cret-one").start()
    try:
        assert _can_create_topic(broker, "s3cret-one", "t1")
        assert _refused(_admin_conf(broker, "not-it"))
        stored = (data_dir / "users.json").read_bytes()
        assert b"s3cret-one" not in stored and b"stored_key" in stored  # salted keys only
        broker.restart()  # the same option again: nothing rewritten, the salt kept
        assert (data_dir / "users.json").read_bytes() == stored
        assert _can_create_topic(broker, "s3cret-one", "t3")
    finally:
        broker.stop()
    broker = _broker(data_dir, "s3cret-two").start()  # a new password replaces the old
    try:
        assert _can_create_topic(broker, "s3cret-two", "t4")
        assert _refused(_admin_conf(broker, "s3cret-one"))
    finally:
        broker.stop()


def test_add_scram_in_memory(tmp_path: Path) -> None:
    with _broker(None, "mem-pass") as broker:
        assert _can_create_topic(broker, "mem-pass", "t1")
        assert _refused(_admin_conf(broker, "other"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("admin:secret", "expected MECHANISM=[name=NAME,password=PASSWORD"),
        ("SCRAM-SHA-1=[name=admin,password=x]", "unknown mechanism 'SCRAM-SHA-1'"),
        ("SCRAM-SHA-512=[name=admin]", "a non-empty name and password are required"),
        ("SCRAM-SHA-512=[name=admin,password=x,salt=abc]", "unknown or repeated key 'salt'"),
        ("SCRAM-SHA-512=[name=admin,password=x,iterations=100]", "iterations must be from 4096 to 16384"),
        ('SCRAM-SHA-512=[name="admin,password=x]', "badly quoted value of 'name'"),
    ],
)
def test_add_scram_refuses_malformed_values(tmp_path: Path, value: str, message: str) -> None:
    serve = [sys.executable, "-m", "eventyard", "serve", "--data-dir", str(tmp_path), "--port", "0"]
    done = subprocess.run(
        [*serve, "--add-scram", value],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(),
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--add-scram" in done.stderr and message in done.stderr, done.stderr
    assert not (tmp_path / "users.json").exists()


def test_scram_user_parse_quoted_values_and_secrecy() -> None:
    user = ScramUser.parse('scram-sha-256=[name="a,b",password="x]y=z",iterations=8192]')
    assert (user.mechanism, user.name, user.password, user.iterations) == (
        "SCRAM-SHA-256",
        "a,b",
        "x]y=z",
        8192,
    )
    assert "x]y=z" not in repr(user)  # never in a log line
