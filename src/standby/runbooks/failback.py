"""The failback from the AWS standby to Heroku, as runbook steps.

preflight -> fence the standby (services to zero, until no task runs: no more writes) -> dump it ->
capture Heroku's own backup of its database (the way back) -> reset the database fence (Heroku stays in
maintenance, no dyno) -> restore the dump into Heroku Postgres from a
presigned URL (Heroku's own `pg:backups:restore`), only while Heroku is fenced -> verify Heroku's row counts ->
hand back (Heroku is the live side again, on record: the standby's mode to its base mode) ->
unfence Heroku (dynos back, maintenance off) -> DNS back to Heroku -> the standby's services as its base
mode runs them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final

from standby import aws_clients, catalog, database_fence
from standby.backup import BackupRequest, run_backup
from standby.errors import SafetyRefusal
from standby.pg_url import Database, parse_database_url
from standby.polling import Poll
from standby.primary_side import backup_name
from standby.restore import verify_counts
from standby.runbook.engine import RunContext, Step
from standby.runbook.environment import EnvStep, RunbookEnv
from standby.vocabulary import Mode

URL_LIFETIME: Final = 900  # seconds the presigned URL stays valid: Heroku starts its download at once
DRAIN_TIMEOUT: Final = 300.0  # seconds for the standby's tasks to stop (ECS drains the load balancer first)
POLL_SECONDS: Final = 3.0  # at most, between looks at the draining tasks


class FailbackPreflight(EnvStep):
    name = "preflight"

    def is_done(self, ctx: RunContext) -> bool:
        return "started_at" in ctx.facts

    def plan(self, ctx: RunContext) -> str:
        return "check that the standby is active and that Heroku answers"

    def apply(self, ctx: RunContext) -> None:
        mode = self.env.standby.mode()
        if mode is not Mode.ACTIVE:
            raise SafetyRefusal(f"the standby is {mode}, not active: there is nothing to fail back.")
        self.env.primary.answer()  # must answer: failback writes to Heroku
        ctx.facts["last_transfer"] = self.env.primary.last_transfer()  # Heroku's capture comes after it
        ctx.facts["started_at"] = datetime.now(UTC).isoformat()


class FenceStandby(EnvStep):
    """The standby's services to zero, until no task runs: a draining task can still write."""

    name = "fence_standby"

    def is_done(self, ctx: RunContext) -> bool:
        standby = self.env.standby
        return (
            "formation" in ctx.facts
            and not any(standby.desired_counts().values())
            and not any(standby.running_counts().values())
        )

    def plan(self, ctx: RunContext) -> str:
        return "ECS services to zero, and wait until no task runs: the standby stops taking writes"

    def apply(self, ctx: RunContext) -> None:
        if "formation" not in ctx.facts:  # Heroku gets these counts back
            ctx.facts["formation"] = self.env.standby.desired_counts()
        self.env.standby.scale(dict.fromkeys(self.env.manifest.services, 0))

    def verify(self, ctx: RunContext) -> None:
        deadline, poll = time.monotonic() + DRAIN_TIMEOUT, Poll(POLL_SECONDS)
        while True:
            desired, running = self.env.standby.desired_counts(), self.env.standby.running_counts()
            if not any(desired.values()) and not any(running.values()):
                return
            if time.monotonic() > deadline:
                still = {k: v for k, v in running.items() if v}
                raise SafetyRefusal(
                    f"standby tasks still run {DRAIN_TIMEOUT:.0f} s after scaling to zero (desired {desired}, running "
                    f"{still}): they may still write, so nothing was copied to Heroku. Check the ECS services' "
                    "events, stop the tasks, then --resume."
                )
            poll.pause()


