"""The mark a recovery on Heroku leaves on the app's database while it restores into it.

The scheduled backup keeps running during `recover_db.py from-backup`; a dump taken then would hold half
a restore, and restore-ahead and a later cutover would trust it. So the runbook marks the database, ends
the sessions that began before the mark (a backup in flight among them), and every backup reads the mark
in its snapshot transaction and refuses while it is there.

The mark is the database's comment, which its owner may set: Heroku's default credential owns the
database but is no superuser, so it may not store a custom setting (`ALTER ROLE ... SET standby.x`
needs superuser or a grant on the parameter). A comment the database had is kept inside the mark and put
back when the mark is lifted. Our dumps do not carry database comments (pg_dump writes them only with
--create), so a restore neither brings a mark in nor wipes one out.
"""

from __future__ import annotations

import json
from typing import Any, Final

import psycopg
from psycopg import sql

from standby.pg_url import Database

KEY: Final = "standby_recovering"
COMMENT_SQL: Final = (
    "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()"
)
CONNECT_TIMEOUT: Final = 15


def recovering_run(comment: str | None) -> str | None:
    """The run a database comment marks as restoring into the database, or None."""
    mark = _mark(comment)
    return str(mark["run"]) if mark else None


def _mark(comment: str | None) -> dict[str, Any] | None:
    try:
        doc = json.loads(comment or "")
    except ValueError:
        return None
    mark = doc.get(KEY) if isinstance(doc, dict) else None
    return mark if isinstance(mark, dict) and mark.get("run") else None


def _comment(conn: psycopg.Connection[tuple[Any, ...]]) -> str | None:
    row = conn.execute(COMMENT_SQL).fetchone()
    return str(row[0]) if row and row[0] is not None else None


def _set_comment(conn: psycopg.Connection[tuple[Any, ...]], database: Database, comment: str | None) -> None:
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(database.dbname), sql.Literal(comment) if comment is not None else sql.SQL("NULL")
        )
    )


def mark(database: Database, run_id: str) -> int:
    """Mark the database as restored into by `run_id`, then end the role's other sessions; how many."""
    with database.connect(autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        current = _comment(conn)
        held = _mark(current)
        previous = held.get("comment") if held else current
        _set_comment(conn, database, json.dumps({KEY: {"run": run_id, "comment": previous}}))
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE usename = current_user AND datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def unmark(database: Database) -> None:
    """Lift the mark; the comment the database had before comes back."""
    with database.connect(autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        held = _mark(_comment(conn))
        if held is not None:
            _set_comment(conn, database, held.get("comment"))


def marked_by(database: Database) -> str | None:
    """The run that marked the database, or None."""
    with database.connect(autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        return recovering_run(_comment(conn))
