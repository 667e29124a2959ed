"""Which of Heroku's databases a scheduled backup dumps: a follower that keeps up, else the primary.

Heroku advises taking the backups of a large database from a follower: the dump then loads the follower,
not the primary the app writes to. A follower serves only while it keeps up: one more than `max_behind`
commits behind its leader (`pg:info`'s "Behind By"), still preparing, or that cannot be looked at, and the
backup dumps the primary instead. The manifest records which one and why (`BackupManifest.source_database`
and `source_note`), so the RPO a backup gives is never guessed: a follower's data trails the primary's by
what it was behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from standby.errors import ConfigError, StandbyError
from standby.heroku_api import HerokuClient
from standby.heroku_postgres import app_databases, info, same_database

DEFAULT_MAX_BEHIND: Final = 1000  # commits: a few seconds of a busy app
PRIMARY: Final = "primary"


@dataclass(frozen=True)
class BackupSource:
    url: str
    database: str  # "primary", or "follower <add-on name>"
    note: str  # why this one: its lag, or why no follower served
    primary_url: str = ""  # Heroku's DATABASE_URL, whichever was dumped (the cutover fences it)


def heroku_source(client: HerokuClient, app: str, max_behind: int | None) -> BackupSource:
    """The database to dump; `max_behind` None: the primary, whatever followers there are."""
    config = client.config_vars(app)
    leader = config.get("DATABASE_URL")
    if not leader:
        raise ConfigError([f"the Heroku app {app} has no DATABASE_URL config var. Pass --source-url."])
    if max_behind is None:
        return BackupSource(leader, PRIMARY, "followers not used (--from primary)", leader)
    passed: list[str] = []
    serving: list[tuple[int, BackupSource]] = []
    try:
        for database in app_databases(client, app):
            if database.is_primary:
                continue
            about = info(client, database)
            if not (about.following and same_database(about.following_url, leader)):
                continue  # not a follower of this primary
            behind = _commits(about.behind_by)
            url = config.get(database.url_var or "")
            why = (
                "still preparing" if about.waiting
                else f"its lag is unknown ({about.behind_by!r})" if behind is None
                else f"{behind} commits behind, over the bound of {max_behind}" if behind > max_behind
                else "no config var holds its URL" if not url
                else None
            )  # fmt: skip
            if why is not None:
                passed.append(f"follower {database.name} {why}")
            elif url and behind is not None:
                note = f"{behind} commits behind the primary when the backup started"
                serving.append((behind, BackupSource(url, f"follower {database.name}", note, leader)))
    except StandbyError as exc:
        passed.append(f"followers not looked at: {' '.join(str(exc).split())}")
    if serving:
        return min(serving, key=lambda pair: pair[0])[1]
    return BackupSource(leader, PRIMARY, "; ".join(passed) or "no follower", leader)


def _commits(behind_by: str | None) -> int | None:
    """Heroku's "125 commits" as 125."""
    match = re.fullmatch(r"\s*(\d+)\s+commits?\s*", behind_by or "")
    return int(match.group(1)) if match else None