class DumpStandby(EnvStep):
    name = "dump_standby"

    def is_done(self, ctx: RunContext) -> bool:
        return bool(ctx.facts.get("failback_backup"))

    def plan(self, ctx: RunContext) -> str:
        return "back up the standby database (a verified backup like any other)"

    def apply(self, ctx: RunContext) -> None:
        manifest = run_backup(
            BackupRequest(
                self.env.app,
                self.env.standby.database(),
                self.env.store,
                self.env.pg_dump,
                self.env.manifest.backup_prefix,
                streams=1,  # Heroku restores it, and pg:backups:restore takes one dump file
                signer=self.env.backup_mac,
            )
        )
        ctx.facts["failback_backup"] = manifest.backup_id


class CaptureHeroku(EnvStep):
    """Heroku's own backup of what its database holds now, before the restore replaces it; one that a
    crashed run of this runbook made (Heroku lists it) is not made twice."""

    name = "capture_heroku"

    def is_done(self, ctx: RunContext) -> bool:
        if not ctx.facts.get("heroku_backup") and "last_transfer" in ctx.facts:
            made = self.env.primary.transfer_after("gof3r", ctx.facts["last_transfer"])
            if made is not None:
                ctx.facts["heroku_backup"] = backup_name(made)
        return bool(ctx.facts.get("heroku_backup"))

    def plan(self, ctx: RunContext) -> str:
        return "capture a Heroku backup of its database as it is now (pg:backups:capture): the way back"

    def apply(self, ctx: RunContext) -> None:
        ctx.facts["heroku_backup"] = self.env.primary.capture_backup(after=ctx.facts.get("last_transfer"))
        ctx.say(f"  Heroku kept its database as backup {ctx.facts['heroku_backup']} (`heroku pg:backups`)")


def require_heroku_fenced(env: RunbookEnv, why: str) -> None:
    """Heroku still fenced, as the cutover left it. A Scheduler job or a `heroku run` started since (neither
    is stopped by maintenance mode) is stopped; maintenance off or dynos scaled up is a person's doing:
    refused, with what to do."""
    primary = env.primary
    if primary.in_maintenance() and not any(primary.formation().values()):
        primary.stop_dynos()
    if not primary.is_fenced():
        raise SafetyRefusal(
            f"Heroku is not fenced (maintenance mode is off or its formation runs dynos): {why}. Fence it again "
            f"(`heroku maintenance:on`, `heroku ps:scale web=0 ...`), then --resume."
        )


class UnfenceDatabase(EnvStep):
    """The cutover's database fence reset, so Heroku's restore (as the app's credential) can write; Heroku
    itself stays fenced (maintenance mode, no dyno) until the data is verified."""

    name = "unfence_database"

    def _database(self) -> Database | None:
        url = self.env.primary.database_url()
        return parse_database_url(url, "Heroku DATABASE_URL") if url else None

    def is_done(self, ctx: RunContext) -> bool:
        database = self._database()
        return database is None or not database_fence.is_fenced(database)

    def plan(self, ctx: RunContext) -> str:
        return "reset the database fence on Heroku's database (Heroku stays in maintenance, no dyno runs)"

    def apply(self, ctx: RunContext) -> None:
        require_heroku_fenced(self.env, "its database stays read-only until it is")
        database = self._database()
        assert database is not None
        database_fence.unfence_database(database)


class RestoreHeroku(EnvStep):
    name = "restore_heroku"

    def _backup(self, ctx: RunContext) -> catalog.BackupManifest:
        entries = self.env.catalog()
        entry = catalog.select_backup(entries, ctx.facts["failback_backup"])
        assert entry.manifest is not None
        return entry.manifest

    def is_done(self, ctx: RunContext) -> bool:
        return bool(ctx.facts.get("heroku_restored"))

    def plan(self, ctx: RunContext) -> str:
        return "Heroku restores the dump into its Postgres from a presigned URL (pg:backups:restore)"

    def apply(self, ctx: RunContext) -> None:
        # Checked now, not at the start: only a fenced Heroku and a stopped standby make the copy the last word.
        require_heroku_fenced(
            self.env, "restoring over its database while it may take writes would lose them"
        )
        running = {k: v for k, v in self.env.standby.running_counts().items() if v}
        if running:
            raise SafetyRefusal(
                f"standby tasks run again ({running}): their writes would be lost. Stop them, then --resume."
            )
        backup = self._backup(ctx)
        # SigV4 (SSE-KMS objects refuse SigV2), in the bucket's region, valid only while Heroku starts its GET.
        s3 = aws_clients.client("s3", self.env.manifest.region, signature_version="s3v4")
        url = s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.env.manifest.backup_bucket, "Key": backup.dump_key},
            ExpiresIn=URL_LIFETIME,
        )
        self.env.primary.restore_database(url)
        url = self.env.primary.database_url() or ""
        verify_counts(parse_database_url(url, "Heroku DATABASE_URL"), backup.tables)
        ctx.facts["heroku_restored"] = True
        ctx.facts["verified"] = True


