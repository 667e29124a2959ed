"""The drill against the real standby, as runbook steps: prove today's backup restores and the app runs on
it, without touching production.

preflight -> restore the newest backup into a scratch database beside the standby's -> verify it ->
start one task of the web service against it -> check its health path through the load balancer ->
record the figures in the bucket -> tear the scratch parts down (also after a failure or Ctrl-C).
No DNS change, no change to the standby's database or services.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from secrets import token_urlsafe
from typing import Any, Final

from standby import catalog
from standby.drill_history import (
    DrillFigures,
    drill_history,
    forecast_note,
    forecast_restore_seconds,
    record_drill,
)
from standby.errors import ConfigError, SafetyRefusal, StandbyError
from standby.names import DRILL_CLOSED, DRILL_HEADER
from standby.pg_url import Database, url_with_dbname
from standby.polling import Poll
from standby.restore import (
    MAX_IDENT,
    RESTORING,
    RestoreRequest,
    drop_database,
    execute_restore,
    plan_restore,
    read_marker,
    verify_counts,
)
from standby.runbook.engine import RunContext, Step
from standby.runbook.environment import MAINTENANCE_DB, EnvStep, RunbookEnv
from standby.vocabulary import Mode

STARTED_BY: Final = "standby-drill"  # marks the drill's ECS tasks, so a teardown finds them all
SCRATCH_SUFFIX: Final = "_drill"
NOT_IN_USE: Final = "no drill is running"  # what the drill secret holds between drills
WEB: Final = "web"


def scratch_name(database: str) -> str:
    return database[: MAX_IDENT - len(SCRATCH_SUFFIX)] + SCRATCH_SUFFIX


def drill_family(app: str) -> str:
    return f"{app}-{WEB}-drill"


class DrillStep(EnvStep):
    """A drill step: works on the scratch database beside the standby's, never on the standby's own."""

    def scratch(self) -> Database:
        database = self.env.standby.database()
        return database.with_dbname(scratch_name(database.dbname))

    def server(self) -> Database:
        return self.env.standby.database().with_dbname(MAINTENANCE_DB)


class DrillPreflight(DrillStep):
    name = "preflight"

    def is_done(self, ctx: RunContext) -> bool:
        return "started_at" in ctx.facts

    def plan(self, ctx: RunContext) -> str:
        return "refuse a live standby; find the newest backup; remove what an interrupted drill left"

    def apply(self, ctx: RunContext) -> None:
        manifest = self.env.manifest
        if self.env.standby.mode() is Mode.ACTIVE:
            raise SafetyRefusal(
                f"the standby in {manifest.region} is live (mode active): a drill would load production's "
                "database server. Drill after the failback, or in the other region with --region."
            )
        missing = [
            name
            for name, value in (
                ("cluster", manifest.cluster),
                (f"services.{WEB}", manifest.services.get(WEB)),
                ("drill_database_secret", manifest.drill_database_secret),
                ("drill_target_group_arn", manifest.drill_target_group_arn),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                [f"the standby manifest in {manifest.region} has no {', '.join(missing)}: a drill needs a web "
                 "service and the drill parts. Run `pulumi up -s standby` with this version of standby."]
            )  # fmt: skip
        entries = self.env.catalog()
        newest = catalog.newest_complete(entries)
        if newest is None or newest.manifest is None:
            raise catalog.NoCompleteBackup(
                f"no complete backup of {self.env.app} in {self.env.store.describe()}: nothing to drill."
            )
        self.server()  # the database secret must be readable
        for line in tear_down(self.env):
            ctx.say(f"  removed, left by an interrupted drill: {line}")
        now = datetime.now(UTC)
        ctx.facts["started_at"] = now.isoformat()
        ctx.facts["newest_backup"] = newest.backup_id
        ctx.facts["dump_bytes"] = newest.manifest.size
        ctx.facts["rpo_seconds"] = round(newest.age(now), 1)  # what a disaster now would lose
        forecast = forecast_restore_seconds(drill_history(self.env.store, self.env.app), newest.manifest.size)
        ctx.facts["forecast_restore_seconds"] = forecast


class RestoreScratch(DrillStep):
    name = "restore_scratch"

    def is_done(self, ctx: RunContext) -> bool:
        marker = read_marker(self.server(), self.scratch().dbname)
        return marker is not None and marker.backup_id == ctx.facts.get("newest_backup")

    def plan(self, ctx: RunContext) -> str:
        note = forecast_note(self.env.store, self.env.manifest.backup_prefix, self.env.app)
        return f"restore the newest backup into a scratch database beside the standby's{note}"

    def apply(self, ctx: RunContext) -> None:
        entries = self.env.catalog()
        backup = catalog.select_backup(entries, ctx.facts["newest_backup"])
        scratch = self.scratch().dbname
        request = RestoreRequest(
            self.env.store,
            self.server(),
            scratch,
            self.env.pg_restore,
            self.env.jobs,
            self.env.manifest.sanity_sql,
            owner=self.env.standby.app_owner(),  # the drill's task connects as the app does
        )
        report = execute_restore(
            plan_restore([backup], scratch, now=datetime.now(UTC)),
            request,
            progress=lambda line: ctx.say(f"  {line}"),
        )
        ctx.facts["scratch_database"] = scratch
        ctx.facts["restore_seconds"] = round(sum(report.phases.values()), 2)


class VerifyScratch(DrillStep):
    name = "verify_scratch"

    def is_done(self, ctx: RunContext) -> bool:
        return bool(ctx.facts.get("verified"))

    def plan(self, ctx: RunContext) -> str:
        return "every table's row count in the scratch database against the backup's manifest"

    def apply(self, ctx: RunContext) -> None:
        marker = read_marker(self.server(), self.scratch().dbname)
        if marker is None or marker.backup_id != ctx.facts["newest_backup"]:
            raise SafetyRefusal("the scratch database does not hold the newest backup.")
        entries = self.env.catalog()
        backup = catalog.select_backup(entries, marker.backup_id)
        assert backup.manifest is not None
        verify_counts(self.scratch(), backup.manifest.tables)
        ctx.facts["verified"] = True
        ctx.facts["tables_verified"] = len(backup.manifest.tables)


class StartWebTask(DrillStep):
    name = "start_web_task"

    def is_done(self, ctx: RunContext) -> bool:
        task = ctx.facts.get("drill_task")
        return bool(task) and _task(self.env, str(task)).get("lastStatus") == "RUNNING"

    def plan(self, ctx: RunContext) -> str:
        return "one task of the web service's current task definition, its DATABASE_URL the scratch database"

    def apply(self, ctx: RunContext) -> None:
        env, manifest = self.env, self.env.manifest
        secrets, ecs = env.standby.client("secretsmanager"), env.standby.client("ecs")
        # The URL holds the password: it goes into the drill secret, never into the task definition.
        url = url_with_dbname(
            env.standby.app_database_url() or env.standby.database_url(), self.scratch().dbname
        )
        secrets.put_secret_value(SecretId=manifest.drill_database_secret, SecretString=url)
        service = ecs.describe_services(cluster=manifest.cluster, services=[manifest.services[WEB]])[
            "services"
        ]
        if not service:
            raise StandbyError(
                f"the web service {manifest.services[WEB]} is not in cluster {manifest.cluster}."
            )
        current = ecs.describe_task_definition(taskDefinition=service[0]["taskDefinition"])["taskDefinition"]
        registered = ecs.register_task_definition(
            **_drill_definition(current, env.app, manifest.drill_database_secret)
        )
        task_definition = registered["taskDefinition"]["taskDefinitionArn"]
        started = ecs.run_task(
            cluster=manifest.cluster,
            taskDefinition=task_definition,
            launchType="FARGATE",
            startedBy=STARTED_BY,
            count=1,
            networkConfiguration=service[0]["networkConfiguration"],
        )
        if started.get("failures") or not started.get("tasks"):
            raise StandbyError(f"ECS did not start the drill task: {started.get('failures')}")
        arn = started["tasks"][0]["taskArn"]
        ctx.facts["drill_task"] = arn
        ctx.facts["drill_task_definition"] = task_definition
        deadline, poll = time.monotonic() + env.health_timeout, Poll(3.0)
        while (task := _task(env, arn)).get("lastStatus") != "RUNNING":
            if task.get("lastStatus") == "STOPPED" or time.monotonic() > deadline:
                raise SafetyRefusal(
                    f"the drill's web task did not start ({task.get('lastStatus')}: {task.get('stoppedReason', 'timed out')}). "
                    "Its logs are in CloudWatch under the service's log group."
                )  # fmt: skip
            poll.pause()
        ctx.facts["drill_task_ip"] = _private_ip(task)


class CheckHealth(DrillStep):
    name = "check_health"

    def is_done(self, ctx: RunContext) -> bool:
        return "healthy_at" in ctx.facts

    def plan(self, ctx: RunContext) -> str:
        return (
            f"the task's {self.env.manifest.health_check_path} through the drill target group until healthy"
        )

    def apply(self, ctx: RunContext) -> None:
        group, ip = str(self.env.manifest.drill_target_group_arn), ctx.facts["drill_task_ip"]
        # Only requests carrying this drill's header reach its task (production data, production secrets):
        # a value nobody can guess, valid until the teardown replaces it. It is kept in the journal.
        ctx.facts["drill_header"] = set_drill_route(self.env, token_urlsafe(24))
        ctx.say(f"  the drill answers requests carrying {DRILL_HEADER}: {ctx.facts['drill_header']}")
        self.env.standby.client("elbv2").register_targets(TargetGroupArn=group, Targets=[{"Id": ip}])
        deadline = time.monotonic() + self.env.health_timeout
        poll = Poll(2.0)
        while not self.env.standby.target_healthy(group, ip):
            if time.monotonic() > deadline:
                raise SafetyRefusal(
                    f"the drill's web task did not answer {self.env.manifest.health_check_path} healthily "
                    f"within {self.env.health_timeout:.0f} s on the restored data. Its logs are in CloudWatch."
                )
            poll.pause()
        now = datetime.now(UTC)
        ctx.facts["healthy_at"] = now.isoformat()
        # The drill's RTO: what a cutover's restore, verification and first healthy task took today.
        ctx.facts["rto_seconds"] = round(
            (now - datetime.fromisoformat(ctx.facts["started_at"])).total_seconds(), 1
        )


class RecordFigures(DrillStep):
    name = "record_figures"

    def is_done(self, ctx: RunContext) -> bool:
        return "figures" in ctx.facts

    def plan(self, ctx: RunContext) -> str:
        return f"restore throughput and RTO into {self.env.store.describe()} (drills/), for forecasts"

    def apply(self, ctx: RunContext) -> None:
        figures = DrillFigures(
            app=self.env.app,
            run_id=ctx.run_id,
            finished_at=ctx.facts["healthy_at"],
            backup_id=ctx.facts["newest_backup"],
            dump_bytes=int(ctx.facts["dump_bytes"]),
            restore_seconds=float(ctx.facts["restore_seconds"]),
            time_to_healthy_seconds=float(ctx.facts["rto_seconds"]),
            backup_age_seconds=float(ctx.facts["rpo_seconds"]),
        )
        ctx.facts["figures"] = record_drill(self.env.store, figures)
        ctx.facts["throughput_mb_s"] = figures.throughput_mb_s


class TearDown(DrillStep):
    name = "tear_down"

    def is_done(self, ctx: RunContext) -> bool:
        return False  # cheap and idempotent: always make sure

    def plan(self, ctx: RunContext) -> str:
        return "stop the drill task, deregister it and its task definition, drop the scratch database"

    def apply(self, ctx: RunContext) -> None:
        removed = tear_down(self.env)
        ctx.facts["torn_down"] = removed
        for line in removed:
            ctx.say(f"  removed {line}")

    def verify(self, ctx: RunContext) -> None:
        left = _leftovers(self.env)
        if left:
            raise StandbyError(f"drill parts still present after the teardown: {left}")


def drill_steps(env: RunbookEnv) -> list[Step]:
    return [
        DrillPreflight(env),
        RestoreScratch(env),
        VerifyScratch(env),
        StartWebTask(env),
        CheckHealth(env),
        RecordFigures(env),
    ]


def drill_cleanup(env: RunbookEnv) -> list[Step]:
    return [TearDown(env)]


def tear_down(env: RunbookEnv) -> list[str]:
    """Remove every drill part, whichever drill left it; returns what was removed."""
    manifest, removed = env.manifest, []
    ecs = env.standby.client("ecs")
    for arn in _drill_tasks(env):
        ecs.stop_task(cluster=manifest.cluster, task=arn, reason="standby drill finished")
        removed.append(f"task {arn.rsplit('/', 1)[-1]}")
    if manifest.drill_target_group_arn:
        elbv2 = env.standby.client("elbv2")
        health = elbv2.describe_target_health(TargetGroupArn=manifest.drill_target_group_arn)
        targets = [{"Id": t["Target"]["Id"]} for t in health["TargetHealthDescriptions"]]
        if targets:
            elbv2.deregister_targets(TargetGroupArn=manifest.drill_target_group_arn, Targets=targets)
            removed.append(f"{len(targets)} target(s) of the drill target group")
    if drill_route_open(env):
        set_drill_route(env, DRILL_CLOSED + token_urlsafe(24))
        removed.append(f"the drill's route ({DRILL_HEADER} changed to a value nobody holds)")
    for arn in _drill_task_definitions(env):
        ecs.deregister_task_definition(taskDefinition=arn)
        removed.append(f"task definition {arn.rsplit('/', 1)[-1]}")
    if manifest.drill_database_secret:  # a URL of a dropped database helps nobody
        env.standby.client("secretsmanager").put_secret_value(
            SecretId=manifest.drill_database_secret, SecretString=NOT_IN_USE
        )
    server = env.standby.database().with_dbname(MAINTENANCE_DB)
    for name in _scratch_databases(env, server):
        drop_database(server, name)
        removed.append(f"database {name}")
    return removed


def _leftovers(env: RunbookEnv) -> list[str]:
    server = env.standby.database().with_dbname(MAINTENANCE_DB)
    route = ["the drill's route is open"] if drill_route_open(env) else []
    return [*_drill_tasks(env), *_drill_task_definitions(env), *_scratch_databases(env, server), *route]


def _drill_route(env: RunbookEnv) -> list[str]:
    """The header values the drill's listener rule forwards to the drill target group."""
    if not env.manifest.drill_rule_arn:
        return []
    rules = env.standby.client("elbv2").describe_rules(RuleArns=[env.manifest.drill_rule_arn])["Rules"]
    return [
        str(value)
        for condition in (rules[0]["Conditions"] if rules else [])
        for value in condition.get("HttpHeaderConfig", {}).get("Values", [])
    ]


