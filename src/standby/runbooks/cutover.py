"""The cutover from Heroku to the AWS standby, as runbook steps (README, "The disaster flow").

preflight (choose the backup: the newest whose dump is whole) -> assess the primary -> fence it (API:
maintenance, formation, every dyno) -> fence its database (the app's credential read-only) -> final
backup (if its database answers; then it is the one restored) -> restore (skipped when restore-ahead
already holds it; a dump that fails its hash is passed over for the next one) -> verify the data ->
scale the standby (data before traffic) -> wait for healthy services -> switch DNS -> verify the records. Every step is idempotent and knows when it
is already done, so a crashed cutover resumes where it stopped.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg

from standby import catalog, database_fence, dns_query
from standby.backup import BackupFailed, BackupRequest, run_backup
from standby.drill_history import forecast_note
from standby.errors import InfrastructureError, SafetyRefusal
from standby.heroku_api import HerokuUnreachable
from standby.pg_url import Database, parse_database_url
from standby.polling import Poll
from standby.restore import (
    DumpRefused,
    RestoreRequest,
    execute_restore,
    plan_restore,
    read_marker,
    verify_counts,
)
from standby.runbook.engine import RunContext, Step
from standby.runbook.environment import MAINTENANCE_DB, EnvStep, RunbookEnv
from standby.vocabulary import DnsMode, Mode


class Preflight(EnvStep):
    """Check what the cutover needs, and choose the backup it will restore: the newest whose dump is whole."""

    name = "preflight"

    def __init__(self, env: RunbookEnv, choice: catalog.BackupChoice = catalog.NEWEST) -> None:
        super().__init__(env)
        self.choice = choice

    def is_done(self, ctx: RunContext) -> bool:
        return "started_at" in ctx.facts

    def plan(self, ctx: RunContext) -> str:
        which = (
            "the newest backup whose dump is whole"
            if not self.choice.pinned
            else f"backup {self.choice.backup}"
        )
        if self.choice.before:
            which += f" with data from before {self.choice.before.isoformat()}"
        return f"check the manifest, the standby database and {which} in {self.env.store.describe()}"

    def apply(self, ctx: RunContext) -> None:
        if self.env.standby.mode() is Mode.ACTIVE:
            # A finished cutover run again would take a "final backup" of the fenced, stale Heroku and
            # restore it over the live database.
            raise SafetyRefusal(
                f"the standby in {self.env.manifest.region} is live already (its mode is active): there is nothing to "
                "cut over, and restoring now would replace the app's writes. Fail back first, or --resume an "
                "unfinished cutover."
            )
        skipped: list[catalog.Skipped] = []
        chosen = choose(self.env, self.choice, skipped)
        assert chosen.manifest is not None
        self.env.standby.database()  # the secret must be readable before anything is fenced
        now = datetime.now(UTC)
        ctx.facts["started_at"] = now.isoformat()
        ctx.facts["chosen_backup"] = chosen.backup_id
        ctx.facts["skipped_backups"] = [s.to_json() for s in skipped]
        ctx.facts["newest_backup_age_seconds"] = round(chosen.age(now), 1)
        for s in skipped:
            ctx.say(f"  skipping backup {s.backup_id}: {s.reason} (costs {s.rpo_cost_seconds:.0f} s of data)")


def choose(
    env: RunbookEnv,
    choice: catalog.BackupChoice,
    skipped: list[catalog.Skipped],
    older_than: datetime | None = None,
) -> catalog.CatalogEntry:
    """The backup to restore: the first candidate (newest first) whose dump is whole."""
    entries = env.catalog()
    candidates = choice.candidates(entries)
    if older_than is not None:
        candidates = [c for c in candidates if c.manifest is not None and c.manifest.snapshot_at < older_than]
    chosen = catalog.first_intact(env.store, candidates, skipped)
    if chosen is not None and chosen.manifest is not None and not choice.pinned:
        # Newer backups the catalog refused (no manifest, a forged or future-dated one) cost data too.
        newer_failed = [
            e for e in entries if e.state is catalog.BackupState.FAILED and e.started_at > chosen.manifest.snapshot_at
            and (older_than is None or e.started_at < older_than) and (choice.before is None or e.started_at < choice.before)
        ]  # fmt: skip
        for entry in newer_failed:
            cost = round((entry.started_at - chosen.manifest.snapshot_at).total_seconds(), 1)
            skipped.append(catalog.Skipped(entry.backup_id, str(entry.failure.get("error", "failed")), cost))
    if chosen is None:
        broken = "; ".join(f"{s.backup_id}: {s.reason}" for s in skipped)
        raise catalog.NoCompleteBackup(
            f"no complete backup of {env.app} in {env.store.describe()} with a whole dump: nothing to restore"
            + (f" ({broken})." if broken else ".")
        )
    return chosen


class AssessPrimary(EnvStep):
    name = "assess_primary"

    def __init__(self, env: RunbookEnv, primary_unreachable: bool = False) -> None:
        super().__init__(env)
        self.primary_unreachable = primary_unreachable  # the operator said Heroku is down

    def is_done(self, ctx: RunContext) -> bool:
        return "primary_reachable" in ctx.facts

    def plan(self, ctx: RunContext) -> str:
        return f"ask the Heroku API about {self.env.app}"

    def apply(self, ctx: RunContext) -> None:
        try:
            self.env.primary.answer()
            ctx.facts["primary_reachable"] = True
            return
        except HerokuUnreachable as exc:
            unreachable = exc
        # The API can be dark while the database answers (June 2025): the database fence needs no API.
        stored = self.env.standby.primary_database_url()
        if stored and _answers(parse_database_url(stored, "Heroku DATABASE_URL")):
            ctx.facts["primary_reachable"] = False
            ctx.facts["primary_database_reachable"] = True
            ctx.say("  Heroku's API does not answer, but its database does: it will be fenced there")
            return
        if not self.primary_unreachable:
            raise SafetyRefusal(
                f"{unreachable} Heroku's database does not answer either (with the URL the newest backup used). A "
                "primary that still takes writes while the standby does is a split brain: nothing was changed. If "
                "you have made sure Heroku is down (or accept the risk), run again with --primary-unreachable."
            ) from None
        # Written only now: a refused run's journal must not make a --resume skip this check.
        ctx.facts["primary_reachable"] = False
        ctx.say("  Heroku does not answer; continuing because --primary-unreachable was given")


class FencePrimary(EnvStep):
    name = "fence_primary"

    def is_done(self, ctx: RunContext) -> bool:
        if not ctx.facts.get("primary_reachable"):
            try:  # dark when assessed; a resume may find it back, and then it fences through it
                self.env.primary.answer()
            except HerokuUnreachable:
                return True
        return self.env.primary.is_fenced()

    def plan(self, ctx: RunContext) -> str:
        return "Heroku maintenance mode on, the formation to zero, then every dyno still running stopped"

    def apply(self, ctx: RunContext) -> None:
        if "primary_formation" not in ctx.facts:  # read before scaling: the standby and failback need it
            ctx.facts["primary_formation"] = self.env.primary.formation()
        # Recorded first: a `pulumi up -s primary` from now on (the restore runs before the live mode turns
        # active) keeps Heroku at zero instead of waking it.
        self.env.standby.record_primary_fenced(
            f"fenced by cutover run {ctx.run_id} at {datetime.now(UTC).isoformat()}"
        )
        self.env.primary.fence()
        ctx.facts["fenced_at"] = datetime.now(UTC).isoformat()

    def verify(self, ctx: RunContext) -> None:
        if "fenced_at" in ctx.facts and not self.is_done(ctx):
            raise SafetyRefusal("Heroku still runs dynos or is out of maintenance mode after fencing.")


def primary_database(env: RunbookEnv, ctx: RunContext) -> Database | None:
    """Heroku's database: its DATABASE_URL from the API, or, with the API dark (then or since), as the
    newest backup used it. None when there is none to reach."""
    url = None
    if ctx.facts.get("primary_reachable"):
        try:
            url = env.primary.database_url()
        except HerokuUnreachable:
            url = env.standby.primary_database_url()  # the API went dark since it was assessed
    elif ctx.facts.get("primary_database_reachable"):
        url = env.standby.primary_database_url()
    return parse_database_url(url, "Heroku DATABASE_URL") if url else None


def _answers(database: Database) -> bool:
    try:
        with database.connect(connect_timeout=database_fence.CONNECT_TIMEOUT):
            return True
    except psycopg.OperationalError:
        return False


class FenceDatabase(EnvStep):
    """The database fence (standby.database_fence): the app's credential can no longer write, so nothing
    changes after the final backup's snapshot, whatever still holds the credential."""

    name = "fence_database"

    def _database(self, ctx: RunContext) -> Database | None:
        return primary_database(self.env, ctx)

    def is_done(self, ctx: RunContext) -> bool:
        database = self._database(ctx)
        if database is None:
            return True  # no database to reach: nothing to fence, the newest backup will be used
        try:
            # Fenced means both halves done: new sessions read-only *and* the open ones ended (the fact).
            return "database_fenced_at" in ctx.facts and database_fence.is_fenced(database)
        except psycopg.OperationalError as exc:
            return self._unanswered(ctx, exc)

    @staticmethod
    def _unanswered(ctx: RunContext, exc: psycopg.OperationalError) -> bool:
        """A database that does not answer the fence: fine behind the API fence, refused without it."""
        if ctx.facts.get("primary_reachable"):
            return True  # the API fence stopped every dyno; a database that does not answer takes no writes
        first = (str(exc).strip().splitlines() or ["no answer"])[0]
        raise SafetyRefusal(
            f"Heroku's database answered a moment ago but not the fence ({first}); with Heroku's API dark nothing "
            "else stops its writers. Nothing else was done: --resume, or run afresh with --primary-unreachable "
            "once you have made sure it is down."
        ) from None

    def plan(self, ctx: RunContext) -> str:
        return "the app's credential read-only in Heroku's database, its sessions ended (no API needed)"

    def apply(self, ctx: RunContext) -> None:
        database = self._database(ctx)
        assert database is not None
        try:
            ended = database_fence.fence_database(database)
        except psycopg.OperationalError as exc:
            self._unanswered(ctx, exc)
            ctx.say("  Heroku's database does not answer; the API fence holds (no dyno runs)")
            return
        ctx.facts["database_fenced_at"] = datetime.now(UTC).isoformat()
        ctx.say(f"  new transactions of the app's role are read-only; {ended} open session(s) ended")

    def verify(self, ctx: RunContext) -> None:
        database = self._database(ctx)
        if database is not None and "database_fenced_at" in ctx.facts:
            database_fence.prove_fenced(database)