class HandBack(EnvStep):
    """Heroku becomes the live side again, on record, before its dynos come back: from here backups dump
    Heroku, restore-ahead may run again, and `pulumi up -s primary` no longer holds Heroku at zero."""

    name = "hand_back"

    def is_done(self, ctx: RunContext) -> bool:
        return bool(ctx.facts.get("handed_back"))

    def plan(self, ctx: RunContext) -> str:
        return f"record Heroku as the live side: the standby's live mode to {self.env.manifest.base_mode}"

    def apply(self, ctx: RunContext) -> None:
        self.env.standby.set_mode(self.env.manifest.base_mode)
        self.env.standby.clear_primary_fenced()
        ctx.facts["handed_back"] = True


class UnfenceHeroku(EnvStep):
    name = "unfence_heroku"

    def is_done(self, ctx: RunContext) -> bool:
        return self.env.primary.is_serving(ctx.facts.get("formation", {}))

    def plan(self, ctx: RunContext) -> str:
        return "Heroku dynos back to the standby's counts, maintenance mode off"

    def apply(self, ctx: RunContext) -> None:
        self.env.primary.unfence(ctx.facts.get("formation", {}))

    def verify(self, ctx: RunContext) -> None:
        if not self.is_done(ctx):
            raise SafetyRefusal("Heroku is still in maintenance mode or its dynos did not come back.")


class SwitchDnsBack(EnvStep):
    name = "switch_dns_back"

    def is_done(self, ctx: RunContext) -> bool:
        return self.env.standby.dns.is_on(on_standby=False)

    def plan(self, ctx: RunContext) -> str:
        return "DNS back to Heroku's DNS targets (TTL 60)"

    def apply(self, ctx: RunContext) -> None:
        self.env.standby.dns.move(on_standby=False, reason=f"standby failback of {self.env.app}")

    def verify(self, ctx: RunContext) -> None:
        if not self.is_done(ctx):
            raise SafetyRefusal("the DNS records do not point at Heroku after the switch back.")


class StandbyToBaseMode(EnvStep):
    """The standby's services as its base mode runs them, once DNS no longer sends them the app's traffic."""

    name = "standby_base_mode"

    def _wanted(self, ctx: RunContext) -> dict[str, int]:
        manifest, formation = self.env.manifest, ctx.facts.get("formation", {})
        warm = manifest.base_mode is Mode.WARM  # one task per service that ran; pilot-light stays at zero
        return {kind: 1 if warm and formation.get(kind) else 0 for kind in manifest.services}

    def is_done(self, ctx: RunContext) -> bool:
        return self.env.standby.desired_counts() == self._wanted(ctx)

    def plan(self, ctx: RunContext) -> str:
        return f"the standby's services as {self.env.manifest.base_mode} runs them"

    def apply(self, ctx: RunContext) -> None:
        self.env.standby.scale(self._wanted(ctx))


def failback_steps(env: RunbookEnv) -> list[Step]:
    return [
        FailbackPreflight(env),
        FenceStandby(env),
        DumpStandby(env),
        CaptureHeroku(env),
        UnfenceDatabase(env),
        RestoreHeroku(env),
        HandBack(env),
        UnfenceHeroku(env),
        SwitchDnsBack(env),
        StandbyToBaseMode(env),
    ]
