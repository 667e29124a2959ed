"""Which database a backup reads: the primary, or its follower when the follower keeps up.

Heroku advises backing a large database up from a follower: the dump's hours of reading then load the
follower, not the primary the app writes to. But a follower's clock says nothing about how old its data
is: a follower an hour behind answers `now()` with now. So its data is dated by the primary: read the
primary's `now()` and WAL position, wait until the follower has replayed that position, then export the
snapshot on the follower. That snapshot holds every commit the primary had at that moment (and maybe a
few more), so a backup dated by it never looks newer than it is, and the RPO is never understated.

A follower that is not back at that position within the bound, does not answer, or is not replaying at
all (promoted, or a copy) is passed over for the primary, and the run says why; so is a follower whose
dump a recovery conflict cancels (`standby.backup` takes the backup again from the primary).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import psycopg

from standby.pg_url import Database
from standby.polling import Poll

DEFAULT_MAX_LAG: Final = 60.0  # seconds a follower may take to reach the primary's position

REPLAYED_SQL: Final = "SELECT pg_is_in_recovery(), coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)"


@dataclass(frozen=True)
class Follower:
    """A follower offered to the backup, and how far behind it may be."""

    database: Database
    name: str  # as the operator knows it (the add-on's name)
    max_lag: float = DEFAULT_MAX_LAG


@dataclass(frozen=True)
class Source:
    database: Database
    role: str  # "primary" or "follower"
    dated_at: datetime | None = None  # a follower's data: the primary's moment it had replayed
    lag_seconds: float = 0.0  # how long the follower took to reach that moment
    passed_over: str = ""  # why a follower offered was not used


PRIMARY: Final = "primary"
FOLLOWER: Final = "follower"


UNLOGGED_SQL: Final = "SELECT count(*) FROM pg_class WHERE relpersistence = 'u' AND relkind = 'r'"


def primary_position(primary: Database) -> tuple[datetime, str, int]:
    """The primary's present, the WAL position a follower that replayed it holds all of it at, and the
    number of its unlogged tables (their rows are never replicated).

    The insert position, not the flushed one: an asynchronous commit is visible before its WAL is flushed.
    The transaction takes an id so that its commit, after that position, is a commit record the WAL writer
    flushes within a moment, and everything before it with it: an idle primary would otherwise keep its
    last records unwritten, and no follower would ever reach the position.
    """
    with primary.connect(connect_timeout=15) as conn:
        row = conn.execute("SELECT now(), pg_current_wal_insert_lsn()::text, pg_current_xact_id()").fetchone()
        conn.commit()
        unlogged = conn.execute(UNLOGGED_SQL).fetchone()
    assert row is not None and unlogged is not None
    return row[0], str(row[1]), int(unlogged[0])


def choose_source(primary: Database, follower: Follower | None) -> Source:
    """The follower, caught up to the primary's present, or the primary with the reason.

    A primary whose position cannot be read (it does not answer, or is itself in recovery) leaves the
    backup to the primary, which fails at its own connection if it is really gone.
    """
    if follower is None:
        return Source(primary, PRIMARY)
    try:
        moment, position, unlogged = primary_position(primary)
    except psycopg.Error as exc:  # a primary that does not answer fails at the dump's own connection
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Source(primary, PRIMARY, passed_over=f"the primary's WAL position is unreadable ({first})")
    if unlogged:  # a follower has no rows of an unlogged table: its dump would lack them
        return Source(
            primary,
            PRIMARY,
            passed_over=f"the primary has {unlogged} unlogged table(s), which no follower holds",
        )
    started = time.monotonic()
    try:
        with follower.database.connect(connect_timeout=15, autocommit=True) as conn:
            conn.execute("SET statement_timeout = '5s'")  # a follower that hangs must not outlast the bound
            poll = Poll(1.0)
            while True:
                replaying, caught_up = conn.execute(REPLAYED_SQL, [position]).fetchone() or (False, False)
                if not replaying:
                    return Source(
                        primary, PRIMARY, passed_over=f"{follower.name} is not replaying a primary's WAL"
                    )
                if caught_up:
                    return Source(follower.database, FOLLOWER, moment, round(time.monotonic() - started, 2))
                if time.monotonic() - started > follower.max_lag:
                    return Source(primary, PRIMARY, passed_over=(
                        f"{follower.name} did not reach the primary's position within {follower.max_lag:g} s"
                    ))  # fmt: skip
                poll.pause()
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Source(primary, PRIMARY, passed_over=f"{follower.name} does not answer ({first})")
