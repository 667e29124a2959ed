"""The drill against the standby (`scripts/drill.py`), on loopback: a real PostgreSQL as the standby's
database server, moto's server holding the standby as `pulumi up` leaves it (ECS really runs the drill's
task in moto), and a stand-in for that task's web app: it answers /health from whatever database the
running drill task's DATABASE_URL secret names, as the app in the task would. The load balancer's view of
the drill target comes from the production path (describe_target_health) once the stand-in answers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import psycopg
import pytest

from standby.backup_store import S3Store
from standby.commands import drill
from standby.drill_history import drill_history
from standby.local.postgres import LocalPostgres
from standby.local.standby_side import LocalStandby
from standby.local.standby_world import WorldSpec, build_standby_world
from standby.names import mode_parameter
from standby.runbooks.drill import NOT_IN_USE, STARTED_BY, drill_family
from standby.sample_data import load_pagila
from standby.standby_manifest import StandbyManifest
from tests.aws_calls import operator_refusals, record_calls
from tests.runbook_scene import Run, run_in_process, take_backup
from tests.servers import run_script


@dataclass
class DrillTaskStandIn:
    """What the app in the drill's task would answer on /health: 200 when its database holds the app."""

    cluster: str
    healthy: bool = True
    served_from: list[str] = field(default_factory=list)  # databases it answered from

    def status(self) -> int:
        ecs, secrets = boto3.client("ecs"), boto3.client("secretsmanager")
        tasks = ecs.list_tasks(cluster=self.cluster, startedBy=STARTED_BY, desiredStatus="RUNNING")[
            "taskArns"
        ]
        if not tasks or not self.healthy:
            return 503
        task = ecs.describe_tasks(cluster=self.cluster, tasks=tasks)["tasks"][0]
        definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
        container = definition["containerDefinitions"][0]
        assert {"name": "STANDBY_DRILL", "value": "1"} in container["environment"]
        source = next(s["valueFrom"] for s in container["secrets"] if s["name"] == "DATABASE_URL")
        url = secrets.get_secret_value(SecretId=source)["SecretString"]
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1 FROM rental LIMIT 1")
                self.served_from.append(str(conn.info.dbname))
        except psycopg.Error:
            return 503
        return 200


@dataclass
class DrillScene:
    manifest: StandbyManifest
    standby_url: str
    task: DrillTaskStandIn
    env: dict[str, str]
    journal: Path
    web_url: str


@pytest.fixture
def drill_scene(
    pg_server: LocalPostgres, pagila_template: str, aws_env: dict[str, str], tmp_path: Path
) -> Iterator[DrillScene]:
    source = pg_server.create_database("heroku", template=pagila_template)
    standby_url = pg_server.create_database("standby")  # the standby's own database, warm
    load_pagila(standby_url, rentals=100)
    app = f"drill-{time.time_ns() % 10**8}"
    cluster = f"{app}-standby"
    task = DrillTaskStandIn(cluster)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(task.status() if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    health = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=health.serve_forever, args=(0.05,), daemon=True).start()
    manifest = build_standby_world(
        WorldSpec(
            app=app,
            region="us-east-2",
            database_url=standby_url,
            zone=f"{app}.example",
            records={f"www.{app}.example": "www-1.herokudns.com"},
            formation={"web": 2, "worker": 1},
            load_balancer_dns="drill-lb.us-east-2.elb.amazonaws.com",
        )
    )
    take_backup(manifest, source)
    web_url = f"http://127.0.0.1:{health.server_port}/health"
    yield DrillScene(manifest, standby_url, task, aws_env, tmp_path / "journal", web_url)
    health.shutdown()


def _drill(scene: DrillScene, *args: str) -> Run:
    argv = [
        "--app",
        scene.manifest.app,
        "--yes",
        "--journal-dir",
        str(scene.journal),
        "--health-timeout",
        "8",
        *args,
    ]
    return run_in_process(drill.main, argv, partial(LocalStandby, web_url=scene.web_url))


def _standby_state(scene: DrillScene) -> dict[str, object]:
    """What production cares about: DNS, the live mode, the services, the standby's own data."""
    manifest = scene.manifest
    records = boto3.client("route53").list_resource_record_sets(HostedZoneId=manifest.hosted_zone_id)
    services = boto3.client("ecs").describe_services(
        cluster=manifest.cluster, services=list(manifest.services.values())
    )
    with psycopg.connect(scene.standby_url) as conn:
        rentals = conn.execute("SELECT count(*) FROM rental").fetchone()
    return {
        "dns": [(r["Name"], r.get("ResourceRecords")) for r in records["ResourceRecordSets"] if r["Type"] == "CNAME"],
        "mode": boto3.client("ssm").get_parameter(Name=mode_parameter(manifest.app))["Parameter"]["Value"],
        "services": {s["serviceName"]: (s["desiredCount"], s["taskDefinition"]) for s in services["services"]},
        "rentals": rentals,
    }  # fmt: skip


