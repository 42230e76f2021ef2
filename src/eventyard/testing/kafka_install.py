"""Where the reference Apache Kafka comes from and what runs it: the jars that
scripts/fetch-kafka.sh resolves from Maven Central, a JDK 17 or newer, free loopback ports."""

from __future__ import annotations

import base64
import functools
import os
import re
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

# Keep in step with <kafka.version> in tools/kafka-reference/pom.xml.
DEFAULT_VERSION = "4.4.0"
MIN_JAVA = 17  # Kafka 4.x brokers are built for Java 17
FETCH_HINT = "run scripts/fetch-kafka.sh (needs a JDK 17+ and Maven; see docs/reference-broker.md)"


class KafkaReferenceUnavailable(RuntimeError):
    """Java, Maven or the Kafka jars are missing: the message says how to get them."""


def repo_root() -> Path | None:
    """The Eventyard checkout: the working directory or one above it, else this file's own tree."""
    here = Path.cwd().resolve()
    for candidate in [here, *here.parents, *Path(__file__).resolve().parents]:
        if (candidate / "tools" / "kafka-reference" / "pom.xml").is_file():
            return candidate
    return None


def fetch_script() -> Path:
    root = repo_root()
    if root is None:
        raise KafkaReferenceUnavailable("no Eventyard checkout found (scripts/fetch-kafka.sh)")
    return root / "scripts" / "fetch-kafka.sh"


def kafka_libs(version: str = DEFAULT_VERSION) -> Path:
    """The directory of Kafka's jars: $EVENTYARD_KAFKA_LIBS, else .cache/kafka/<version>/libs."""
    override = os.environ.get("EVENTYARD_KAFKA_LIBS")
    root = repo_root()
    if override:
        libs = Path(override)
    elif root is not None:
        libs = root / ".cache" / "kafka" / version / "libs"
    else:
        raise KafkaReferenceUnavailable(
            f"no Eventyard checkout found for .cache/kafka/{version}: {FETCH_HINT}"
        )
    if not (libs / f"kafka_2.13-{version}.jar").is_file():
        raise KafkaReferenceUnavailable(f"Kafka {version} jars not found in {libs}: {FETCH_HINT}")
    return libs


def fetch_kafka(version: str = DEFAULT_VERSION, timeout: float = 900.0) -> Path:
    """Run scripts/fetch-kafka.sh (a no-op once the jars are cached) and return the libs directory."""
    if shutil.which("bash") is None:
        raise KafkaReferenceUnavailable("bash is needed to run scripts/fetch-kafka.sh")
    result = subprocess.run(
        ["bash", str(fetch_script()), version], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise KafkaReferenceUnavailable(f"scripts/fetch-kafka.sh {version} failed:\n{result.stderr.strip()}")
    return Path(result.stdout.strip().splitlines()[-1])


@functools.cache
def java_executable() -> str:
    """$JAVA_HOME/bin/java, else `java` on the PATH; it must be Java 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if java is None or not Path(java).is_file():
        raise KafkaReferenceUnavailable(
            f"java not found (JAVA_HOME or the PATH): the Kafka broker needs a JDK {MIN_JAVA}+ "
            f"(Debian: apt-get install openjdk-17-jdk-headless); then {FETCH_HINT}"
        )
    banner = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(?:1\.)?(\d+)', banner)
    major = int(match.group(1)) if match else 0
    if major < MIN_JAVA:
        raise KafkaReferenceUnavailable(f"{java} is Java {major or '?'}: Kafka 4.x needs Java {MIN_JAVA}+")
    return java


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports: all bound at once, so none is handed out twice."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def new_cluster_id() -> str:
    """A Kafka Uuid as Kafka prints it: 16 random bytes, URL-safe base64, no padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka avoids these too: they read as command-line flags
            return text
