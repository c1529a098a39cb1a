"""A throwaway PostgreSQL database per test run (the machine's real server, never a mock).

The server is the one ``pg_isready`` reports (``EDGE_TEST_PG`` overrides the
libpq keywords used to reach it, e.g. ``host=/var/run/postgresql user=postgres``).
Each run creates ``edge_test_<random>`` and drops it at the end; a test that
needs an empty database calls ``fresh()`` for one of its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

ADMIN = os.environ.get("EDGE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def _admin() -> Any:
    return psycopg.connect(ADMIN, autocommit=True, connect_timeout=5)


def server_params() -> dict[str, Any]:
    """host, port and user of the test server, as ``DatabaseConfig`` keys."""
    info = psycopg.conninfo.conninfo_to_dict(ADMIN)
    return {"host": info.get("host", "127.0.0.1"), "port": int(info.get("port", 5432)), "username": info.get("user")}


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[Callable[[], str]]:
    """``fresh()`` -> the name of a new, empty database; all are dropped after the session."""
    try:
        with _admin():
            pass
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable with {ADMIN!r} (pg_isready?): {exc}")
    made: list[str] = []

    def fresh() -> str:
        name = f"edge_test_{uuid.uuid4().hex[:12]}"
        with _admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return name

    yield fresh
    with _admin() as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def pg_database(pg_databases: Callable[[], str]) -> str:
    """An empty database of this test's own."""
    return pg_databases()


def connect(dbname: str, **kw: Any) -> Any:
    return psycopg.connect(ADMIN, dbname=dbname, autocommit=True, **kw)