class FinalBackup(EnvStep):
    name = "final_backup"
    updates = ("chosen_backup",)  # the final backup, when taken, is the one restored

    def __init__(self, env: RunbookEnv, choice: catalog.BackupChoice = catalog.NEWEST) -> None:
        super().__init__(env)
        self.choice = choice

    def is_done(self, ctx: RunContext) -> bool:
        reachable = ctx.facts.get("primary_reachable") or ctx.facts.get("primary_database_reachable")
        return "final_backup" in ctx.facts or not reachable

    def plan(self, ctx: RunContext) -> str:
        return "back up the fenced primary database, if it answers (RPO close to zero)"

    def apply(self, ctx: RunContext) -> None:
        database = primary_database(self.env, ctx)
        if database is None:
            ctx.facts["final_backup"] = None
            return
        try:
            manifest = run_backup(
                BackupRequest(
                    self.env.app,
                    database,
                    self.env.store,
                    self.env.pg_dump,
                    self.env.manifest.backup_prefix,
                    signer=self.env.backup_mac,
                )
            )
        except BackupFailed as exc:
            if exc.phase != "connecting to the source database":
                raise
            ctx.say(f"  the primary database does not answer ({exc.reason}); the newest backup will be used")
            ctx.facts["final_backup"] = None
            return
        ctx.facts["final_backup"] = manifest.backup_id
        if not self.choice.pinned and self.choice.before is None:
            ctx.facts["chosen_backup"] = manifest.backup_id  # the newest there can be: RPO close to zero


