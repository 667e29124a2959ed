"""The database fence works on the app's own, ordinary credential (as Heroku's default one): no superuser."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from standby import database_fence
from standby.errors import SafetyRefusal
from standby.local.postgres import LocalPostgres
from standby.pg_url import parse_database_url


@pytest.fixture
def app_url(pg_server: LocalPostgres) -> Iterator[str]:
    """A database owned by a role of its own, with no superuser or CREATEROLE, like Heroku's credential."""
    admin = pg_server.url("postgres")
    role, dbname = f"app_{time.time_ns() % 10**9}", f"appdb_{time.time_ns() % 10**9}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            f"CREATE ROLE {role} LOGIN PASSWORD 'app-password-not-for-logs' NOSUPERUSER NOCREATEROLE"
        )
        conn.execute(f"CREATE DATABASE {dbname} OWNER {role}")
    params = conninfo_to_dict(admin) | {
        "dbname": dbname,
        "user": role,
        "password": "app-password-not-for-logs",
    }
    url = make_conninfo(**params)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY)")
    yield url
    assert urlsplit(admin)  # the server is the session's; the database stays, unused


def test_the_fence_makes_the_credential_read_only_ends_its_sessions_and_failback_undoes_it(
    app_url: str,
) -> None:
    database = parse_database_url(app_url)
    worker = psycopg.connect(app_url, autocommit=True)
    worker.execute("INSERT INTO orders DEFAULT VALUES")

    assert database_fence.fence_database(database) == 1  # the worker's session
    database_fence.prove_fenced(database)  # a write from a new session fails
    assert database_fence.is_fenced(database)
    with pytest.raises(psycopg.OperationalError):
        worker.execute("INSERT INTO orders DEFAULT VALUES")
    with psycopg.connect(app_url) as conn:  # reads go on: the final backup dumps it
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1,)

    database_fence.unfence_database(database)

    assert not database_fence.is_fenced(database)
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("INSERT INTO orders DEFAULT VALUES")
    with pytest.raises(SafetyRefusal, match="still succeeded after the database fence"):
        database_fence.prove_fenced(database)
