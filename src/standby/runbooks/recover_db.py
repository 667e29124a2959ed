"""Recover the app's database on Heroku itself, as runbook steps, three ways:

- `follower`: promote the Heroku follower to be the app's DATABASE (the leader is lost or broken);
- `point-in-time`: a Heroku rollback database at a moment before the loss, compared table by table with
  the database in use, promoted once the operator confirms; the old database stays attached;
- `from-backup`: one of our own verified off-Heroku backups restored into the app's database (when
  Heroku's history cannot help), after a Heroku backup of what it holds now.

Every change of database happens with the app fenced (maintenance mode, no dyno: a worker writing to the
old database while DATABASE_URL moves would lose its writes), then the app comes back and must answer.
Only while Heroku is the live side: after a cutover, the data lives on AWS.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import psycopg

from standby import aws_clients, catalog, live_side, recovery_mark
from standby.backup import count_rows
from standby.errors import SafetyRefusal, StandbyError
from standby.heroku_api import HerokuApiError, HerokuUncertain
from standby.heroku_postgres import (
    HerokuDatabase,
    app_databases,
    info,
    primary_database,
    promote,
    same_database,
    state_lines,
    wait_available,
    wait_newest_release,
)
from standby.pg_url import Database, parse_database_url
from standby.restore import verify_counts
from standby.runbook.engine import RunContext, Step
from standby.runbook.environment import EnvStep, RunbookEnv
from standby.runbooks.failback import URL_LIFETIME, CaptureHeroku
from standby.runbooks.rollback import WaitHealthy

MODES: Final = ("follower", "point-in-time", "from-backup")
PROVISION_TIMEOUT: Final = 4 * 3600.0  # seconds Heroku may take to prepare a rollback database
UNFOLLOW_TIMEOUT: Final = 600.0  # seconds for a follower to stop following

Confirm = Callable[[str], bool]


@dataclass(frozen=True)
class Recovery:
    """What the operator asked for."""

    mode: str
    follower: str | None = None  # follower: which one, when the app has several
    at: datetime | None = None  # point-in-time: the moment to go back to
    backup: str | None = None  # from-backup: the backup id
    formation: dict[str, int] | None = None  # what to bring back, when the app runs no dyno already

    def asked(self) -> dict[str, Any]:
        """What this run was asked for, as the journal keeps it: a resume must ask for the same."""
        return {"mode": self.mode, "follower": self.follower, "at": self.at.isoformat() if self.at else None,
                "backup": self.backup}  # fmt: skip


def _seconds_since(moment: datetime) -> float:
    return round((datetime.now(UTC) - moment).total_seconds(), 1)


def _ref(database: HerokuDatabase) -> dict[str, str]:
    return {"id": database.id, "name": database.name}


class RecoveryStep(EnvStep):
    def databases(self) -> list[HerokuDatabase]:
        return app_databases(self.env.primary.client, self.env.app)

    def database(self, ref: dict[str, str]) -> HerokuDatabase:
        found = next((d for d in self.databases() if d.id == ref["id"]), None)
        if found is None:
            raise SafetyRefusal(f"{ref['name']} is no longer an add-on of {self.env.app} (`heroku addons`).")
        return found

    def url(self, database: HerokuDatabase) -> str:
        var = database.url_var
        url = self.env.primary.settings().get(var) if var else None
        if not url:
            raise SafetyRefusal(
                f"{database.name} has no URL in {self.env.app}'s config vars: is it attached?"
            )
        return url

    def require_heroku_live(self) -> None:
        """Heroku is where the app is live: after a cutover its data is on AWS."""
        live_side.require_heroku(self.env.manifest, "recovering the database")

    def show_state(self, ctx: RunContext) -> None:
        for line in state_lines(self.env.primary.client, self.env.app):
            ctx.say(f"  now {line}")


class Preflight(RecoveryStep):
    """Heroku answers and is where the app is live; the recovery's target resolved, or refused."""

    name = "preflight"

    def __init__(self, env: RunbookEnv, recovery: Recovery) -> None:
        super().__init__(env)
        self.recovery = recovery

    def is_done(self, ctx: RunContext) -> bool:
        """Checked on every run, a resume's too: the journal's recovery is the one asked for, and Heroku is
        still where the app is live (a cutover may have come while a killed run's lock lapsed)."""
        begun = ctx.facts.get("asked")
        if begun is not None and begun != self.recovery.asked():
            shown = " ".join(f"{k}={v}" for k, v in begun.items() if v)
            raise SafetyRefusal(
                f"the unfinished recover_db run was asked for {shown}: resume it with the same arguments, or "
                "discard it with --restart."
            )
        if begun is not None:
            self.require_heroku_live()
        return "started_at" in ctx.facts

    def plan(self, ctx: RunContext) -> str:
        try:
            lines = [*state_lines(self.env.primary.client, self.env.app), *self.resolve()[1]]
        except (SafetyRefusal, HerokuApiError) as exc:
            return f"refused: {exc}"
        return "\n      ".join(["show the state and resolve the target", *lines])

    def resolve(self) -> tuple[dict[str, Any], list[str]]:
        """The facts the later steps need and what to tell the operator; refuses what cannot be done."""
        databases = self.databases()
        primary = primary_database(databases, self.env.app)
        facts: dict[str, Any] = {"mode": self.recovery.mode, "primary_db": _ref(primary)}
        if self.recovery.mode == "follower":
            return self._follower(databases, primary, facts)
        if self.recovery.mode == "point-in-time":
            return self._point_in_time(databases, primary, facts)
        return self._from_backup(facts)

    def _follower(
        self, databases: list[HerokuDatabase], primary: HerokuDatabase, facts: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        client = self.env.primary.client
        leader = self.env.primary.database_url()
        followers = [
            (d, i) for d in databases if not d.is_primary and (i := info(client, d)).following
            and same_database(i.following_url, leader)
        ]  # fmt: skip
        wanted = self.recovery.follower
        if wanted:
            followers = [(d, i) for d, i in followers if wanted in (d.name, *d.attachments)]
        if not followers:
            raise SafetyRefusal(
                f"{self.env.app} has no follower{' ' + repr(wanted) if wanted else ''} of {primary.name} to promote "
                "(`heroku pg:info`; one that follows another database does not count). Recover with point-in-time "
                "or from-backup instead."
            )
        if len(followers) > 1:
            names = ", ".join(d.name for d, _ in followers)
            raise SafetyRefusal(f"{self.env.app} has several followers ({names}): name one with --follower.")
        follower, about = followers[0]
        facts.update(target_db=_ref(follower), lag_at_start=about.behind_by)
        return facts, [
            f"promote     {follower.label()}, behind by {about.behind_by or 'unknown'}, to DATABASE"
        ]

    def _point_in_time(
        self, databases: list[HerokuDatabase], primary: HerokuDatabase, facts: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        at = self.recovery.at
        assert at is not None
        earliest = info(self.env.primary.client, primary).rollback_earliest
        if earliest is None:
            raise SafetyRefusal(
                f"{primary.name} ({primary.plan}) keeps no rollback window: Heroku's Essential plans cannot "
                "recover to a point in time. Recover from-backup instead."
            )
        now = datetime.now(UTC)
        if not earliest <= at <= now:
            raise SafetyRefusal(
                f"{at.isoformat()} is outside {primary.name}'s rollback window, {earliest.isoformat()} to now "
                f"({now.isoformat(timespec='seconds')}): choose a time in it, or recover from-backup."
            )
        facts.update(at=at.isoformat(), known_addons=[d.id for d in databases], plan=primary.plan)
        return facts, [
            f"create      a rollback database of {primary.name} at {at.isoformat()} (window from "
            f"{earliest.isoformat()}); compare it table by table; promote it once you confirm; "
            f"{primary.name} stays attached"
        ]

    def _from_backup(self, facts: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        entry = catalog.select_backup(self.env.catalog(), self.recovery.backup or "")
        manifest = entry.manifest
        assert manifest is not None
        if manifest.parallel:
            raise SafetyRefusal(
                f"backup {manifest.backup_id} is a parallel backup ({len(manifest.files)} files), and Heroku's "
                "pg:backups:restore takes one dump file. Choose a single-stream backup from before the damage "
                "(`python scripts/backup.py list`: FILES 1), or recover with point-in-time. Schedule `--streams 1` "
                "(docs/backups.md) to keep backups Heroku can restore."
            )
        facts.update(backup_id=manifest.backup_id)
        return facts, [
            f"restore     backup {manifest.backup_id} (data from {manifest.snapshot_at.isoformat()}, "
            f"{manifest.size / 1e6:.1f} MB, {len(manifest.tables)} tables) into DATABASE, after a Heroku backup "
            "of what it holds now"
        ]

    def apply(self, ctx: RunContext) -> None:
        self.require_heroku_live()
        facts, lines = self.resolve()
        for line in lines:
            ctx.say(f"  {line}")
        if self.recovery.mode == "from-backup":
            facts["dump_version"] = verified_dump_version(self.env, facts["backup_id"])
        formation = self.recovery.formation or self.env.primary.formation()
        if not any(formation.values()):
            raise SafetyRefusal(
                f"{self.env.app} runs no dyno (its formation is all zero, fenced by hand?): what to bring back after "
                "the recovery is unknown. Name it: --formation web=2,worker=1."
            )
        ctx.facts.update(
            facts, asked=self.recovery.asked(), formation=formation,
            last_transfer=self.env.primary.last_transfer() if self.recovery.mode == "from-backup" else 0,
            started_at=datetime.now(UTC).isoformat(),
        )  # fmt: skip


def verified_dump_version(env: RunbookEnv, backup_id: str) -> str | None:
    """Read the backup's dump whole and check its size and sha256 against its (signed) manifest; the S3
    version read, so that Heroku later fetches exactly these bytes and not a dump put there since."""
    entry = catalog.select_backup(env.catalog(), backup_id)
    manifest = entry.manifest
    assert manifest is not None
    s3 = aws_clients.client("s3", env.manifest.region)
    bucket = env.manifest.backup_bucket
    try:
        version = s3.head_object(Bucket=bucket, Key=manifest.dump_key).get("VersionId")
    except s3.exceptions.ClientError:
        raise SafetyRefusal(f"backup {backup_id}'s dump is missing: choose another backup.") from None
    body = (
        s3.get_object(Bucket=bucket, Key=manifest.dump_key, VersionId=version)
        if version
        else s3.get_object(Bucket=bucket, Key=manifest.dump_key)
    )
    digest, size = hashlib.sha256(), 0
    for chunk in body["Body"].iter_chunks(1024 * 1024):
        digest.update(chunk)
        size += len(chunk)
    if (size, digest.hexdigest()) != (manifest.size, manifest.sha256):
        raise SafetyRefusal(
            f"backup {backup_id} does not verify: its dump is {size} bytes with sha256 {digest.hexdigest()[:12]}..., "
            f"its manifest says {manifest.size} bytes and {manifest.sha256[:12]}...: it was truncated or replaced. "
            "Nothing was changed; choose another backup (`python scripts/backup.py list`)."
        )
    return str(version) if version else None


class FenceApp(RecoveryStep):
    """Maintenance mode, every process type to zero, every dyno stopped: nothing writes while the database
    changes. The formation to bring back was journaled by the preflight; it is taken again here while the
    app still runs (it may have been scaled since), never from a fenced app."""

    name = "fence_app"
    updates = ("formation",)

    def is_done(self, ctx: RunContext) -> bool:
        return self.env.primary.is_fenced()

    def plan(self, ctx: RunContext) -> str:
        return "maintenance mode on, every process type to zero, every dyno stopped"

    def apply(self, ctx: RunContext) -> None:
        running = self.env.primary.formation()
        if any(running.values()):
            ctx.facts["formation"] = running
        # Recorded first: a `pulumi up -s primary` meanwhile keeps Heroku at zero instead of waking it.
        self.env.standby.record_primary_fenced(
            f"fenced by recover_db run {ctx.run_id}; it brings Heroku back"
        )
        self.env.primary.fence()


class CreateRollbackDatabase(RecoveryStep):
    name = "create_rollback_db"

    def _made(self, ctx: RunContext) -> HerokuDatabase | None:
        """The rollback database this run made (found, not remembered: a lost answer made one too)."""
        new = [d for d in self.databases() if d.id not in ctx.facts["known_addons"]]
        if len(new) > 1:
            raise SafetyRefusal(
                f"{len(new)} databases were added to {self.env.app} since this run began ({', '.join(d.name for d in new)}): "
                "which one is the rollback is unclear. Destroy the ones not wanted (`heroku addons`), then --resume."
            )
        return new[0] if new else None

    def is_done(self, ctx: RunContext) -> bool:
        made = self._made(ctx)
        if made is not None:
            ctx.facts["target_db"] = _ref(made)
        return made is not None

    def plan(self, ctx: RunContext) -> str:
        return f"create a Heroku rollback database at {ctx.facts.get('at', 'the time asked')}"

    def apply(self, ctx: RunContext) -> None:
        at = datetime.fromisoformat(ctx.facts["at"])
        config = {"rollback": "DATABASE_URL", "to": at.isoformat(sep=" ")}
        try:
            self.env.primary.client.create_addon(self.env.app, ctx.facts["plan"], config)
        except HerokuUncertain:
            if self._made(ctx) is None:  # the answer was lost and nothing was made: say so
                raise
        made = self._made(ctx)
        assert made is not None
        ctx.facts["target_db"] = _ref(made)
        ctx.say(f"  created {made.label()}")


class WaitAvailable(RecoveryStep):
    name = "wait_available"

    def is_done(self, ctx: RunContext) -> bool:
        return not info(self.env.primary.client, self.database(ctx.facts["target_db"])).waiting

    def plan(self, ctx: RunContext) -> str:
        return "wait until Heroku has prepared it (`heroku pg:wait`)"

    def apply(self, ctx: RunContext) -> None:
        wait_available(self.env.primary.client, self.database(ctx.facts["target_db"]), PROVISION_TIMEOUT)


def _counts(url: str, what: str) -> dict[str, int]:
    with parse_database_url(url, what).connect(connect_timeout=15) as conn:
        return count_rows(conn)


class CompareCounts(RecoveryStep):
    """Every table's rows in the rollback database beside the database in use, for the operator to judge."""

    name = "compare_counts"

    def is_done(self, ctx: RunContext) -> bool:
        return "counts" in ctx.facts

    def plan(self, ctx: RunContext) -> str:
        return "count every table's rows in both databases and show them side by side"

    def apply(self, ctx: RunContext) -> None:
        target = self.database(ctx.facts["target_db"])
        restored = _counts(self.url(target), f"{target.name}'s URL")
        if not restored:
            raise SafetyRefusal(
                f"{target.name} holds no table: it is not the app's data. Nothing was promoted."
            )
        try:
            current: dict[str, int] | None = _counts(
                self.url(self.database(ctx.facts["primary_db"])), "DATABASE_URL"
            )
        except (psycopg.Error, StandbyError) as exc:  # the database in use may be the broken one
            ctx.say(
                f"  the database in use could not be counted ({type(exc).__name__}): only the rollback's shown"
            )
            current = None
        tables = sorted(set(restored) | set(current or {}))
        ctx.facts["counts"] = {t: [(current or {}).get(t), restored.get(t)] for t in tables}
        ctx.say(f"  {'table':<40} {'in use':>12} {'rollback':>12}")
        for table, (now, then) in ctx.facts["counts"].items():
            mark = "" if now == then else "  *"
            ctx.say(
                f"  {table:<40} {'-' if now is None else now:>12} {'-' if then is None else then:>12}{mark}"
            )


class ConfirmPromotion(RecoveryStep):
    """The operator looks at the comparison and says whether the rollback database becomes DATABASE."""

    name = "confirm_promotion"

    def __init__(self, env: RunbookEnv, confirm: Confirm) -> None:
        super().__init__(env)
        self.confirm = confirm

    def is_done(self, ctx: RunContext) -> bool:
        return bool(ctx.facts.get("promotion_confirmed"))

    def plan(self, ctx: RunContext) -> str:
        return "ask you to confirm the promotion, with the comparison in front of you"

    def apply(self, ctx: RunContext) -> None:
        target = ctx.facts["target_db"]["name"]
        if not self.confirm(f"Promote {target} to DATABASE of {self.env.app}"):
            raise SafetyRefusal(
                f"not promoted: {target} stays attached beside DATABASE, nothing else changed. --resume to be "
                f"asked again, or `heroku addons:destroy {target}` if it is not wanted."
            )
        ctx.facts["promotion_confirmed"] = True


class Promote(RecoveryStep):
    """The target becomes DATABASE (a follower stops following first); the old database stays attached."""

    name = "promote"

    def is_done(self, ctx: RunContext) -> bool:
        target = self.database(ctx.facts["target_db"])
        return target.is_primary and not info(self.env.primary.client, target).following

    def plan(self, ctx: RunContext) -> str:
        target = ctx.facts.get("target_db", {}).get("name", "the target")
        return f"make {target} the app's DATABASE (Heroku sets DATABASE_URL and restarts the dynos)"

    def apply(self, ctx: RunContext) -> None:
        client = self.env.primary.client
        target = self.database(ctx.facts["target_db"])
        about = info(client, target)
        if about.following:
            ctx.facts["lag_at_promotion"] = about.behind_by
            ctx.say(
                f"  {target.name} is behind its leader by {about.behind_by or 'an unknown amount'}; unfollowing"
            )
            client.unfollow(target.id)
            self._wait_unfollowed(target)
        wait_available(client, target, PROVISION_TIMEOUT)  # `pg:promote` refuses a database still preparing
        if not target.is_primary:
            try:
                promote(client, self.env.app, target, primary_database(self.databases(), self.env.app))
            except HerokuUncertain:
                if not self.database(ctx.facts["target_db"]).is_primary:  # the answer lost, and not done
                    raise
        wait_newest_release(client, self.env.app, self.env.health_timeout)
        if "at" in ctx.facts:  # what is lost: every write since the moment gone back to
            ctx.facts["rpo_seconds"] = _seconds_since(datetime.fromisoformat(ctx.facts["at"]))
        self.show_state(ctx)

    def _wait_unfollowed(self, target: HerokuDatabase) -> None:
        """Heroku stops a follower in the background: until it has, the database refuses writes."""
        deadline = time.monotonic() + UNFOLLOW_TIMEOUT
        while info(self.env.primary.client, target).following:
            if time.monotonic() > deadline:
                raise SafetyRefusal(
                    f"{target.name} still follows its leader {UNFOLLOW_TIMEOUT:.0f} s after `pg:unfollow`: check "
                    "`heroku pg:info`, then --resume."
                )
            time.sleep(0.5)


class VerifyDatabase(RecoveryStep):
    """The proof, not the attachment: DATABASE_URL reaches the target, and it takes a write."""

    name = "verify_database"

    def is_done(self, ctx: RunContext) -> bool:
        return False  # cheap, and only the world can say: checked on every run

    def plan(self, ctx: RunContext) -> str:
        return "DATABASE_URL points at it, and it accepts a write"

    def apply(self, ctx: RunContext) -> None:
        target = self.database(ctx.facts["target_db"])
        settings = self.env.primary.settings()
        own = [a for a in target.attachments if a != "DATABASE"]
        if not target.is_primary or (own and settings.get(f"{own[0]}_URL") != settings.get("DATABASE_URL")):
            raise SafetyRefusal(
                f"DATABASE_URL does not point at {target.name}: check `heroku pg:info`, then --resume."
            )
        database = parse_database_url(settings["DATABASE_URL"], "DATABASE_URL")
        with database.connect(connect_timeout=15) as conn:
            try:  # a write that is rolled back: a follower or a read-only database refuses the CREATE itself
                conn.execute("CREATE TABLE standby_write_probe (id int)")
            except psycopg.errors.ReadOnlySqlTransaction:
                raise SafetyRefusal(
                    f"{target.name} refuses writes (still a follower?): `heroku pg:unfollow {target.name}`, then --resume."
                ) from None
            finally:
                conn.rollback()
        ctx.say(f"  DATABASE_URL reaches {target.name}, which takes writes")
        # With Heroku's API dark, a cutover fences the database it remembers: it must be this one now.
        self.env.standby.remember_primary_database_url(settings["DATABASE_URL"])


class HoldBackups(RecoveryStep):
    """Our scheduled backup must not dump a database half restored: mark it, and end the sessions that
    began before the mark, a backup in flight among them (standby.recovery_mark)."""

    name = "hold_backups"

    def _database(self) -> Database:
        return parse_database_url(self.env.primary.database_url() or "", "Heroku DATABASE_URL")

    def is_done(self, ctx: RunContext) -> bool:
        return False  # marking again and ending sessions again is harmless, and a crash may have come between

    def plan(self, ctx: RunContext) -> str:
        return "mark Heroku's database as being restored (backups refuse it) and end its open sessions"

    def apply(self, ctx: RunContext) -> None:
        recovery_mark.mark(self._database(), ctx.run_id)

    def verify(self, ctx: RunContext) -> None:
        if recovery_mark.marked_by(self._database()) != ctx.run_id:
            raise SafetyRefusal("the mark that holds backups off Heroku's database is not there: --resume.")


class ReleaseBackups(HoldBackups):
    name = "release_backups"

    def is_done(self, ctx: RunContext) -> bool:
        return recovery_mark.marked_by(self._database()) is None

    def plan(self, ctx: RunContext) -> str:
        return "lift the mark: backups take Heroku's database again"

    def apply(self, ctx: RunContext) -> None:
        recovery_mark.unmark(self._database())

    def verify(self, ctx: RunContext) -> None:
        return None


class RestoreBackup(RecoveryStep):
    """Heroku restores the verified dump (the very S3 version checked) into DATABASE; every table's rows are
    then counted against the backup's manifest. A restore that a crashed run started is waited for, and
    one that finished is not run again: Heroku lists its transfers."""

    name = "restore_backup"

    def is_done(self, ctx: RunContext) -> bool:
        return self.env.primary.transfer_after("pg_restore", ctx.facts["last_transfer"]) is not None

    def plan(self, ctx: RunContext) -> str:
        return (
            "Heroku restores the dump into DATABASE (pg:backups:restore), then every table's rows are counted"
        )

    def _manifest(self, ctx: RunContext) -> catalog.BackupManifest:
        manifest = catalog.select_backup(self.env.catalog(), ctx.facts["backup_id"]).manifest
        assert manifest is not None
        return manifest

    def apply(self, ctx: RunContext) -> None:
        manifest = self._manifest(ctx)
        if not self.env.primary.is_fenced():
            raise SafetyRefusal(
                "Heroku is no longer fenced: its writes would be lost. Fence it, then --resume."
            )
        s3 = aws_clients.client("s3", self.env.manifest.region, signature_version="s3v4")
        version = ctx.facts.get("dump_version")
        url = s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.env.manifest.backup_bucket, "Key": manifest.dump_key,
                    **({"VersionId": version} if version else {})},
            ExpiresIn=URL_LIFETIME,
        )  # fmt: skip
        self.env.primary.restore_database(url, after=ctx.facts["last_transfer"])

    def verify(self, ctx: RunContext) -> None:
        url = self.env.primary.database_url() or ""
        manifest = self._manifest(ctx)
        verify_counts(parse_database_url(url, "Heroku DATABASE_URL"), manifest.tables)
        ctx.facts["heroku_restored"] = True
        ctx.facts["rpo_seconds"] = _seconds_since(
            manifest.snapshot_at
        )  # every write since the backup is gone
        self.show_state(ctx)


class UnfenceApp(RecoveryStep):
    """The formation journaled before the fence comes back and maintenance goes off; the fence's record
    goes first, so `pulumi up -s primary` no longer holds Heroku at zero."""

    name = "unfence_app"

    def _formation(self, ctx: RunContext) -> dict[str, int]:
        formation: dict[str, int] = ctx.facts["formation"]
        if not any(formation.values()):  # a fence's zeros taken for the app's: it would never come back
            raise SafetyRefusal(
                "the formation to bring back is all zero: scale the app by hand (`heroku ps:scale`), then "
                "`heroku maintenance:off`."
            )
        return formation

    def is_done(self, ctx: RunContext) -> bool:
        return self.env.primary.is_serving(self._formation(ctx))

    def plan(self, ctx: RunContext) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in ctx.facts.get("formation", {}).items()) or "as before"
        return f"dynos back ({shown}), maintenance mode off"

    def apply(self, ctx: RunContext) -> None:
        formation = self._formation(ctx)
        self.require_heroku_live()  # a cutover may have come while a killed run's lock lapsed
        self.env.standby.clear_primary_fenced()
        self.env.primary.unfence(formation)

    def verify(self, ctx: RunContext) -> None:
        if not self.is_done(ctx):
            raise SafetyRefusal("Heroku is still in maintenance mode or its dynos did not come back.")


def recovery_steps(
    env: RunbookEnv, recovery: Recovery, confirm: Confirm, health_url: str | None
) -> list[Step]:
    healthy: list[Step] = [UnfenceApp(env), WaitHealthy(env, health_url)]
    if recovery.mode == "follower":
        return [Preflight(env, recovery), FenceApp(env), Promote(env), VerifyDatabase(env), *healthy]
    if recovery.mode == "point-in-time":
        return [
            Preflight(env, recovery), CreateRollbackDatabase(env), WaitAvailable(env), CompareCounts(env),
            ConfirmPromotion(env, confirm), FenceApp(env), Promote(env), VerifyDatabase(env), *healthy,
        ]  # fmt: skip
    return [
        Preflight(env, recovery), FenceApp(env), CaptureHeroku(env), HoldBackups(env), RestoreBackup(env),
        ReleaseBackups(env), *healthy,
    ]  # fmt: skip