class ScaleStandby(EnvStep):
    name = "scale_standby"

    def _wanted(self, ctx: RunContext) -> dict[str, int]:
        formation = ctx.facts.get("primary_formation") or {}
        return {kind: int(formation.get(kind, 1)) for kind in self.env.manifest.services}

    def is_done(self, ctx: RunContext) -> bool:
        standby = self.env.standby
        return standby.mode() is Mode.ACTIVE and standby.desired_counts() == self._wanted(ctx)

    def plan(self, ctx: RunContext) -> str:
        return "mode active; ECS services to the primary's dyno counts"

    def apply(self, ctx: RunContext) -> None:
        # The live mode first: a `pulumi up` from now on keeps the standby active and DNS on AWS.
        self.env.standby.set_mode(Mode.ACTIVE)
        self.env.standby.scale(self._wanted(ctx))

    def verify(self, ctx: RunContext) -> None:
        current = self.env.standby.desired_counts()
        if current != self._wanted(ctx):
            raise SafetyRefusal(f"ECS desired counts are {current}, not {self._wanted(ctx)}.")


class Restore(EnvStep):
    """Restore the chosen backup; a dump that fails its hash is passed over for the next one (unless pinned)."""

    name = "restore"
    updates = ("chosen_backup", "skipped_backups")  # a dump refused while restoring is passed over

    def __init__(self, env: RunbookEnv, choice: catalog.BackupChoice = catalog.NEWEST) -> None:
        super().__init__(env)
        self.choice = choice

    def _chosen(self, ctx: RunContext) -> catalog.CatalogEntry:
        entries = self.env.catalog()
        return catalog.select_backup(entries, str(ctx.facts["chosen_backup"]))

    def is_done(self, ctx: RunContext) -> bool:
        target = self.env.standby.database()
        marker = read_marker(target.with_dbname(MAINTENANCE_DB), target.dbname)
        return marker is not None and marker.backup_id == ctx.facts.get("chosen_backup")

    def plan(self, ctx: RunContext) -> str:
        note = forecast_note(self.env.store, self.env.manifest.backup_prefix, self.env.app)
        return (
            f"restore the chosen backup into the standby database (skipped if restore-ahead holds it){note}"
        )

    def apply(self, ctx: RunContext) -> None:
        target = self.env.standby.database()
        while True:
            chosen = self._chosen(ctx)
            try:
                report = execute_restore(
                    plan_restore([chosen], target.dbname, now=datetime.now(UTC)),
                    RestoreRequest(
                        self.env.store,
                        target.with_dbname(MAINTENANCE_DB),
                        target.dbname,
                        self.env.pg_restore,
                        self.env.jobs,
                        self.env.manifest.sanity_sql,
                        free_bytes=self.env.standby.free_storage(),
                        owner=self.env.standby.app_owner(),
                    ),
                    progress=lambda line: ctx.say(f"  {line}"),
                )
                break
            except DumpRefused as exc:
                if self.choice.pinned:
                    raise
                # Pinned in the facts (journaled when the step ends): a resume after a failure goes on from
                # the replacement; after a hard crash the broken dump is tried, and refused, once more.
                assert chosen.manifest is not None
                skipped: list[catalog.Skipped] = []
                instead = choose(self.env, self.choice, skipped, older_than=chosen.manifest.snapshot_at)
                reason = " ".join(str(exc).split())
                cost = catalog.Skipped(chosen.backup_id, reason, catalog.rpo_cost(chosen, instead))
                ctx.facts["skipped_backups"] = [*ctx.facts.get("skipped_backups", []), cost.to_json()]
                ctx.facts["skipped_backups"] += [s.to_json() for s in skipped]
                ctx.facts["chosen_backup"] = instead.backup_id
                ctx.say(
                    f"  backup {chosen.backup_id} refused ({reason}); restoring {instead.backup_id} instead"
                )
        ctx.facts["restore_seconds"] = round(sum(report.phases.values()), 1)


