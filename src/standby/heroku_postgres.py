"""Heroku Postgres as the recoveries on Heroku see it: the app's databases, a follower and its lag, the
rollback window, a database becoming available, and the promotion that makes one the app's DATABASE.

The calls are the official CLI's (heroku/cli, src/commands/pg/*.ts): add-ons and attachments on the
Platform API; `pg:info`'s database document, `pg:wait`'s status and `pg:unfollow` on the data API; the
promotion is `pg:promote`'s two attachments (an alias that keeps the old database attached, then
DATABASE moved with `confirm`). Heroku then sets DATABASE_URL and restarts the dynos in a release.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from standby.errors import SafetyRefusal
from standby.heroku_api import HerokuClient

SERVICE: Final = "heroku-postgresql"
WAIT_POLL: Final = 0.5  # seconds between `pg:wait` looks at first; Heroku takes minutes, the fake less


@dataclass(frozen=True)
class HerokuDatabase:
    """One Heroku Postgres add-on of the app, with the names it is attached under here."""

    id: str
    name: str
    plan: str  # heroku-postgresql:standard-0
    attachments: tuple[str, ...]
    state: str = "provisioned"
    owner: str = ""  # the app that owns (and is billed for) it; another app's is only attached here

    @property
    def is_primary(self) -> bool:
        return "DATABASE" in self.attachments

    @property
    def url_var(self) -> str | None:
        """The config var that holds its URL under a name of its own (HEROKU_POSTGRESQL_JADE_URL)."""
        own = [a for a in self.attachments if a != "DATABASE"]
        return f"{own[0]}_URL" if own else ("DATABASE_URL" if self.is_primary else None)

    def label(self) -> str:
        return f"{self.name} ({', '.join(self.attachments) or 'not attached'}; {self.plan.removeprefix(SERVICE + ':')})"


@dataclass(frozen=True)
class DatabaseInfo:
    """What `heroku pg:info` says of one database."""

    following_url: str | None  # the leader's URL, while it follows one
    behind_by: str | None  # Heroku's words: "125 commits"
    rollback_earliest: datetime | None  # None: the plan keeps no rollback window
    waiting: bool
    version: str | None = None  # "PG Version": 17.4

    @property
    def following(self) -> bool:
        return self.following_url is not None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DatabaseInfo:
        entries = {str(e.get("name")): list(e.get("values") or []) for e in doc.get("info") or []}
        rollback = entries.get("Rollback") or []
        return cls(
            following_url=str(doc["following"]) if doc.get("following") else None,
            behind_by=str(entries["Behind By"][0]) if entries.get("Behind By") else None,
            rollback_earliest=_earliest(str(rollback[0])) if rollback else None,
            waiting=bool(doc.get("waiting?")),
            version=str(entries["PG Version"][0]) if entries.get("PG Version") else None,
        )


def _earliest(text: str) -> datetime:
    """`earliest from 2026-11-29 07:15 UTC` (Heroku's words in `pg:info`'s Rollback entry)."""
    stamp = text.strip().removeprefix("earliest").strip().removeprefix("from").strip().removesuffix("UTC")
    try:
        return datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    except ValueError:
        raise SafetyRefusal(
            f"Heroku's rollback window reads {text!r}, which standby cannot parse: check `heroku pg:info` and "
            "recover by hand (`heroku addons:create heroku-postgresql:<plan> --rollback DATABASE_URL --to ...`)."
        ) from None


def app_databases(client: HerokuClient, app: str) -> list[HerokuDatabase]:
    """The app's Heroku Postgres add-ons, the one attached as DATABASE first."""
    attached: dict[str, list[str]] = {}
    for attachment in client.addon_attachments(app):
        attached.setdefault(str(attachment["addon"]["id"]), []).append(str(attachment["name"]))
    found = [
        HerokuDatabase(
            str(a["id"]), str(a["name"]), str(a["plan"]["name"]),
            tuple(sorted(attached.get(str(a["id"]), []), key=lambda n: (n != "DATABASE", n))),
            str(a.get("state") or "provisioned"), str((a.get("app") or {}).get("name") or ""),
        )
        for a in client.addons(app)
        if a.get("addon_service", {}).get("name") == SERVICE
    ]  # fmt: skip
    return sorted(found, key=lambda d: (not d.is_primary, d.name))


