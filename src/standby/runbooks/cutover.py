"""The cutover from Heroku to the AWS standby (DESIGN.md §4), as runbook steps.

preflight -> assess the primary -> fence it -> final backup (if its database answers) -> scale the
standby -> restore (skipped when restore-ahead already holds the newest backup) -> verify the data ->
wait for healthy services -> switch DNS -> verify the records. Every step is idempotent and knows when it
is already done, so a crashed cutover resumes where it stopped.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Final

import boto3.session

from standby import catalog, dns_query
from standby.backup import BackupFailed, BackupRequest, run_backup
from standby.backup_store import BackupStore
from standby.dns_switch import DnsSwitch
from standby.drill_history import forecast_note
from standby.errors import SafetyRefusal
from standby.heroku_api import HerokuClient, HerokuUnreachable
from standby.pg_tools import PgTool
from standby.pg_url import Database, parse_database_url
from standby.restore import RestoreRequest, execute_restore, plan_restore, read_marker, verify_counts
from standby.runbook.engine import RunContext, Step
from standby.standby_manifest import StandbyManifest, read_database_url

HEALTH_TIMEOUT: Final = 300.0  # seconds for the standby's web tasks to turn healthy
MAINTENANCE_DB: Final = "postgres"


@dataclass
class CutoverEnv:
    """What the cutover's steps work with; built once by the command from the standby manifest."""

    manifest: StandbyManifest
    store: BackupStore
    pg_dump: PgTool
    pg_restore: PgTool
    primary_unreachable: bool = False
    health_timeout: float = HEALTH_TIMEOUT
    jobs: int = 2
    # Built on first use: a drill never talks to Heroku, so it must not need a Heroku token.
    make_heroku: Callable[[], HerokuClient] = HerokuClient.from_env

    @cached_property
    def heroku(self) -> HerokuClient:
        return self.make_heroku()

    @property
    def app(self) -> str:
        return self.manifest.app

    def client(self, service: str) -> Any:
        session = boto3.session.Session(region_name=self.manifest.region)
        return session.client(service)  # type: ignore[call-overload]

    def standby_database(self) -> Database:
        return parse_database_url(
            read_database_url(self.manifest, self.manifest.region), "standby database URL"
        )


class EnvStep:
    """A step that works with the runbook's environment; `verify` checks nothing more unless overridden."""

    name = ""

    def __init__(self, env: CutoverEnv) -> None:
        self.env = env

    def verify(self, ctx: RunContext) -> None:
        return None


class Preflight(EnvStep):
    name = "preflight"

    def is_done(self, ctx: RunContext) -> bool:
        return "started_at" in ctx.facts

    def plan(self, ctx: RunContext) -> str:
        return f"check the manifest, the backups in {self.env.store.describe()} and the standby database"

    def apply(self, ctx: RunContext) -> None:
        entries = catalog.read_catalog(self.env.store, self.env.manifest.backup_prefix, self.env.app)
        newest = catalog.newest_complete(entries)
        if newest is None or newest.manifest is None:
            raise SafetyRefusal(
                f"no complete backup of {self.env.app} in {self.env.store.describe()}: nothing to restore."
            )
        self.env.standby_database()  # the secret must be readable before anything is fenced
        now = datetime.now(UTC)
        ctx.facts["started_at"] = now.isoformat()
        ctx.facts["newest_backup"] = newest.backup_id
        ctx.facts["newest_backup_age_seconds"] = round(newest.age(now), 1)


