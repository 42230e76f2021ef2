"""SQL databases for projections, behind one narrow interface: transactions that execute statements.

Statements use `?` placeholders everywhere; the PostgreSQL adapter rewrites them to psycopg's `%s`.
Write portable SQL (CREATE TABLE IF NOT EXISTS, INSERT ... ON CONFLICT ... DO UPDATE work in both)."""

from __future__ import annotations

import importlib
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from eventyard.toolkit.errors import DatabaseDriverMissing, DatabaseUnavailable

Row = tuple[Any, ...]


class Transaction(Protocol):
    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run a statement; returns the number of rows it changed (so it waits for the database)."""
        ...

    def send(self, sql: str, params: Sequence[object] = ()) -> None:
        """Run a statement whose row count you do not need, by the end of the transaction. PostgreSQL
        gets the sent statements together, in one round trip, before the next execute() or query()
        or the commit: not one round trip each. Statements run in order either way; an error in a
        sent one is raised there (by execute(), query() or the end of the block), and rolls back
        the whole transaction as any error does."""
        ...

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]: ...


class Database(Protocol):
    url: str

    def transaction(self) -> AbstractContextManager[Transaction]:
        """Commits when the block ends, rolls back if it raises."""
        ...

    def close(self) -> None: ...


class _SQLiteTransaction:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        self._cursor.execute(sql, tuple(params))
        return int(self._cursor.rowcount)

    def send(self, sql: str, params: Sequence[object] = ()) -> None:
        self._cursor.execute(sql, tuple(params))  # a library call: nothing to wait for

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        self._cursor.execute(sql, tuple(params))
        return [tuple(row) for row in self._cursor.fetchall()]


class _PostgresTransaction:
    """execute() and query() bind their parameters in the server (psycopg prepares a statement
    after a few uses) and wait for it. send() binds them in the client (psycopg's ClientCursor, as
    psycopg2 always did) and queues the statement; the queue goes out as one multi-statement query,
    one round trip, before the next execute() or query(), and before the commit. Measured against
    psycopg's pipeline mode, which still writes to the socket and wakes the server once a
    statement, this costs the client and the server less CPU for each statement."""

    flush_bytes = 1 << 20  # a queue this long goes out at once: memory stays bounded

    def __init__(self, cursor: Any, binder: Any) -> None:
        self._cursor = cursor
        self._binder = binder  # a psycopg.ClientCursor on the same connection
        self._queue: list[str] = []
        self._queued = 0

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        self.flush()
        self._cursor.execute(_to_format_style(sql), tuple(params))
        return int(self._cursor.rowcount)

    def send(self, sql: str, params: Sequence[object] = ()) -> None:
        statement: str = self._binder.mogrify(_to_format_style(sql), tuple(params))
        self._queue.append(statement)
        self._queued += len(statement)
        if self._queued >= self.flush_bytes:
            self.flush()

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        self.flush()
        self._cursor.execute(_to_format_style(sql), tuple(params))
        return [tuple(row) for row in self._cursor.fetchall()]

    def flush(self) -> None:
        """Run the queued statements, in order; raises the first one's error (the rest do not run)."""
        if self._queue:
            # ";" on a line of its own: a statement's trailing -- comment ends before it
            script = "\n;\n".join(self._queue)
            self._queue.clear()
            self._queued = 0
            self._binder.execute(script)


class SQLiteDatabase:
    """stdlib sqlite3, in WAL mode: a commit survives a crash of the process (and, with
    synchronous=FULL, the default here, of the machine)."""

    def __init__(self, path: str | Path) -> None:
        self.url = f"sqlite:///{path}"
        self._db = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._lock:
            cursor = self._db.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteTransaction(cursor)
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresDatabase:
    """PostgreSQL through psycopg 3 (not a dependency of Eventyard: `pip install "psycopg[binary]"`).

    One connection, used by one transaction at a time, at READ COMMITTED (the projector's offsets
    are a compare-and-set, which that level serializes). A server that cannot be reached, or a
    connection that breaks, raises DatabaseUnavailable; the next transaction connects again."""

    connect_timeout = 10  # seconds, unless the URL says otherwise (libpq's default is forever)

    def __init__(self, url: str) -> None:
        try:
            self._psycopg: Any = importlib.import_module("psycopg")  # optional: not a dependency
        except ImportError:
            raise DatabaseDriverMissing(
                f"{url.split('://')[0]} URLs need psycopg: pip install 'psycopg[binary]'"
            ) from None
        self.url = url
        self._lock = threading.Lock()
        self._db: Any = None
        self._connection()  # fail now, not at the first event, if the server is not there

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._lock:
            connection = self._connection()
            try:
                with (
                    connection.transaction(),
                    connection.cursor() as cursor,
                    self._psycopg.ClientCursor(connection) as binder,
                ):
                    tx = _PostgresTransaction(cursor, binder)
                    yield tx
                    tx.flush()  # before COMMIT: a failed sent statement rolls everything back
            except self._psycopg.Error as error:
                if connection.closed or connection.broken:
                    raise self._unavailable(error) from error
                raise

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()

    def _connection(self) -> Any:
        if self._db is None or self._db.closed or self._db.broken:
            if self._db is not None:
                self._db.close()
            options = {} if "connect_timeout" in self.url else {"connect_timeout": self.connect_timeout}
            try:
                self._db = self._psycopg.connect(self.url, autocommit=True, **options)  # BEGIN: transaction()
            except self._psycopg.OperationalError as error:
                raise self._unavailable(error) from error
        return self._db

    def _unavailable(self, error: BaseException) -> DatabaseUnavailable:
        where = re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", self.url)  # never print a password
        reason = " ".join(str(error).split())
        return DatabaseUnavailable(f"PostgreSQL at {where} is unavailable: {reason}")


def connect(url: str | Path) -> Database:
    """A database from a URL: sqlite:///relative.db, sqlite:////absolute.db, a plain file path,
    :memory:, or postgresql://user:password@host/dbname."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(text)
    if text.startswith("sqlite:///"):
        text = text.removeprefix("sqlite:///")
    elif "://" in text:
        raise ValueError(f"unsupported database URL {text!r}: use sqlite:/// or postgresql://")
    return SQLiteDatabase(text or ":memory:")


_QUOTED_OR_MARK = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


@lru_cache(maxsize=512)  # a projection runs the same few statements over and over
def _to_format_style(sql: str) -> str:
    """`?` -> `%s` outside quoted strings and identifiers; `%` -> `%%` everywhere (psycopg reads
    every `%` as a placeholder mark, quoted or not)."""

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        return "%s" if token == "?" else token.replace("%", "%%")

    return _QUOTED_OR_MARK.sub(swap, sql)