class VerifyData(EnvStep):
    """Prove the standby holds the chosen backup: its marker names it and every row count matches."""

    name = "verify_data"

    def is_done(self, ctx: RunContext) -> bool:
        return False  # the proof is the database itself, read again on every run, never a flag

    def plan(self, ctx: RunContext) -> str:
        return "the restored database's marker and every table's row count against the backup's manifest"

    def apply(self, ctx: RunContext) -> None:
        target = self.env.standby.database()
        marker = read_marker(target.with_dbname(MAINTENANCE_DB), target.dbname)
        if marker is None:
            raise SafetyRefusal(
                "the standby database carries no restore marker: it was not restored by standby."
            )
        chosen = ctx.facts.get("chosen_backup")
        if marker.backup_id != chosen:
            raise SafetyRefusal(
                f"the standby database holds backup {marker.backup_id}, not {chosen}, which this cutover chose: "
                "something restored over it meanwhile. Find out what, then --resume."
            )
        entries = self.env.catalog()
        backup = catalog.select_backup(entries, marker.backup_id)
        assert backup.manifest is not None
        verify_counts(target, backup.manifest.tables)
        fenced = ctx.facts.get("fenced_at") or ctx.facts.get("database_fenced_at")
        lost_from = datetime.fromisoformat(fenced or ctx.facts["started_at"])
        ctx.facts["verified"] = True
        ctx.facts["verified_tables"] = len(backup.manifest.tables)
        ctx.facts["restored_backup"] = marker.backup_id
        ctx.facts["rpo_seconds"] = round(max(0.0, (lost_from - marker.snapshot_at).total_seconds()), 1)