class AssessPrimary(EnvStep):
    name = "assess_primary"

    def is_done(self, ctx: RunContext) -> bool:
        return "primary_reachable" in ctx.facts

    def plan(self, ctx: RunContext) -> str:
        return f"ask the Heroku API about {self.env.app}"

    def apply(self, ctx: RunContext) -> None:
        try:
            self.env.heroku.app(self.env.app)
            ctx.facts["primary_reachable"] = True
        except HerokuUnreachable as exc:
            if not self.env.primary_unreachable:
                raise SafetyRefusal(
                    f"{exc} A primary that still takes writes while the standby does is a split brain: "
                    "nothing was changed. If you have made sure Heroku is down (or accept the risk), run again "
                    "with --primary-unreachable."
                ) from None
            ctx.say("  Heroku does not answer; continuing because --primary-unreachable was given")
            ctx.facts["primary_reachable"] = False


class FencePrimary(EnvStep):
    name = "fence_primary"

    def is_done(self, ctx: RunContext) -> bool:
        if not ctx.facts.get("primary_reachable"):
            return True  # nothing to fence through an API that does not answer
        app = self.env.heroku.app(self.env.app)
        return bool(app.get("maintenance")) and all(
            p["quantity"] == 0 for p in self.env.heroku.formation(self.env.app)
        )

    def plan(self, ctx: RunContext) -> str:
        return "Heroku maintenance mode on, every dyno to zero"

    def apply(self, ctx: RunContext) -> None:
        heroku, app = self.env.heroku, self.env.app
        if "primary_formation" not in ctx.facts:  # read before scaling: the standby and failback need it
            ctx.facts["primary_formation"] = {p["type"]: p["quantity"] for p in heroku.formation(app)}
        heroku.set_maintenance(app, True)
        heroku.scale(app, {kind: 0 for kind in ctx.facts["primary_formation"]})
        ctx.facts["fenced_at"] = datetime.now(UTC).isoformat()

    def verify(self, ctx: RunContext) -> None:
        if ctx.facts.get("primary_reachable") and not self.is_done(ctx):
            raise SafetyRefusal("Heroku still runs dynos or is out of maintenance mode after fencing.")


class FinalBackup(EnvStep):
    name = "final_backup"

    def is_done(self, ctx: RunContext) -> bool:
        return "final_backup" in ctx.facts or not ctx.facts.get("primary_reachable")

    def plan(self, ctx: RunContext) -> str:
        return "back up the fenced primary database, if it answers (RPO close to zero)"

    def apply(self, ctx: RunContext) -> None:
        url = self.env.heroku.config_vars(self.env.app).get("DATABASE_URL")
        if not url:
            ctx.facts["final_backup"] = None
            return
        try:
            manifest = run_backup(
                BackupRequest(
                    self.env.app,
                    parse_database_url(url),
                    self.env.store,
                    self.env.pg_dump,
                    self.env.manifest.backup_prefix,
                )
            )
        except BackupFailed as exc:
            if exc.phase != "connecting to the source database":
                raise
            ctx.say(f"  the primary database does not answer ({exc.reason}); the newest backup will be used")
            ctx.facts["final_backup"] = None
            return
        ctx.facts["final_backup"] = manifest.backup_id


class ScaleStandby(EnvStep):
    name = "scale_standby"

    def _wanted(self, ctx: RunContext) -> dict[str, int]:
        formation = ctx.facts.get("primary_formation") or {}
        return {kind: int(formation.get(kind, 1)) for kind in self.env.manifest.services}

    def is_done(self, ctx: RunContext) -> bool:
        ssm = self.env.client("ssm")
        mode = ssm.get_parameter(Name=self.env.manifest.mode_parameter)["Parameter"]["Value"]
        return bool(mode == "active" and self._current(ctx) == self._wanted(ctx))

    def _current(self, ctx: RunContext) -> dict[str, int]:
        manifest = self.env.manifest
        names = list(manifest.services.values())
        if not names:
            return {}
        found = self.env.client("ecs").describe_services(cluster=manifest.cluster, services=names)["services"]
        by_name = {s["serviceName"]: int(s["desiredCount"]) for s in found}
        return {kind: by_name.get(name, -1) for kind, name in manifest.services.items()}

    def plan(self, ctx: RunContext) -> str:
        return "mode active; ECS services to the primary's dyno counts"

    def apply(self, ctx: RunContext) -> None:
        manifest = self.env.manifest
        # The live mode first: a `pulumi up` from now on keeps the standby active and DNS on AWS.
        self.env.client("ssm").put_parameter(
            Name=manifest.mode_parameter, Value="active", Type="String", Overwrite=True
        )
        ecs = self.env.client("ecs")
        for kind, count in self._wanted(ctx).items():
            ecs.update_service(cluster=manifest.cluster, service=manifest.services[kind], desiredCount=count)

    def verify(self, ctx: RunContext) -> None:
        if self._current(ctx) != self._wanted(ctx):
            raise SafetyRefusal(f"ECS desired counts are {self._current(ctx)}, not {self._wanted(ctx)}.")


