"""The throughput cost of security: SASL (SCRAM-SHA-512), TLS, SASL_SSL and ACL checks, each against
PLAINTEXT, with the librdkafka (confluent-kafka) producer and consumer of the throughput benchmark
(bench/sidebyside/workloads.py, which bench/broker_throughput.py runs).

Two brokers run side by side for the whole run: A, without an authorizer, listens on PLAINTEXT,
SASL_PLAINTEXT, SSL and SASL_SSL; B has the authorizer on, and its PLAINTEXT clients (User:ANONYMOUS)
are allowed by prefixed ACLs among those of many other tenants, so that every request is checked
against a realistic ACL set. Runs alternate between the modes (run i of every mode before run i + 1),
so that the machine's noise falls on all of them alike; figures are medians.

    python bench/security_cost.py [--messages 300000] [--size 1024] [--runs 3] [--tenants 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trustme
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from sidebyside import workloads
from sidebyside.report import ratio, table
from sidebyside.targets import cpu_seconds

from eventyard.security.credentials import CredentialStore, Mechanism
from eventyard.testing import BrokerProcess

USER, PASSWORD = "bench", "bench-secret"
ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
PREFIX = "bench-"  # the measured topics; the consumer's group is "bench" (the workloads' own)
MODES = ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL", "PLAINTEXT+ACLs")


@contextmanager
def secured(settings: dict[str, str]) -> Iterator[None]:
    """The workloads make their clients from a bootstrap address alone: add the security settings
    to every client they make meanwhile."""
    names = ("Producer", "Consumer", "AdminClient")
    originals = {name: getattr(workloads, name) for name in names}

    def wrap(cls: Any) -> Any:
        return lambda conf, **kwargs: cls({**conf, **settings}, **kwargs)

    for name, cls in originals.items():
        setattr(workloads, name, wrap(cls))
    try:
        yield
    finally:
        for name, cls in originals.items():
            setattr(workloads, name, cls)


def certificates(folder: Path) -> dict[str, Path]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = {name: folder / f"{name}.pem" for name in ("ca", "server", "server-key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["server"]))
    server.private_key_pem.write_to_path(str(paths["server-key"]))
    return paths


def plain_broker(data: Path, certs: dict[str, Path]) -> BrokerProcess:
    args = [
        "--listener", "SASL_PLAINTEXT://127.0.0.1:0",
        "--listener", "SSL://127.0.0.1:0",
        "--listener", "SASL_SSL://127.0.0.1:0",
        "--tls-cert", str(certs["server"]),
        "--tls-key", str(certs["server-key"]),
    ]  # fmt: skip
    broker = BrokerProcess(data, *args).start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    upsert = UserScramCredentialUpsertion(
        USER, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), PASSWORD.encode()
    )
    admin.alter_user_scram_credentials([upsert])[USER].result(30)
    return broker


def acl_broker(data: Path, tenants: int) -> BrokerProcess:
    """The authorizer on; an admin (a super user, seeded before the start: nobody may create users
    on a fresh broker with the authorizer on) creates the ACLs over SASL with AdminClient."""
    data.mkdir(parents=True, exist_ok=True)
    CredentialStore(data / "users.json").set_password(ADMIN, Mechanism.SCRAM_SHA_512, ADMIN_PASSWORD)
    args = ["--authorizer", "--super-user", f"User:{ADMIN}", "--listener", "SASL_PLAINTEXT://127.0.0.1:0"]
    broker = BrokerProcess(data, *args).start()
    admin = AdminClient(
        {
            "bootstrap.servers": f"127.0.0.1:{broker.listener_ports['SASL_PLAINTEXT']}",
            **sasl(ADMIN, ADMIN_PASSWORD),
        }
    )
    prefixed, allow, anyone = ResourcePatternType.PREFIXED, AclPermissionType.ALLOW, "*"
    acls = [
        AclBinding(ResourceType.TOPIC, PREFIX, prefixed, "User:ANONYMOUS", anyone, AclOperation.ALL, allow),
        AclBinding(ResourceType.GROUP, "bench", prefixed, "User:ANONYMOUS", anyone, AclOperation.READ, allow),
    ]
    for i in range(tenants):  # the other tenants of a shared broker
        name = f"tenant-{i:04d}."
        acls += [
            AclBinding(ResourceType.TOPIC, name, prefixed, f"User:{name}", anyone, AclOperation.WRITE, allow),
            AclBinding(ResourceType.GROUP, name, prefixed, f"User:{name}", anyone, AclOperation.READ, allow),
        ]
    for future in admin.create_acls(acls).values():
        future.result(30)
    return broker


def sasl(user: str, password: str) -> dict[str, str]:
    return {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
    }


def client_settings(mode: str, a: BrokerProcess, b: BrokerProcess, ca: Path) -> dict[str, str]:
    if mode == "PLAINTEXT+ACLs":
        return {"bootstrap.servers": b.bootstrap}
    if mode == "PLAINTEXT":
        return {"bootstrap.servers": a.bootstrap}
    settings = {"bootstrap.servers": f"127.0.0.1:{a.listener_ports[mode]}", "security.protocol": mode}
    if mode.startswith("SASL_"):
        settings.update({"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": USER, "sasl.password": PASSWORD})
    if mode.endswith("SSL"):
        settings["ssl.ca.location"] = str(ca)
    return settings


def run(settings: dict[str, str], pid: int | None, messages: int, size: int) -> tuple[float, ...]:
    """(produce msg/s, consume msg/s, broker CPU seconds per GB produced, per GB consumed). The
    clients, not the broker, are often the bottleneck on this machine: the broker's CPU per byte is
    the steadier measure of what security costs the broker."""
    bootstrap = settings["bootstrap.servers"]
    extra = {k: v for k, v in settings.items() if k != "bootstrap.servers"}
    topic = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    payload = b"x" * size
    with secured(extra):
        workloads.create(bootstrap, topic, 1)
        gigabytes = messages * size / 1e9
        cpu = cpu_seconds(pid)
        produced = workloads.produce(bootstrap, topic, messages, payload, "all", 1)
        produce_cpu = (cpu_seconds(pid) - cpu) / gigabytes
        cpu = cpu_seconds(pid)
        consumed = workloads.consume(bootstrap, topic, 1, messages)
        consume_cpu = (cpu_seconds(pid) - cpu) / gigabytes
        workloads.delete(bootstrap, topic)
    return produced, consumed, produce_cpu, consume_cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tenants", type=int, default=200, help="other tenants' ACL pairs on broker B")
    parser.add_argument("--warmup", type=int, default=50_000, help="messages of a discarded first round")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="eventyard-security-bench-"))
    certs = certificates(work)
    a = plain_broker(work / "a", certs)
    b = acl_broker(work / "b", args.tenants)
    samples: dict[str, list[tuple[float, ...]]] = {mode: [] for mode in MODES}
    try:
        for mode in MODES if args.warmup else ():  # connections, caches, page cache: then measure
            run(client_settings(mode, a, b, certs["ca"]), None, args.warmup, args.size)
        for i in range(args.runs):
            for mode in MODES:
                broker = b if mode == "PLAINTEXT+ACLs" else a
                pid = broker.process.pid if broker.process else None
                result = run(client_settings(mode, a, b, certs["ca"]), pid, args.messages, args.size)
                samples[mode].append(result)
                print(
                    f"# run {i + 1} {mode:>15}: produce {result[0]:>9,.0f}  consume {result[1]:>9,.0f} msg/s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        a.stop()
        b.stop()

    medians = {
        mode: [statistics.median(s[k] for s in runs) for k in range(4)] for mode, runs in samples.items()
    }
    base = medians["PLAINTEXT"]
    print(
        f"# {args.messages:,} messages of {args.size} B per run, acks=all, 1 partition, "
        f"median of {args.runs} runs; broker B has {2 * args.tenants + 2} prefixed ACLs"
    )
    rows = [
        [
            mode,
            f"{m[0]:,.0f}",
            ratio(m[0], base[0]),
            f"{m[2]:.1f}",
            ratio(m[2], base[2]),
            f"{m[1]:,.0f}",
            ratio(m[1], base[1]),
            f"{m[3]:.1f}",
            ratio(m[3], base[3]),
        ]
        for mode, m in medians.items()
    ]
    header = ["mode", "produce msg/s", "vs PLAINTEXT", "broker cpu s/GB", "vs PLAINTEXT"]
    header += ["consume msg/s", "vs PLAINTEXT", "broker cpu s/GB", "vs PLAINTEXT"]
    table(header, rows)


if __name__ == "__main__":
    main()
