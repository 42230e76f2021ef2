"""kcat against a real broker process, with two librdkafkas: Debian's (2.0.2) and confluent-kafka's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import confluent_kafka
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from eventyard.testing import BrokerProcess

KCAT = shutil.which("kcat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed")

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
# The output format: partition, offset, key length (-1: null), key, value length, value.
FORMAT = r"%p\t%o\t%K\t%k\t%S\t%s\n"
# Fetches wait at most this long for data, so `-e` sees the end of a partition quickly.
SHORT_FETCH_WAIT = ("-X", "fetch.wait.max.ms=20")

# (partition, offset, key, value) as printed by kcat; None for a null key or value.
Line = tuple[int, int, str | None, str | None]


def bundled_librdkafka() -> Path:
    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    [lib] = libs.glob("librdkafka*.so*")
    return lib


@pytest.fixture(scope="module", params=["debian", "bundled"])
def kcat_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment to run kcat with one librdkafka or the other (checked with kcat -V)."""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    if request.param == "bundled":
        # The wheel's copy has a mangled file name: offer it under the soname kcat links against.
        libdir = tmp_path_factory.mktemp("librdkafka")
        (libdir / "librdkafka.so.1").symlink_to(bundled_librdkafka())
        env["LD_LIBRARY_PATH"] = str(libdir)
        expected = confluent_kafka.libversion()[0]
    else:
        expected = "2.0.2"
    assert KCAT is not None
    version = subprocess.run([KCAT, "-V"], env=env, capture_output=True, text=True, timeout=10, check=True)
    assert f"librdkafka {expected} " in version.stdout, version.stdout
    return env


