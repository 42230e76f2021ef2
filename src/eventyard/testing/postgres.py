"""A throwaway PostgreSQL server for tests and benchmarks: initdb into a temporary directory, pg_ctl
start on a free loopback port, a fresh database per test, and everything removed afterwards.

    with PostgresServer() as server:
        connect(server.url)                       # postgresql://postgres@127.0.0.1:PORT/eventyard
        connect(server.create_database("t1"))     # another, empty database

PostgreSQL's own binaries are needed (initdb, pg_ctl; Debian: `apt-get install postgresql`, which puts
them in /usr/lib/postgresql/<version>/bin). The server runs with PostgreSQL's default durability
settings (fsync on, synchronous_commit on). initdb refuses to run as root, so as root the cluster
belongs to the `postgres` system user and its commands run through runuser."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

_SEARCH_DIRS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/opt/homebrew/opt/postgresql*/bin")
_NAME = re.compile(r"[a-z_][a-z0-9_]*")


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server binaries (initdb, pg_ctl) on this machine."""


def find_bin_dir() -> Path:
    """The directory of initdb and pg_ctl: $EVENTYARD_PG_BINDIR, the PATH, then the usual
    versioned install directories (the newest version first)."""
    if configured := os.environ.get("EVENTYARD_PG_BINDIR"):
        candidates = [Path(configured)]
    else:
        on_path = shutil.which("pg_ctl")
        candidates = [Path(on_path).resolve().parent] if on_path else []
        for pattern in _SEARCH_DIRS:
            found = Path("/").glob(pattern.lstrip("/"))
            candidates += sorted(found, key=_version_key, reverse=True)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    raise PostgresNotFound(
        "PostgreSQL's initdb and pg_ctl were not found (on the PATH, in /usr/lib/postgresql/*/bin, or in "
        "$EVENTYARD_PG_BINDIR): install PostgreSQL, e.g. `apt-get install postgresql` on Debian"
    )


def _version_key(directory: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", str(directory)))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One cluster in a temporary directory. start()/stop() may alternate (the data and the port
    stay, so a test can take the database away and bring it back); close() also deletes it."""

    user = "postgres"  # the cluster's superuser; local connections are trusted

    def __init__(self, database: str = "eventyard", *, bin_dir: Path | None = None) -> None:
        if not _NAME.fullmatch(database):
            raise ValueError(f"database name {database!r}: use lower-case letters, digits and _")
        self.database = database
        self.bin_dir = bin_dir or find_bin_dir()
        self.port = 0
        self.root: Path | None = None
        self.running = False
        self._created = False
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root: use the postgres user
            try:
                self._owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root, PostgreSQL needs an unprivileged user to run as: create the "
                    "`postgres` system user (Debian's postgresql package does) or run as another user"
                ) from None

    @property
    def url(self) -> str:
        return self.url_of(self.database)

    def url_of(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    @property
    def log(self) -> str:
        """The server's log so far (for error messages)."""
        if self.root is None or not (self.root / "server.log").exists():
            return ""
        return (self.root / "server.log").read_text(errors="replace")

    def version(self) -> str:
        return self._run("postgres", "--version").strip()

    def start(self, timeout: float = 60.0) -> PostgresServer:
        if self.running:
            return self
        fresh = self.root is None
        try:
            self._start(timeout)
        except BaseException:
            if fresh:
                self.close()  # leave no half-made cluster behind
            raise
        return self

    def _start(self, timeout: float) -> None:
        if self.root is None:
            self._init()
        assert self.root is not None
        for attempt in range(5):
            self.port = self.port or _free_port()
            options = f"-p {self.port} -k {self.root / 'socket'} -c listen_addresses=127.0.0.1"
            try:
                self._run(
                    "pg_ctl",
                    *("-D", str(self.root / "data"), "-l", str(self.root / "server.log")),
                    *("-o", options, "-w", "-t", str(int(timeout)), "start"),
                )
                break
            except RuntimeError:
                if attempt == 4 or "already in use" not in self.log:
                    raise
                self.port = 0  # another process took the port between the probe and the bind
        self.running = True
        if self.database != "postgres" and not self._created:
            self.create_database(self.database)
            self._created = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data: `fast` rolls back open transactions and disconnects
        clients; `immediate` is a crash (recovery at the next start)."""
        if self.running and self.root is not None:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", mode, "-w", "stop")
            self.running = False

    def close(self) -> None:
        """Stop the server and delete the cluster."""
        try:
            self.stop("immediate")
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
                self._created = False

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its URL."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"database name {name!r}: use lower-case letters, digits and _")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return self.url_of(name)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _init(self) -> None:
        root = Path(tempfile.mkdtemp(prefix="eventyard-pg-"))
        (root / "socket").mkdir()
        if self._owner is not None:
            for path in (root, root / "socket"):
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
        self.root = root
        # C locale: text sorts by bytes, as Python sorts str; --no-sync: a throwaway cluster need
        # not survive a power cut while it is being created (the server itself keeps fsync on)
        self._run(
            "initdb",
            *("-D", str(root / "data"), "-U", self.user, "--auth=trust"),
            *("--encoding=UTF8", "--locale=C", "--no-sync"),
        )

    def _run(self, program: str, *args: str) -> str:
        command = [str(self.bin_dir / program), *args]
        if self._owner is not None:
            command = ["runuser", "-u", self._owner.pw_name, "--", *command]
        # a working directory the postgres user can enter (not root's home)
        cwd = self.root if self.root is not None else tempfile.gettempdir()
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
                + (f"\nserver log:\n{self.log[-3000:]}" if program == "pg_ctl" else "")
            )
        return result.stdout
