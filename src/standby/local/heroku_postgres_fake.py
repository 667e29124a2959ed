"""Heroku Postgres as the fake Heroku API serves it: add-ons that are real databases on a local server.

Each add-on is a database of its own, copied file by file (`CREATE DATABASE ... TEMPLATE`) from another
when Heroku would copy one: a follower starts as its leader's copy and refuses writes while it follows
(as a hot standby does); a rollback database is the leader as the fake remembered it at the newest moment
at or before the time asked for. Heroku keeps write-ahead logs and can stop at any second; the fake
remembers the states a test or the rehearsal asks it to (`remember`), which is what "the moment before the
loss" needs. What Heroku answers about a database (`pg:info`'s entries, `pg:wait`'s status) comes from
here, in the shapes the official CLI reads (src/commands/pg/*.ts in heroku/cli).
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

PROVISION_SECONDS: Final = 0.2  # how long a new database says "waiting?" (minutes on Heroku)
# Heroku's rollback window by plan tier (Dev Center, "Choosing the Right Heroku Postgres Plan").
ROLLBACK_WINDOWS: Final = {"standard": timedelta(days=4), "premium": timedelta(days=7),
                           "private": timedelta(days=7), "shield": timedelta(days=7)}  # fmt: skip
COLORS: Final = ("AMBER", "BLUE", "BRONZE", "CHARCOAL", "COBALT", "COPPER", "CRIMSON", "GOLD", "GRAY",
                 "GREEN", "IVORY", "JADE", "MAROON", "NAVY", "OLIVE", "ONYX", "ORANGE", "PINK", "PUCE")  # fmt: skip
_NUMBERS: Final = itertools.count(10001)


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")


def copy_database(source_url: str, suffix: str) -> str:
    """A file-level copy of the database at `source_url`, on the same server; its URL. PostgreSQL copies
    only a database nobody is connected to: the fake's copies are taken between a test's writes."""
    params = conninfo_to_dict(source_url)
    name = f"{str(params['dbname'])[:40]}_{suffix}"
    admin = make_conninfo("", **{**params, "dbname": "postgres"})
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(str(params["dbname"]))
            )
        )
    return _url_with(source_url, name)


def _server_version(url: str) -> str:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "unknown"


def _url_with(url: str, dbname: str) -> str:
    """`url` naming another database (the path of a postgres:// URL)."""
    head, _, rest = url.partition("://")
    authority, _, path = rest.partition("/")
    query = path.partition("?")[2]
    return f"{head}://{authority}/{dbname}" + (f"?{query}" if query else "")


def _set_read_only(url: str, on: bool) -> None:
    """A follower refuses writes from every new session, as a hot standby does; unfollowed, it takes them."""
    dbname = str(conninfo_to_dict(url)["dbname"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")  # this session starts read-only itself
        setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
        conn.execute(sql.SQL("ALTER DATABASE {} " + setting).format(sql.Identifier(dbname)))
        # Sessions already open keep the old setting; Heroku's promotion restarts the dynos anyway.


@dataclass
class FakeDatabase:
    """One Heroku Postgres add-on and the real database behind it."""

    url: str  # its resource_url: what every *_URL config var attached to it holds
    owner: dict[str, str]  # the app that owns (and is billed for) it: {"id", "name"}
    plan: str = "standard-0"
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    name: str = field(default_factory=lambda: f"postgresql-shaped-{next(_NUMBERS)}")
    leader: FakeDatabase | None = None  # the database it follows, while it follows one
    behind_by: int = 0  # commits not replayed yet: what `pg:info` shows as "Behind By"
    created_at: float = field(default_factory=lambda: time.time() - 30 * 86400)
    ready_at: float = 0.0  # monotonic time from which it is available (provisioning before)
    history: list[tuple[float, str]] = field(default_factory=list)  # (moment, a copy of it then)
    # What `pg:info` says it runs: the server's own version unless a test upgrades it (as Heroku forces).
    version: str | None = None

    @classmethod
    def follower_of(cls, leader: FakeDatabase, plan: str | None = None) -> FakeDatabase:
        """`heroku addons:create heroku-postgresql:PLAN --follow DATABASE_URL`."""
        url = copy_database(leader.url, f"follower_{uuid.uuid4().hex[:6]}")
        _set_read_only(url, True)
        return cls(url, leader.owner, plan or leader.plan, leader=leader, created_at=time.time(),
                   ready_at=time.monotonic() + PROVISION_SECONDS)  # fmt: skip

    @classmethod
    def rolled_back(cls, source: FakeDatabase, to: float, plan: str | None = None) -> FakeDatabase:
        """`heroku addons:create heroku-postgresql:PLAN --rollback DATABASE_URL --to TIME`: the source as it
        was at `to` (the newest state remembered at or before it). Raises ValueError with Heroku's reason."""
        earliest, latest = source.rollback_window()
        if earliest is None:
            raise ValueError(f"Rollback is not available on the {source.plan} plan.")
        if not earliest <= to <= latest:
            raise ValueError(
                f"Recovery time must be between {_stamp(earliest)} and {_stamp(latest)} (the rollback window)."
            )
        then = [copy for moment, copy in source.history if moment <= to]
        if not then:
            raise ValueError(
                f"no state of {source.name} from {_stamp(to)} was remembered (a limit of the fake)."
            )
        url = copy_database(then[-1], f"rollback_{uuid.uuid4().hex[:6]}")
        return cls(url, source.owner, plan or source.plan, created_at=time.time(),
                   ready_at=time.monotonic() + PROVISION_SECONDS)  # fmt: skip

    def remember(self) -> float:
        """Keep the database's state as of now, for a rollback to this moment; the moment."""
        moment = time.time()
        self.history.append((moment, copy_database(self.url, f"at_{int(moment * 1000)}")))
        return moment

    def unfollow(self) -> None:
        """`heroku pg:unfollow`: it stops replaying its leader and takes writes."""
        if self.leader is not None:
            _set_read_only(self.url, False)
            self.leader = None

    def rollback_window(self) -> tuple[float | None, float]:
        """The earliest moment a rollback may go to (None when the plan has none), and now."""
        window = ROLLBACK_WINDOWS.get(self.plan.split("-")[0])
        now = time.time()
        return (max(self.created_at, now - window.total_seconds()) if window else None), now

    @property
    def waiting(self) -> bool:
        return time.monotonic() < self.ready_at

    def info_json(self) -> dict[str, Any]:
        """`GET /client/v11/databases/{id}`, as `heroku pg:info` reads it."""
        earliest, _ = self.rollback_window()
        following = self.leader.url if self.leader else None
        entries = [
            {"name": "Plan", "values": [self.plan.replace("-", " ").title()]},
            {"name": "Status", "values": ["Preparing" if self.waiting else "Available"]},
            {"name": "PG Version", "values": [self.version or _server_version(self.url)]},
            {"name": "Created", "values": [_stamp(self.created_at)]},
            {"name": "Following", "values": [following] if following else [], "resolve_db_name": True},
            {"name": "Behind By", "values": [f"{self.behind_by} commits"] if following else []},
            {"name": "Rollback", "values": [f"earliest from {_stamp(earliest)}"] if earliest else []},
        ]
        return {
            "addon_id": self.id, "name": self.name, "plan": self.plan, "resource_url": self.url,
            "following": following, "waiting?": self.waiting, "num_bytes": 0, "info": entries,
            "leader": {"addon_id": self.leader.id, "name": self.leader.name} if self.leader else None,
        }  # fmt: skip

    def wait_status_json(self) -> dict[str, Any]:
        """`GET /client/v11/databases/{id}/wait_status`, as `heroku pg:wait` reads it."""
        return {
            "waiting?": self.waiting,
            "message": "preparing" if self.waiting else "available",
            "error?": False,
        }