class Restore(EnvStep):
    name = "restore"

    def _newest(self) -> catalog.CatalogEntry:
        entries = catalog.read_catalog(self.env.store, self.env.manifest.backup_prefix, self.env.app)
        return catalog.select_backup(entries)

    def is_done(self, ctx: RunContext) -> bool:
        target = self.env.standby_database()
        marker = read_marker(target.with_dbname(MAINTENANCE_DB), target.dbname)
        newest = self._newest()
        return marker is not None and marker.backup_id == newest.backup_id

    def plan(self, ctx: RunContext) -> str:
        note = forecast_note(self.env.store, self.env.manifest.backup_prefix, self.env.app)
        return (
            f"restore the newest backup into the standby database (skipped if restore-ahead holds it){note}"
        )

    def apply(self, ctx: RunContext) -> None:
        target = self.env.standby_database()
        server = target.with_dbname(MAINTENANCE_DB)
        plan = plan_restore([self._newest()], target.dbname, now=datetime.now(UTC))
        report = execute_restore(
            plan,
            RestoreRequest(
                self.env.store,
                server,
                target.dbname,
                self.env.pg_restore,
                self.env.jobs,
                self.env.manifest.sanity_sql,
            ),
            progress=lambda line: ctx.say(f"  {line}"),
        )
        ctx.facts["restore_seconds"] = round(sum(report.phases.values()), 1)


class VerifyData(EnvStep):
    name = "verify_data"

    def is_done(self, ctx: RunContext) -> bool:
        return bool(ctx.facts.get("verified"))

    def plan(self, ctx: RunContext) -> str:
        return "every table's row count against the restored backup's manifest"

    def apply(self, ctx: RunContext) -> None:
        target = self.env.standby_database()
        marker = read_marker(target.with_dbname(MAINTENANCE_DB), target.dbname)
        if marker is None:
            raise SafetyRefusal(
                "the standby database carries no restore marker: it was not restored by standby."
            )
        entries = catalog.read_catalog(self.env.store, self.env.manifest.backup_prefix, self.env.app)
        backup = catalog.select_backup(entries, marker.backup_id)
        assert backup.manifest is not None
        verify_counts(target, backup.manifest.tables)
        lost_from = datetime.fromisoformat(ctx.facts.get("fenced_at") or ctx.facts["started_at"])
        ctx.facts["verified"] = True
        ctx.facts["restored_backup"] = marker.backup_id
        ctx.facts["rpo_seconds"] = round(max(0.0, (lost_from - marker.snapshot_at).total_seconds()), 1)