def kcat(
    env: dict[str, str], broker: BrokerProcess, *args: str, stdin: str | None = None, timeout: float = 30
) -> str:
    """Run kcat against the broker; its stdout. A non-zero exit fails the test with stderr."""
    assert KCAT is not None
    done = subprocess.run(
        [KCAT, "-b", broker.bootstrap, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"kcat {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


def create_topic(broker: BrokerProcess, name: str, partitions: int, **config: str) -> None:
    client = AdminClient({"bootstrap.servers": broker.bootstrap})
    client.create_topics([NewTopic(name, partitions, 1, config=config)], operation_timeout=10)[name].result(
        10
    )


def parse(output: str) -> list[Line]:
    lines = []
    for row in output.splitlines():
        partition, offset, key_len, key, value_len, value = row.split("\t")
        lines.append(
            (
                int(partition),
                int(offset),
                None if key_len == "-1" else key,
                None if value_len == "-1" else value,
            )
        )
    return lines


def consume(env: dict[str, str], broker: BrokerProcess, topic: str, *args: str) -> list[Line]:
    return parse(kcat(env, broker, "-C", "-t", topic, "-e", "-q", *SHORT_FETCH_WAIT, "-f", FORMAT, *args))


def by_partition(lines: list[Line]) -> dict[int, list[Line]]:
    out: dict[int, list[Line]] = defaultdict(list)
    for line in lines:
        out[line[0]].append(line)
    return out


def test_metadata_json(kcat_env: dict[str, str], broker: BrokerProcess, topic_name: str) -> None:
    create_topic(broker, topic_name, 3)
    listing = json.loads(kcat(kcat_env, broker, "-L", "-J", "-t", topic_name))
    assert listing["brokers"] == [{"id": 1, "name": broker.bootstrap}]
    assert listing["controllerid"] == 1
    [topic] = listing["topics"]
    assert "error" not in topic
    assert topic["topic"] == topic_name
    assert topic["partitions"] == [
        {"partition": p, "leader": 1, "replicas": [{"id": 1}], "isrs": [{"id": 1}]} for p in range(3)
    ]
    everything = json.loads(kcat(kcat_env, broker, "-L", "-J"))
    assert topic_name in {t["topic"] for t in everything["topics"]}
    text = kcat(kcat_env, broker, "-L", "-t", topic_name)
    assert f'topic "{topic_name}" with 3 partitions:' in text


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume(
    kcat_env: dict[str, str], broker: BrokerProcess, topic_name: str, codec: str
) -> None:
    create_topic(broker, topic_name, 3)
    # First to each partition by number, keyed, in order...
    explicit: dict[int, list[tuple[str, str]]] = {
        p: [(f"k{i % 5}", f"p{p}-value-{i}-" + "z" * (i % 41)) for i in range(300)] for p in range(3)
    }
    for p, pairs in explicit.items():
        stdin = "".join(f"{k}:{v}\n" for k, v in pairs)
        kcat(kcat_env, broker, "-P", "-t", topic_name, "-p", str(p), "-K:", "-z", codec, stdin=stdin)
    # ...then spread by the partitioner, by key, from an idempotent producer.
    keyed = [(f"key-{i % 17}", f"keyed-{i}") for i in range(600)]
    stdin = "".join(f"{k}:{v}\n" for k, v in keyed)
    idempotent = ("-X", "enable.idempotence=true", "-X", "linger.ms=5")
    kcat(kcat_env, broker, "-P", "-t", topic_name, "-K:", "-z", codec, *idempotent, stdin=stdin)

    got = consume(kcat_env, broker, topic_name, "-o", "beginning")
    assert len(got) == 3 * 300 + 600
    partitions = by_partition(got)
    assert sorted(partitions) == [0, 1, 2]
    for p, lines in partitions.items():
        assert [offset for _, offset, _, _ in lines] == list(range(len(lines)))
        assert [(k, v) for _, _, k, v in lines[:300]] == explicit[p]
        rest = [(k, v) for _, _, k, v in lines[300:]]
        here = set(rest)
        assert rest == [pair for pair in keyed if pair in here]  # in the order sent
    later = [(k, v) for lines in partitions.values() for _, _, k, v in lines[300:]]
    assert sorted(later) == sorted(keyed)
    partitions_of_key: dict[str | None, set[int]] = defaultdict(set)
    for p, lines in partitions.items():
        for _, _, key, _ in lines[300:]:
            partitions_of_key[key].add(p)
    assert all(len(ps) == 1 for ps in partitions_of_key.values())


def test_null_keys_values_and_headers(
    kcat_env: dict[str, str], broker: BrokerProcess, topic_name: str
) -> None:
    create_topic(broker, topic_name, 1)
    # -Z: an empty key or value is sent as null.
    kcat(kcat_env, broker, "-P", "-t", topic_name, "-p", "0", "-K:", "-Z", stdin="a:1\n:2\nc:\n")
    kcat(kcat_env, broker, "-P", "-t", topic_name, "-p", "0", "-H", "h1=x", "-H", "h2=", stdin="plain\n")
    got = consume(kcat_env, broker, topic_name, "-o", "beginning")
    assert got == [(0, 0, "a", "1"), (0, 1, None, "2"), (0, 2, "c", None), (0, 3, None, "plain")]
    headers = kcat(
        kcat_env, broker, "-C", "-t", topic_name, "-e", "-q", *SHORT_FETCH_WAIT, "-o", "3", "-f", r"%h\n"
    )
    assert headers == "h1=x,h2=\n"


def test_offsets(kcat_env: dict[str, str], broker: BrokerProcess, topic_name: str) -> None:
    create_topic(broker, topic_name, 1)
    kcat(kcat_env, broker, "-P", "-t", topic_name, "-p", "0", stdin="".join(f"m{i}\n" for i in range(20)))
    values = [v for _, _, _, v in consume(kcat_env, broker, topic_name, "-o", "15")]
    assert values == [f"m{i}" for i in range(15, 20)]
    values = [v for _, _, _, v in consume(kcat_env, broker, topic_name, "-o", "-3")]  # 3 before the end
    assert values == ["m17", "m18", "m19"]
    lines = consume(kcat_env, broker, topic_name, "-o", "beginning", "-c", "4")
    assert [(o, v) for _, o, _, v in lines] == [(i, f"m{i}") for i in range(4)]
    assert consume(kcat_env, broker, topic_name, "-o", "end") == []
    assert kcat(kcat_env, broker, "-Q", "-t", f"{topic_name}:0:-1") == f"{topic_name} [0] offset 20\n"
    assert kcat(kcat_env, broker, "-Q", "-t", f"{topic_name}:0:-2") == f"{topic_name} [0] offset 0\n"


def test_offsets_by_timestamp(kcat_env: dict[str, str], broker: BrokerProcess, topic_name: str) -> None:
    create_topic(broker, topic_name, 2)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    base = 1_700_000_000_000
    for i in range(10):  # partition 0: one batch per record
        producer.produce(topic_name, value=b"a%d" % i, partition=0, timestamp=base + i * 1000)
        producer.flush(10)
    for i in range(10):  # partition 1: one batch of ten
        producer.produce(topic_name, value=b"b%d" % i, partition=1, timestamp=base + i * 1000)
    assert producer.flush(10) == 0

    def starting_at(partition: int, *args: str) -> list[tuple[int, str | None]]:
        lines = consume(kcat_env, broker, topic_name, "-p", str(partition), *args)
        return [(offset, value) for _, offset, _, value in lines]

    for p, prefix in ((0, "a"), (1, "b")):
        assert starting_at(p, "-o", f"s@{base + 4500}") == [(i, f"{prefix}{i}") for i in range(5, 10)]
        assert starting_at(p, "-o", f"s@{base + 3000}") == [(i, f"{prefix}{i}") for i in range(3, 10)]
        # From one time to another (the end one excluded).
        window = starting_at(p, "-o", f"s@{base + 2000}", "-o", f"e@{base + 5000}")
        assert window == [(i, f"{prefix}{i}") for i in range(2, 5)]
    stamps = kcat(
        kcat_env,
        broker,
        "-C",
        "-t",
        topic_name,
        "-p",
        "1",
        "-e",
        "-q",
        *SHORT_FETCH_WAIT,
        "-o",
        "8",
        "-f",
        r"%T\n",
    )
    assert stamps == f"{base + 8000}\n{base + 9000}\n"

    queried = kcat(
        kcat_env, broker, "-Q", "-t", f"{topic_name}:0:{base + 4500}", "-t", f"{topic_name}:1:{base}"
    )
    assert sorted(queried.splitlines()) == [f"{topic_name} [0] offset 5", f"{topic_name} [1] offset 0"]
    queried = kcat(
        kcat_env,
        broker,
        "-Q",
        "-J",
        "-t",
        f"{topic_name}:0:{base + 9000}",
        "-t",
        f"{topic_name}:1:{base + 9001}",
    )
    assert json.loads(queried) == {
        topic_name: {
            "topic": topic_name,
            "0": {"partition": 0, "offset": 9},
            "1": {"partition": 1, "offset": -1},  # after the last record: none
        }
    }


def test_consumer_waits_for_new_records(
    kcat_env: dict[str, str], broker: BrokerProcess, topic_name: str
) -> None:
    """A kcat consumer at the end of the log gets records produced later: the broker answers a
    waiting fetch as soon as data arrives, not when its (long) wait is over."""
    create_topic(broker, topic_name, 1)
    first, second = [f"n{i}\n" for i in range(5)], [f"n{i}\n" for i in range(5, 10)]
    kcat(kcat_env, broker, "-P", "-t", topic_name, "-p", "0", stdin="".join(first))
    assert KCAT is not None
    args = ["-C", "-t", topic_name, "-p", "0", "-o", "beginning", "-c", "10", "-q", "-u"]
    consumer = subprocess.Popen(
        [KCAT, "-b", broker.bootstrap, *args, "-X", "fetch.wait.max.ms=10000"],
        env=kcat_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert consumer.stdout is not None
        assert [consumer.stdout.readline() for _ in first] == first  # now it waits at offset 5
        started = time.monotonic()
        kcat(kcat_env, broker, "-P", "-t", topic_name, "-p", "0", stdin="".join(second))
        out, err = consumer.communicate(timeout=20)
        waited = time.monotonic() - started
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    assert consumer.returncode == 0, err
    assert out == "".join(second)
    assert waited < 5, f"the waiting fetch was answered only after {waited:.1f}s"


def end_offset(env: dict[str, str], broker: BrokerProcess, topic: str, partition: int) -> int:
    line = kcat(env, broker, "-Q", "-t", f"{topic}:{partition}:-1")
    assert line.startswith(f"{topic} [{partition}] offset "), line
    return int(line.split()[-1])


def test_acks_zero_producer_exiting_at_once_loses_nothing(
    kcat_env: dict[str, str], broker: BrokerProcess, topic_name: str
) -> None:
    """kcat -P with acks=0 flushes (every request written to the socket) and exits: the broker must
    still append every request it received before the connection closed, as Kafka does."""
    # An fsync per request keeps the broker busy while kcat closes: the loss is then certain.
    create_topic(broker, topic_name, 1, **{"flush.messages": "1"})
    stdin = "".join(f"m{i}\n" for i in range(2000))
    many_requests = ("-X", "acks=0", "-X", "batch.num.messages=50", "-X", "linger.ms=100")
    kcat(kcat_env, broker, "-P", "-t", topic_name, "-p", "0", *many_requests, stdin=stdin)
    deadline = time.monotonic() + 2  # acks=0: no answer says when the records are in
    while (end := end_offset(kcat_env, broker, topic_name, 0)) < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert end == 2000
    values = [v for _, _, _, v in consume(kcat_env, broker, topic_name, "-o", "beginning")]
    assert values == [f"m{i}" for i in range(2000)]