def same_database(url: str | None, other: str | None) -> bool:
    """Whether two URLs name one database, as the official CLI matches them (scheme, host, port, path):
    `pg:info`'s `following` carries no credential, DATABASE_URL does."""
    if not url or not other:
        return False

    def where(text: str) -> tuple[Any, ...]:
        parts = urlsplit(text)  # a local socket's folder is in the query (?host=...), a server's is not
        return (
            parts.scheme.removesuffix("ql"),
            parts.hostname,
            parts.port,
            parts.path,
            parts.hostname or parts.query,
        )

    return where(url) == where(other)


def primary_database(databases: list[HerokuDatabase], app: str) -> HerokuDatabase:
    primary = next((d for d in databases if d.is_primary), None)
    if primary is None or primary.owner != app:
        raise SafetyRefusal(
            f"{app} has no Heroku Postgres add-on of its own attached as DATABASE (`heroku addons`): a database "
            "another app owns is recovered from that app."
        )
    return primary


def info(client: HerokuClient, database: HerokuDatabase) -> DatabaseInfo:
    return DatabaseInfo.from_json(client.database_info(database.id))


def wait_available(client: HerokuClient, database: HerokuDatabase, timeout: float) -> None:
    """`heroku pg:wait`: until Heroku says the database is no longer preparing."""
    deadline, polls = time.monotonic() + timeout, 0
    while True:
        status = client.database_wait_status(database.id)
        if status.get("error?"):
            raise SafetyRefusal(f"Heroku could not prepare {database.name}: {status.get('message')}.")
        if not status.get("waiting?"):
            return
        if time.monotonic() > deadline:
            raise SafetyRefusal(
                f"{database.name} is still {status.get('message')} after {timeout:.0f} s; `heroku pg:wait` "
                "shows when it is ready, then --resume."
            )
        time.sleep(min(5.0, WAIT_POLL * 2 ** min(polls, 4)))
        polls += 1


def wait_newest_release(client: HerokuClient, app: str, timeout: float) -> None:
    """The release a change of attachment made has succeeded: dynos that start before it run the release
    before, with the old DATABASE_URL. A failed one refuses (its release phase, most often)."""
    deadline = time.monotonic() + timeout
    while True:
        release = client.newest_release(app)
        status = release.get("status") if release else "succeeded"
        if status == "succeeded":
            return
        if status == "failed" or time.monotonic() > deadline:
            assert release is not None
            raise SafetyRefusal(
                f"release v{release['version']} ({release.get('description')}) is {status}: the dynos would run the "
                f"release before it, on the old DATABASE_URL. See `heroku releases:output v{release['version']}`, "
                "fix it, then --resume."
            )
        time.sleep(WAIT_POLL)


def promote(client: HerokuClient, app: str, database: HerokuDatabase, old: HerokuDatabase) -> None:
    """`heroku pg:promote`: keep the old database attached under a name of its own (when DATABASE is its
    only one), then attach `database` as DATABASE. Heroku sets DATABASE_URL and restarts the dynos."""
    if not [a for a in old.attachments if a != "DATABASE"]:
        client.attach_addon(app, old.id)  # Heroku names it HEROKU_POSTGRESQL_<COLOR>
    client.attach_addon(app, database.id, "DATABASE")


def state_lines(client: HerokuClient, app: str) -> list[str]:
    """The app as a recovery changes it: its release, maintenance, formation and databases."""
    release = client.newest_release(app)
    about = client.app(app)
    formation = ", ".join(f"{p['type']}={p['quantity']}" for p in client.formation(app)) or "none"
    lines = [
        f"release     v{release['version']} {release.get('description', '')} ({release.get('status')})"
        if release else "release     none",
        f"app         maintenance {'on' if about.get('maintenance') else 'off'}; formation {formation}",
    ]  # fmt: skip
    lines += [f"database    {d.label()}" for d in app_databases(client, app)]
    return lines