class WaitHealthy(EnvStep):
    name = "wait_healthy"

    def _healthy(self) -> bool:
        manifest = self.env.manifest
        if manifest.health_url:
            try:
                with urllib.request.urlopen(manifest.health_url, timeout=5) as answer:
                    return bool(200 <= answer.status < 400)
            except OSError:
                return False
        if not manifest.target_group_arn:
            return False
        health = self.env.client("elbv2").describe_target_health(TargetGroupArn=manifest.target_group_arn)
        return any(t["TargetHealth"]["State"] == "healthy" for t in health["TargetHealthDescriptions"])

    def is_done(self, ctx: RunContext) -> bool:
        return self._healthy()

    def plan(self, ctx: RunContext) -> str:
        return f"wait up to {self.env.health_timeout:.0f} s for the web service to answer its health check"

    def apply(self, ctx: RunContext) -> None:
        deadline = time.monotonic() + self.env.health_timeout
        while not self._healthy():
            if time.monotonic() > deadline:
                raise SafetyRefusal(
                    f"the standby's web service is not healthy after {self.env.health_timeout:.0f} s; DNS was not "
                    "switched. Check the ECS service's events and logs, then --resume."
                )
            time.sleep(2)


class SwitchDns(EnvStep):
    name = "switch_dns"

    def __init__(self, env: CutoverEnv) -> None:
        super().__init__(env)
        self.switch = DnsSwitch(env.manifest, env.client)

    def is_done(self, ctx: RunContext) -> bool:
        return self.switch.is_on(on_standby=True)

    def plan(self, ctx: RunContext) -> str:
        if self.switch.failover:
            return "drive the failover alarm: Route 53 answers with the AWS records (no control-plane call)"
        return (
            f"one change batch: {len(self.env.manifest.records)} record(s) from Heroku to the load balancer"
        )

    def apply(self, ctx: RunContext) -> None:
        change = self.switch.move(on_standby=True, reason=f"standby cutover of {self.env.app}")
        if change:
            ctx.facts["dns_change"] = change

    def verify(self, ctx: RunContext) -> None:
        if not self.is_done(ctx):
            raise SafetyRefusal("the DNS records do not point at the standby after the switch.")
        ctx.facts["dns_target"] = self.env.manifest.load_balancer_dns


def cutover_steps(env: CutoverEnv) -> list[Step]:
    return [
        Preflight(env),
        AssessPrimary(env),
        FencePrimary(env),
        FinalBackup(env),
        ScaleStandby(env),
        Restore(env),
        VerifyData(env),
        WaitHealthy(env),
        SwitchDns(env),
        VerifyPublic(env),
    ]


class VerifyPublic(EnvStep):
    """Ask the zone's name servers what the world is told for each name now (on real AWS)."""

    name = "verify_public"

    def __init__(self, env: CutoverEnv, timeout: float = 90.0) -> None:
        super().__init__(env)
        self.timeout = timeout

    def _servers(self) -> list[tuple[str, int]]:
        manifest = self.env.manifest
        if manifest.name_servers:
            return [(h, int(p)) for h, _, p in (s.rpartition(":") for s in manifest.name_servers)]
        zone = self.env.client("route53").get_hosted_zone(Id=manifest.hosted_zone_id)
        return [(socket.gethostbyname(ns), 53) for ns in zone["DelegationSet"]["NameServers"][:2]]

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
        if not self.env.manifest.verify_name_servers:
            return "name servers not asked here (verify_name_servers is off); records were read back"
        return "ask the zone's name servers for every name: none may still answer with Heroku"

    def apply(self, ctx: RunContext) -> None:
        manifest = self.env.manifest
        if not manifest.verify_name_servers or manifest.dns_mode == "failover":
            # Failover answers follow Route 53's health checks, which take their own minute; the alarm is the switch.
            ctx.facts["public_check"] = "not asked"
            return
        servers = self._servers()
        deadline = time.monotonic() + self.timeout
        while True:
            stale = {r["hostname"]: self._on_heroku(r["hostname"], servers) for r in manifest.records}
            stale = {name: where for name, where in stale.items() if where}
            if not stale:
                break
            if time.monotonic() > deadline:
                raise SafetyRefusal(
                    f"name servers still answer with Heroku after {self.timeout:.0f} s: {stale}"
                )
            time.sleep(3)
        ctx.facts["public_check"] = f"{len(servers)} name servers answer with AWS"
