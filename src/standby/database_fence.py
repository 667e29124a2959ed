"""The database fence: the app's own credential can no longer write to its database, with no Heroku API.

Maintenance mode and stopped dynos fence Heroku through its API; a process that holds the credential
elsewhere (a worker on another platform, a console left open, a dyno Heroku failed to stop) still writes.
So, once the API fence is up, the cutover makes new transactions of the app's role read-only in the app's
database (`ALTER ROLE CURRENT_USER IN DATABASE ... SET default_transaction_read_only`, which any role may
do for itself: no superuser, the default Heroku credential is enough) and ends that role's open sessions,
so nothing writes after the final backup's snapshot. The failback resets it before Heroku restores.
"""

from __future__ import annotations

from typing import Final

import psycopg
from psycopg import sql

from standby.errors import SafetyRefusal
from standby.pg_url import Database

CONNECT_TIMEOUT: Final = 15


def _setting(name: str, database: Database) -> sql.Composed:
    return sql.SQL("ALTER ROLE CURRENT_USER IN DATABASE {} {}").format(
        sql.Identifier(database.dbname), sql.SQL(name)
    )


def fence_database(database: Database) -> int:
    """Make the role's new transactions read-only in its database and end its other sessions; how many."""
    with database.connect(autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.execute(_setting("SET default_transaction_read_only = on", database))
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE usename = current_user AND datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def unfence_database(database: Database) -> None:
    with database.connect(autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.execute("SET default_transaction_read_only = off")  # this session starts read-only itself
        conn.execute(_setting("RESET default_transaction_read_only", database))


def is_fenced(database: Database) -> bool:
    """Whether a new session of the role starts read-only."""
    with database.connect(autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        row = conn.execute("SHOW default_transaction_read_only").fetchone()
    return bool(row and row[0] == "on")


def prove_fenced(database: Database) -> None:
    """A write attempt from a new session must fail: the flag is not the proof, the refusal is."""
    with database.connect(connect_timeout=CONNECT_TIMEOUT) as conn:
        try:
            conn.execute("CREATE TABLE standby_fence_probe (id int)")
        except psycopg.errors.ReadOnlySqlTransaction:
            return
        finally:
            conn.rollback()
    raise SafetyRefusal(
        f"a write to {database.redacted} still succeeded after the database fence: the app's credential can "
        "write. Nothing else was done; find out why (a role setting overridden?) before --resume."
    )