def _drill_parts_left(scene: DrillScene) -> dict[str, object]:
    manifest = scene.manifest
    ecs = boto3.client("ecs")
    with psycopg.connect(scene.standby_url) as conn:
        databases = [
            r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE '%drill%'")
        ]
    targets = boto3.client("elbv2").describe_target_health(TargetGroupArn=manifest.drill_target_group_arn)
    return {
        "tasks": ecs.list_tasks(cluster=manifest.cluster, startedBy=STARTED_BY, desiredStatus="RUNNING")["taskArns"],
        "task_definitions": ecs.list_task_definitions(familyPrefix=drill_family(manifest.app), status="ACTIVE")[
            "taskDefinitionArns"],
        "targets": targets["TargetHealthDescriptions"],
        "databases": databases,
        "secret": boto3.client("secretsmanager").get_secret_value(SecretId=manifest.drill_database_secret)[
            "SecretString"],
        "route open": not _route(scene).startswith("closed-"),
    }  # fmt: skip


def _route(scene: DrillScene) -> str:
    """The drill header's value the load balancer forwards to the drill target group."""
    (rule,) = boto3.client("elbv2").describe_rules(RuleArns=[str(scene.manifest.drill_rule_arn)])["Rules"]
    (value,) = rule["Conditions"][0]["HttpHeaderConfig"]["Values"]
    return str(value)


NOTHING_LEFT = {"tasks": [], "task_definitions": [], "targets": [], "databases": [], "secret": NOT_IN_USE,
                "route open": False}  # fmt: skip


def test_a_drill_restores_a_scratch_copy_runs_the_web_task_on_it_records_figures_and_tears_down(
    drill_scene: DrillScene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _standby_state(drill_scene)

    with record_calls(monkeypatch) as calls:
        result = _drill(
            drill_scene, "--json", str(tmp_path / "drill.json"), "--report", str(tmp_path / "drill.md")
        )

    assert result.code == 0, result.output
    assert operator_refusals(drill_scene.manifest, calls) == []  # the operator role may do all it took
    report = json.loads((tmp_path / "drill.json").read_text())
    assert report["verified"] is True and report["outcome"] == "succeeded"
    assert [s["name"] for s in report["steps"]] == [
        "preflight", "restore_scratch", "verify_scratch", "start_web_task", "check_health", "record_figures",
        "tear_down"]  # fmt: skip
    assert (
        0 < report["rto_seconds"] < sum(s["seconds"] for s in report["steps"])
    )  # up to healthy, not teardown
    assert report["rpo_seconds"] >= 0
    # The web task served from the scratch copy, not from the standby's database.
    assert drill_scene.task.served_from and all(d.endswith("_drill") for d in drill_scene.task.served_from)
    assert _standby_state(drill_scene) == before
    assert _drill_parts_left(drill_scene) == NOTHING_LEFT
    # The drill's header was random, kept in its journal, and no longer opens anything.
    header = report["facts"]["drill_header"]
    assert len(header) >= 32 and drill_scene.manifest.app not in header and _route(drill_scene) != header
    assert f"X-Standby-Drill: {header}" in result.output
    assert [c.action for c in calls].count("elasticloadbalancing:ModifyRule") == 2  # opened, then closed
    journal = json.loads((drill_scene.journal / f"{drill_scene.manifest.app}-drill.json").read_text())
    assert journal["facts"]["drill_header"] == header
    assert "![timeline](drill.svg)" in (tmp_path / "drill.md").read_text()
    assert (tmp_path / "drill.svg").read_text().startswith("<svg")

    history = drill_history(S3Store(drill_scene.manifest.backup_bucket), drill_scene.manifest.app)
    assert [h.run_id for h in history] == [report["run_id"]]
    assert history[0].throughput_mb_s > 0 and history[0].dump_bytes > 0
    assert history[0].time_to_healthy_seconds == report["rto_seconds"]

    # The next drill forecasts its restore from the first one's throughput.
    second = _drill(drill_scene, "--dry-run")
    assert second.code == 0, second.output
    assert "forecast from earlier drills" in second.output


def test_a_drill_whose_task_never_turns_healthy_fails_and_still_tears_everything_down(
    drill_scene: DrillScene, tmp_path: Path
) -> None:
    drill_scene.task.healthy = False
    before = _standby_state(drill_scene)

    result = _drill(drill_scene, "--json", str(tmp_path / "drill.json"), "--health-timeout", "3")

    assert result.code == 3, result.output
    assert "did not answer /health healthily within 3 s" in result.output
    report = json.loads((tmp_path / "drill.json").read_text())
    outcomes = {s["name"]: s["outcome"] for s in report["steps"]}
    assert outcomes["check_health"] == "failed" and outcomes["tear_down"] == "done"
    assert report["outcome"] == "failed"
    assert _drill_parts_left(drill_scene) == NOTHING_LEFT
    assert _standby_state(drill_scene) == before
    assert drill_history(S3Store(drill_scene.manifest.backup_bucket), drill_scene.manifest.app) == []

    drill_scene.task.healthy = True  # the failed drill ended: the next one starts without --resume
    assert _drill(drill_scene).code == 0


def test_a_drill_refuses_a_live_standby_and_touches_nothing(drill_scene: DrillScene) -> None:
    boto3.client("ssm").put_parameter(
        Name=mode_parameter(drill_scene.manifest.app), Value="active", Type="String", Overwrite=True
    )
    before = _standby_state(drill_scene)

    result = run_script(
        "drill.py", "--app", drill_scene.manifest.app, "--yes", "--journal-dir", str(drill_scene.journal),
        env=drill_scene.env,
    )  # fmt: skip

    assert result.returncode == 3
    assert "is live (mode active)" in result.stderr
    assert _standby_state(drill_scene) == before
    assert _drill_parts_left(drill_scene)["databases"] == []