class WaitHealthy(EnvStep):
    name = "wait_healthy"

    def is_done(self, ctx: RunContext) -> bool:
        return self.env.standby.web_healthy()

    def plan(self, ctx: RunContext) -> str:
        return f"wait up to {self.env.health_timeout:.0f} s for the web service to answer its health check"

    def apply(self, ctx: RunContext) -> None:
        deadline, poll = time.monotonic() + self.env.health_timeout, Poll(2.0)
        while not self.env.standby.web_healthy():
            if time.monotonic() > deadline:
                raise SafetyRefusal(
                    f"the standby's web service is not healthy after {self.env.health_timeout:.0f} s; DNS was not "
                    "switched. Check the ECS service's events and logs, then --resume."
                )
            poll.pause()


class SwitchDns(EnvStep):
    name = "switch_dns"

    def is_done(self, ctx: RunContext) -> bool:
        return self.env.standby.dns.is_on(on_standby=True)

    def plan(self, ctx: RunContext) -> str:
        if self.env.standby.dns.failover:
            return "drive the failover alarm: Route 53 answers with the AWS records (no control-plane call)"
        return (
            f"one change batch: {len(self.env.manifest.records)} record(s) from Heroku to the load balancer"
        )

    def apply(self, ctx: RunContext) -> None:
        change = self.env.standby.dns.move(on_standby=True, reason=f"standby cutover of {self.env.app}")
        if change:
            ctx.facts["dns_change"] = change

    def verify(self, ctx: RunContext) -> None:
        if not self.is_done(ctx):
            raise SafetyRefusal("the DNS records do not point at the standby after the switch.")
        ctx.facts["dns_target"] = self.env.manifest.load_balancer_dns


def cutover_steps(
    env: RunbookEnv, primary_unreachable: bool = False, choice: catalog.BackupChoice = catalog.NEWEST
) -> list[Step]:
    # Data before traffic: the services scale up only once the restored data is verified, so no worker
    # runs against stale data and nothing reconnects during the restore's switch.
    return [
        Preflight(env, choice),
        AssessPrimary(env, primary_unreachable),
        FencePrimary(env),
        FenceDatabase(env),
        FinalBackup(env, choice),
        Restore(env, choice),
        VerifyData(env),
        ScaleStandby(env),
        WaitHealthy(env),
        SwitchDns(env),
        VerifyPublic(env),
    ]


class VerifyPublic(EnvStep):
    """Ask the zone's name servers what the world is told for each name now (on real AWS)."""

    name = "verify_public"

    def __init__(self, env: RunbookEnv, timeout: float = 90.0) -> None:
        super().__init__(env)
        self.timeout = timeout

    def _on_heroku(self, hostname: str, servers: list[tuple[str, int]]) -> list[str]:
        """The name servers still answering with a Heroku target for `hostname`."""
        heroku = next(r["heroku_target"] for r in self.env.manifest.records if r["hostname"] == hostname)
        stale = []
        for server in servers:
            answers = dns_query.ask(server, hostname)
            if not answers or any(
                kind == dns_query.CNAME and value.rstrip(".") == heroku for kind, value in answers
            ):
                stale.append(f"{server[0]}:{server[1]}")
        return stale

    def is_done(self, ctx: RunContext) -> bool:
        return "public_check" in ctx.facts

    def plan(self, ctx: RunContext) -> str:
        if self.env.manifest.dns_mode is DnsMode.FAILOVER:
            return "not asked in failover mode: Route 53's health checks move the answers (the alarm is set)"
        return "ask the zone's name servers for every name: none may still answer with Heroku"

    def apply(self, ctx: RunContext) -> None:
        manifest = self.env.manifest
        if manifest.dns_mode is DnsMode.FAILOVER:
            # Failover answers follow Route 53's health checks, which take their own minute; the alarm is the switch.
            ctx.facts["public_check"] = "not asked (failover mode)"
            return
        try:
            servers = self.env.standby.name_servers()
        except InfrastructureError as exc:
            # The records were read back INSYNC; only the second proof is missing, and the report says so.
            ctx.say(f"  warning: {exc}; the records were read back from Route 53 only")
            ctx.facts["public_check"] = f"not asked: {exc}"
            return
        deadline, poll = time.monotonic() + self.timeout, Poll(3.0)
        while True:
            stale = {r["hostname"]: self._on_heroku(r["hostname"], servers) for r in manifest.records}
            stale = {name: where for name, where in stale.items() if where}
            if not stale:
                break
            if time.monotonic() > deadline:
                raise SafetyRefusal(
                    f"name servers still answer with Heroku after {self.timeout:.0f} s: {stale}"
                )
            poll.pause()
        ctx.facts["public_check"] = f"{len(servers)} name servers answer with AWS"