def drill_route_open(env: RunbookEnv) -> bool:
    return any(not value.startswith(DRILL_CLOSED) for value in _drill_route(env))


def set_drill_route(env: RunbookEnv, value: str) -> str:
    """Forward requests whose drill header is `value` (and no other) to the drill target group."""
    if not env.manifest.drill_rule_arn:
        raise StandbyError(
            f"the standby manifest in {env.manifest.region} names no drill listener rule. "
            "Run `pulumi up -s standby` with this version of standby."
        )
    env.standby.client("elbv2").modify_rule(
        RuleArn=env.manifest.drill_rule_arn,
        Conditions=[
            {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": DRILL_HEADER, "Values": [value]}}
        ],
    )
    return value


def _drill_tasks(env: RunbookEnv) -> list[str]:
    if not env.manifest.cluster:
        return []
    found = env.standby.client("ecs").list_tasks(
        cluster=env.manifest.cluster, startedBy=STARTED_BY, desiredStatus="RUNNING"
    )
    return list(found["taskArns"])


def _drill_task_definitions(env: RunbookEnv) -> list[str]:
    found = env.standby.client("ecs").list_task_definitions(
        familyPrefix=drill_family(env.app), status="ACTIVE"
    )
    return list(found["taskDefinitionArns"])


def _scratch_databases(env: RunbookEnv, server: Database) -> list[str]:
    """The scratch database and its restores' leftovers: names compared here, not with LIKE (whose `_`
    matches any character, and whose matches the teardown drops WITH (FORCE))."""
    scratch = scratch_name(env.standby.database().dbname)
    restoring = scratch[: MAX_IDENT - len(RESTORING) - 6] + RESTORING
    with server.connect(autocommit=True) as conn:
        names = [str(r[0]) for r in conn.execute("SELECT datname FROM pg_database")]
    return sorted(n for n in names if n == scratch or n.startswith(restoring))


def _task(env: RunbookEnv, arn: str) -> dict[str, Any]:
    found = env.standby.client("ecs").describe_tasks(cluster=env.manifest.cluster, tasks=[arn])["tasks"]
    return dict(found[0]) if found else {}


def _private_ip(task: dict[str, Any]) -> str:
    for attachment in task.get("attachments", []):
        for detail in attachment.get("details", []):
            if detail.get("name") == "privateIPv4Address":
                return str(detail["value"])
    raise StandbyError("the drill task has no private IP address (is the web service in awsvpc mode?)")


_COPIED: Final[tuple[str, ...]] = ("taskRoleArn", "executionRoleArn", "networkMode", "volumes", "requiresCompatibilities",
                  "cpu", "memory", "runtimePlatform", "ephemeralStorage")  # fmt: skip


def _drill_definition(current: dict[str, Any], app: str, drill_secret: str | None) -> dict[str, Any]:
    """The web service's task definition with DATABASE_URL taken from the drill secret, in its own family."""
    containers = []
    for container in current["containerDefinitions"]:
        container = dict(container)
        secrets = [s for s in container.get("secrets", []) if s["name"] != "DATABASE_URL"]
        container["secrets"] = [*secrets, {"name": "DATABASE_URL", "valueFrom": drill_secret}]
        # Apps can skip side effects (mail, payments, jobs) while they run on a drill's copy of the data.
        environment = [e for e in container.get("environment", []) if e["name"] != "STANDBY_DRILL"]
        container["environment"] = [*environment, {"name": "STANDBY_DRILL", "value": "1"}]
        containers.append(container)
    copied = {name: current[name] for name in _COPIED if name in current}
    return {**copied, "family": drill_family(app), "containerDefinitions": containers}
