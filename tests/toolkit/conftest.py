"""Databases for the projection tests: SQLite files, and a real PostgreSQL server for the session.

The PostgreSQL tests skip, saying why, only when PostgreSQL is not installed (scripts/setup.sh test
installs it); with EVENTYARD_POSTGRES=1 (as in CI) a missing PostgreSQL fails them instead."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventyard.testing.postgres import PostgresNotFound, PostgresServer

_databases = itertools.count(1)


def postgres_required() -> bool:
    return os.environ.get("EVENTYARD_POSTGRES") == "1"


def start_postgres() -> PostgresServer:
    """A fresh PostgreSQL server; skips the test when PostgreSQL is not installed (fails if required)."""
    try:
        return PostgresServer().start()
    except PostgresNotFound as missing:
        if postgres_required():
            pytest.fail(f"EVENTYARD_POSTGRES=1 but {missing}", pytrace=False)
        pytest.skip(f"PostgreSQL tests need PostgreSQL's server binaries: {missing}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """postgresql://... of the session's server (its database `eventyard`, shared by the session)."""
    return postgres_server.url


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server: a test of its own tables."""
    return postgres_server.create_database(f"test_{os.getpid()}_{next(_databases)}")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database, once with SQLite (a file) and once with PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'projection.db'}"
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, which it may stop and start."""
    server = start_postgres()
    yield server
    server.close()
