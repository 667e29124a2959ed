"""Roll a faulty release back on Heroku, as runbook steps: find the target, roll back, wait for the new
release and for the app's health URL.

A rollback creates a new release that runs an older release's slug and config (Heroku runs the release
phase for it too). Code goes back; a schema migration does not: the preflight warns when one ran since
the target (a release phase ran, or the app's `schema_migrations` table holds more rows than in the
newest backup from before the target).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from standby import live_side
from standby.errors import SafetyRefusal, StandbyError
from standby.heroku_api import HerokuApiError, HerokuUncertain
from standby.pg_url import parse_database_url
from standby.runbook.engine import RunContext, Step
from standby.runbook.environment import EnvStep, RunbookEnv

MIGRATIONS_TABLE: Final = "public.schema_migrations"  # Rails' and many others'; Django's is django_migrations
POLL_SECONDS: Final = 0.5


@dataclass(frozen=True)
class Target:
    """What the operator asked for: a version (`--to v41`), or None for the previous good release."""

    version: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> Target:
        if text is None:
            return cls()
        digits = text.removeprefix("v")
        if not digits.isdigit():
            raise SafetyRefusal(f"--to {text!r} is not a release: name one as v41 (see `heroku releases`).")
        return cls(int(digits))


def _version(release: dict[str, Any]) -> str:
    return f"v{release['version']}"


def _line(release: dict[str, Any]) -> str:
    current = ", current" if release.get("current") else ""
    return f"{_version(release)} ({release.get('status')}{current}) {release.get('description', '')}"


class RollbackStep(EnvStep):
    def releases(self) -> list[dict[str, Any]]:
        return self.env.primary.client.releases(self.env.app)


class Preflight(RollbackStep):
    """Resolve the release to roll back from (the current one) and to; refuse what cannot be a target."""

    name = "preflight"

    def __init__(self, env: RunbookEnv, target: Target) -> None:
        super().__init__(env)
        self.target = target

    def is_done(self, ctx: RunContext) -> bool:
        return "to_release" in ctx.facts

    def plan(self, ctx: RunContext) -> str:
        try:
            current, target, warnings = self.resolve()
        except (SafetyRefusal, HerokuApiError) as exc:
            return f"refused: {exc}"
        lines = [
            f"now {_line(current)}",
            f"roll back to {_line(target)}",
            *(f"warning: {w}" for w in warnings),
        ]
        return "; ".join(lines)

    def resolve(self) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        releases = self.releases()
        current = next((r for r in releases if r.get("current")), None)
        if current is None:
            raise SafetyRefusal(f"{self.env.app} has no current release: nothing to roll back.")
        older = [r for r in releases if int(r["version"]) < int(current["version"])]
        if self.target.version is None:
            target = next(
                (r for r in older if r.get("status") == "succeeded" and r.get("eligible_for_rollback")), None
            )
            if target is None:
                raise SafetyRefusal(f"no good release before {_version(current)} to roll back to.")
        else:
            target = next((r for r in releases if int(r["version"]) == self.target.version), None)
            recent = ", ".join(_line(r) for r in releases[:5])
            if target is None:
                raise SafetyRefusal(
                    f"{self.env.app} has no release v{self.target.version}. Its newest: {recent}."
                )
            if target is current:
                raise SafetyRefusal(f"v{self.target.version} is the current release already: nothing to do.")
            if target.get("status") != "succeeded":
                raise SafetyRefusal(
                    f"v{self.target.version} {target.get('status')}: it never ran, so it is no release to go back "
                    f"to. Its newest: {recent}."
                )
            if not target.get("eligible_for_rollback"):
                raise SafetyRefusal(
                    f"Heroku will not roll back to v{self.target.version} (it changed add-ons): pick another."
                )
        return current, target, self._migration_warnings(releases, current, target)

    def _migration_warnings(
        self, releases: list[dict[str, Any]], current: dict[str, Any], target: dict[str, Any]
    ) -> list[str]:
        since = [r for r in releases if int(target["version"]) < int(r["version"]) <= int(current["version"])]
        warnings = [
            f"the release phase ran in {', '.join(_version(r) for r in since if r.get('output_stream_url'))} since "
            f"{_version(target)}: if it migrated the schema, the old code meets the new schema (a rollback "
            "does not undo a migration)"
        ] if any(r.get("output_stream_url") for r in since) else []  # fmt: skip
        grew = self._migrations_grew(str(target["created_at"]))
        if grew:
            warnings.append(grew)
        return warnings

    def _migrations_grew(self, target_created_at: str) -> str | None:
        """Whether `schema_migrations` has more rows now than in the newest backup from before the target."""
        # Heroku's times have whole seconds: a backup in the target's second counts as before it.
        before = datetime.fromisoformat(target_created_at.replace("Z", "+00:00")) + timedelta(seconds=1)
        backups = [e.manifest for e in self.env.catalog() if e.manifest and e.manifest.snapshot_at <= before]
        then = max(backups, key=lambda m: m.snapshot_at, default=None)
        if then is None or MIGRATIONS_TABLE not in then.tables:
            return None
        try:
            url = self.env.primary.client.config_vars(self.env.app)["DATABASE_URL"]
            with parse_database_url(url, "Heroku DATABASE_URL").connect(connect_timeout=10) as conn:
                row = conn.execute(f"SELECT count(*) FROM {MIGRATIONS_TABLE}").fetchone()
        except Exception as exc:  # a warning only: the rollback itself does not need the database
            return f"could not count {MIGRATIONS_TABLE} ({type(exc).__name__}); check for migrations by hand"
        now = int(row[0]) if row else 0
        if now > then.tables[MIGRATIONS_TABLE]:
            return (
                f"{MIGRATIONS_TABLE} has {now} rows, {then.tables[MIGRATIONS_TABLE]} in backup {then.backup_id} "
                "from before the target: migrations ran since, and a rollback does not undo them"
            )
        return None

    def apply(self, ctx: RunContext) -> None:
        live_side.require_heroku(self.env.manifest, "a rollback")
        current, target, warnings = self.resolve()
        for warning in warnings:
            ctx.say(f"  warning: {warning}")
        ctx.facts["from_release"] = {"id": current["id"], "version": int(current["version"])}
        ctx.facts["to_release"] = {"id": target["id"], "version": int(target["version"])}
        ctx.facts["warnings"] = warnings
        ctx.facts["started_at"] = datetime.now(UTC).isoformat()
        ctx.say(f"  now {_line(current)}; rolling back to {_line(target)}")


class RollBack(RollbackStep):
    name = "roll_back"

    def _made(self, ctx: RunContext) -> dict[str, Any] | None:
        """The rollback release this run made (found, not remembered: a lost answer made one too)."""
        after, to = ctx.facts["from_release"]["version"], ctx.facts["to_release"]["version"]
        return next(
            (r for r in self.releases()
             if int(r["version"]) > after and r.get("description") == f"Rollback to v{to}"), None,
        )  # fmt: skip

    def is_done(self, ctx: RunContext) -> bool:
        made = self._made(ctx)
        if made is not None:
            ctx.facts["new_release"] = {"id": made["id"], "version": int(made["version"])}
        return made is not None

    def plan(self, ctx: RunContext) -> str:
        return "create the rollback release (Heroku runs the target's slug and config, and its release phase)"

    def apply(self, ctx: RunContext) -> None:
        try:
            made = self.env.primary.client.rollback(self.env.app, ctx.facts["to_release"]["id"])
        except HerokuUncertain:
            found = self._made(ctx)  # the answer was lost, the release may exist: adopt it, never make two
            if found is None:
                raise
            made = found
        ctx.facts["new_release"] = {"id": made["id"], "version": int(made["version"])}
        ctx.say(f"  created {_version(made)}")


class WaitRelease(RollbackStep):
    name = "wait_release"

    def is_done(self, ctx: RunContext) -> bool:
        return self._status(ctx) == "succeeded"

    def _status(self, ctx: RunContext) -> str:
        release = ctx.facts.get("new_release")
        if not release:
            return "unknown"
        return str(self.env.primary.client.release(self.env.app, release["id"]).get("status"))

    def plan(self, ctx: RunContext) -> str:
        return f"wait up to {self.env.health_timeout:.0f} s for the new release to succeed"

    def apply(self, ctx: RunContext) -> None:
        deadline = time.monotonic() + self.env.health_timeout
        version = ctx.facts["new_release"]["version"]
        while (status := self._status(ctx)) == "pending":
            if time.monotonic() > deadline:
                raise StandbyError(f"v{version} is still pending after {self.env.health_timeout:.0f} s.")
            time.sleep(POLL_SECONDS)
        if status != "succeeded":
            raise StandbyError(
                f"the rollback release v{version} {status} (its release phase, see `heroku releases:output "
                f"v{version}`): v{ctx.facts['from_release']['version']} still runs."
            )


class WaitHealthy(RollbackStep):
    name = "wait_healthy"

    def __init__(self, env: RunbookEnv, health_url: str | None) -> None:
        super().__init__(env)
        self.health_url = health_url

    def url(self) -> str:
        if self.health_url:
            return self.health_url
        records = self.env.manifest.records
        host = records[0]["hostname"] if records else f"{self.env.app}.herokuapp.com"
        return f"https://{host}{self.env.manifest.health_check_path}"

    def is_done(self, ctx: RunContext) -> bool:
        return "healthy_at" in ctx.facts

    def plan(self, ctx: RunContext) -> str:
        return f"wait up to {self.env.health_timeout:.0f} s for {self.url()} to answer 2xx"

    def apply(self, ctx: RunContext) -> None:
        deadline, last = time.monotonic() + self.env.health_timeout, ""
        while True:
            try:
                with urllib.request.urlopen(self.url(), timeout=5) as answer:
                    if 200 <= answer.status < 300:
                        break
                    last = f"HTTP {answer.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                last = type(exc).__name__
            if time.monotonic() > deadline:
                raise StandbyError(
                    f"{self.url()} did not answer 2xx within {self.env.health_timeout:.0f} s ({last})."
                )
            time.sleep(POLL_SECONDS)
        now = datetime.now(UTC)
        ctx.facts["healthy_at"] = now.isoformat()
        ctx.facts["rto_seconds"] = round(
            (now - datetime.fromisoformat(ctx.facts["started_at"])).total_seconds(), 1
        )
        ctx.facts["verified"] = True


def rollback_steps(env: RunbookEnv, target: Target, health_url: str | None) -> list[Step]:
    return [Preflight(env, target), RollBack(env), WaitRelease(env), WaitHealthy(env, health_url)]
