"""The primary side of every runbook: the app on Heroku, through its Platform API.

Whether Heroku answers, the fence (maintenance mode, the formation, every dyno), the database URL, the restore
of a dump into Heroku Postgres, and the app's settings (config vars and the release they make). The
Heroku client is built when first needed: a drill never talks to Heroku, so it needs no Heroku token.
The tests and the rehearsal point the client at the fake Platform API (`local/heroku_fake.py`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any, Final

from standby.errors import SafetyRefusal
from standby.heroku_api import HerokuClient, HerokuNotFound, HerokuUncertain
from standby.polling import Poll
from standby.runbook.engine import RunContext

TRANSFER_TIMEOUT: Final = 6 * 3600.0  # seconds Heroku may take to restore a dump
TRANSFER_POLL: Final = 5.0  # seconds between looks at a long transfer
FENCE_TIMEOUT: Final = 120.0  # seconds for every dyno to stop (Heroku sends SIGKILL 30 s after SIGTERM)
DYNO_POLL: Final = 1.0
STOP_GRACE: Final = 30.0  # Heroku kills a dyno 30 s after asking it to stop
LIVE_DYNO_STATES: Final = frozenset({"up", "starting", "idle"})  # not "crashed" or "down"


def backup_name(transfer: dict[str, Any]) -> str:
    """How Heroku names a captured backup: b001, ..."""
    return f"b{int(transfer['num']):03d}"


class HerokuSide:
    name = "Heroku"

    def __init__(self, app: str, make_client: Callable[[], HerokuClient] = HerokuClient.from_env) -> None:
        self.app = app
        self._make_client = make_client

    @cached_property
    def client(self) -> HerokuClient:
        return self._make_client()

    def answer(self) -> None:
        """Raises HerokuUnreachable when the Platform API does not answer about the app."""
        self.client.app(self.app)

    # --- the fence -------------------------------------------------------------------------------------

    def formation(self) -> dict[str, int]:
        return {p["type"]: int(p["quantity"]) for p in self.client.formation(self.app)}

    def in_maintenance(self) -> bool:
        return bool(self.client.app(self.app).get("maintenance"))

    def running_dynos(self) -> list[str]:
        """Dynos that run, whatever started them: maintenance mode stops none of them."""
        return sorted(
            str(d["name"]) for d in self.client.dynos(self.app) if d.get("state") in LIVE_DYNO_STATES
        )

    def is_fenced(self) -> bool:
        return self.in_maintenance() and not any(self.formation().values()) and not self.running_dynos()

    def fence(self, timeout: float | None = None) -> None:
        """Maintenance mode on (the router stops), every process type to zero, then every dyno still
        running stopped (one-off `heroku run`, Heroku Scheduler and release-phase dynos keep running
        through both) until none runs."""
        self.client.set_maintenance(self.app, True)
        self.client.scale(self.app, dict.fromkeys(self.formation(), 0))
        self.stop_dynos(timeout)

    def stop_dynos(self, timeout: float | None = None) -> None:
        """Stop every dyno that runs until none does: each is asked once, and again only after Heroku's
        own 30 s grace (the request budget is not spent on dynos already stopping)."""
        deadline = time.monotonic() + (FENCE_TIMEOUT if timeout is None else timeout)
        poll = Poll(DYNO_POLL)
        asked: dict[str, float] = {}
        while running := self.running_dynos():
            if time.monotonic() > deadline:
                raise SafetyRefusal(
                    f"Heroku still runs {', '.join(running)} after the fence tried to stop them: they may write, so "
                    f"nothing else was done. Stop them (`heroku ps:stop <dyno> --app {self.app}`), then --resume."
                )
            for name in running:
                if name not in asked or time.monotonic() - asked[name] >= STOP_GRACE:
                    with contextlib.suppress(HerokuNotFound):  # it stopped by itself meanwhile
                        self.client.stop_dyno(self.app, name)
                    asked[name] = time.monotonic()
            poll.pause()

    def is_serving(self, formation: Mapping[str, int]) -> bool:
        current = self.formation()
        wanted = {k: v for k, v in formation.items() if k in current}
        return not self.in_maintenance() and all(current[k] == v for k, v in wanted.items())

    def unfence(self, formation: Mapping[str, int]) -> None:
        known = set(self.formation())
        self.client.scale(self.app, {k: v for k, v in formation.items() if k in known})
        self.client.set_maintenance(self.app, False)

    # --- the database ----------------------------------------------------------------------------------

    def database_url(self) -> str | None:
        return self.client.config_vars(self.app).get("DATABASE_URL") or None

    def restore_database(
        self, dump_url: str, timeout: float = TRANSFER_TIMEOUT, after: int | None = None
    ) -> None:
        """Heroku's `pg:backups:restore URL` into the app's database, waited for until it succeeded; one
        still running that is newer than transfer `after` (a crashed run's) is waited for instead."""
        addon = self.client.postgres_addon(self.app)
        self._wait(
            self._start(lambda: self.client.restore_database(addon["id"], dump_url), "pg_restore", after),
            "restore",
            timeout,
        )

    def capture_backup(self, timeout: float = TRANSFER_TIMEOUT, after: int | None = None) -> str:
        """Heroku's `pg:backups:capture`, waited for: the backup's name (b001, ...), kept by Heroku."""
        addon = self.client.postgres_addon(self.app)
        transfer = self._wait(
            self._start(lambda: self.client.capture_backup(addon["id"]), "gof3r", after), "backup", timeout
        )
        return backup_name(transfer)

    def last_transfer(self) -> int:
        """The number of the app's newest transfer (0 for none): later ones are a run's own."""
        return max((int(t["num"]) for t in self.client.transfers(self.app)), default=0)

    def transfer_after(self, to_type: str, after: int, succeeded: bool = True) -> dict[str, Any] | None:
        """The newest transfer of a kind (`gof3r`: a backup, `pg_restore`: a restore) numbered after `after`
        that succeeded (or, with `succeeded=False`, is still running): what a run that crashed after
        starting one finds when it resumes. Heroku numbers the app's transfers; no clock is compared."""
        found = [
            t for t in self.client.transfers(self.app)
            if t.get("to_type") == to_type and int(t["num"]) > after
            and (bool(t.get("succeeded")) if succeeded else not t.get("finished_at"))
        ]  # fmt: skip
        return max(found, key=lambda t: int(t["num"])) if found else None

    def _start(
        self, post: Callable[[], dict[str, Any]], to_type: str, after: int | None = None
    ) -> dict[str, Any]:
        """Start a transfer once: a POST without a clear answer is never sent again (a second restore would
        run over the first); the transfer it may have created is looked for instead."""
        running = self.transfer_after(to_type, after, succeeded=False) if after is not None else None
        if running is not None:
            return running
        known = {str(t["uuid"]) for t in self.client.transfers(self.app)}
        try:
            return post()
        except HerokuUncertain as exc:
            created = [
                t
                for t in self.client.transfers(self.app)
                if str(t["uuid"]) not in known and t.get("to_type") == to_type
            ]
            if len(created) == 1:
                return created[0]
            raise SafetyRefusal(
                f"{exc} Heroku lists {len(created)} new transfers for {self.app}; check `heroku pg:backups` before you "
                "--resume."
            ) from None

    def _wait(self, transfer: dict[str, Any], what: str, timeout: float) -> dict[str, Any]:
        """Poll the transfer until it finished: often at first (a small database takes seconds), then every 5 s."""
        deadline, polls = time.monotonic() + timeout, 0
        while not transfer.get("finished_at"):
            if time.monotonic() > deadline:
                raise SafetyRefusal(
                    f"Heroku's {what} {transfer['uuid']} did not finish; check `heroku pg:backups`."
                )
            time.sleep(min(TRANSFER_POLL, 0.2 * 2**polls))
            polls += 1
            transfer = self.client.transfer(self.app, str(transfer["uuid"]))
        if not transfer.get("succeeded"):
            raise SafetyRefusal(f"Heroku's {what} {transfer['uuid']} failed; see `heroku pg:backups:info`.")
        return transfer

    # --- the app's settings ----------------------------------------------------------------------------

    def settings(self) -> dict[str, str]:
        return self.client.config_vars(self.app)

    def change_settings(self, settings: Mapping[str, str], ctx: RunContext) -> None:
        # One PATCH: Heroku makes one release with every setting and restarts the dynos on it.
        self.client.update_config_vars(self.app, settings)
        release = self.client.newest_release(self.app)
        ctx.facts["release"] = release["version"] if release else None

    def settings_live(self, ctx: RunContext) -> bool:
        """The change's release succeeded; one that failed ends the wait at once, with its status."""
        release = self.client.newest_release(self.app)
        if release is None or release["version"] != ctx.facts.get("release"):
            return False
        if release["status"] == "failed":
            raise SafetyRefusal(
                f"Heroku's release v{release['version']} ({release.get('description', 'the settings change')}) failed: "
                f"the new settings are set but the dynos do not run them. See `heroku releases:info "
                f"v{release['version']} --app {self.app}` and `heroku releases:output`, fix it, then --resume."
            )
        return bool(release["status"] == "succeeded")
