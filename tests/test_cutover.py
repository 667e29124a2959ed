"""The cutover end to end, all on loopback: two real PostgreSQL databases ("Heroku" and the standby),
moto's server holding the standby as `pulumi up` leaves it, the fake Heroku API, and a stand-in for the
standby's web service; the cutover runs as a subprocess, as an operator runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

from standby.backup import BackupRequest, run_backup
from standby.backup_store import S3Store
from standby.local.heroku_fake import FakeApp, HerokuFake
from standby.local.postgres import LocalPostgres
from standby.local.standby_world import WorldSpec, build_standby_world
from standby.names import mode_parameter
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url
from standby.sample_data import load_pagila
from standby.standby_manifest import StandbyManifest
from tests.conftest import CRASH_POINTS_TRIED
from tests.servers import ROOT, count_tables, run_script

APP = "acme-shop"
TOKEN = "heroku-token-not-for-logs"
LB = "acme-standby-123.us-east-2.elb.amazonaws.com"


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@dataclass
class Scene:
    heroku: HerokuFake
    manifest: StandbyManifest
    source: str
    standby: str
    env: dict[str, str]
    journal: Path


@pytest.fixture
def scene(
    pg_server: LocalPostgres, aws_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Scene]:
    source = pg_server.create_database("heroku")
    load_pagila(source, rentals=3000)
    standby = pg_server.url(f"standby_{time.time_ns()}")
    health = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=health.serve_forever, daemon=True).start()
    app = f"{APP}-{time.time_ns() % 10**8}"  # moto's state is shared by the session: one app per test
    manifest = build_standby_world(
        WorldSpec(
            app=app,
            region="us-east-2",
            database_url=standby,
            # One zone per test: moto's Route 53 checks record names across zones of the same name.
            zone=f"{app}.example",
            records={
                f"www.{app}.example": "www-1.herokudns.com",
                f"api.{app}.example": "api-1.herokudns.com",
            },
            formation={"web": 3, "worker": 2},
            load_balancer_dns=LB,
            health_url=f"http://127.0.0.1:{health.server_port}/health",
            dns_mode=getattr(request, "param", "record"),
        )
    )
    run_backup(
        BackupRequest(app, parse_database_url(source), S3Store(manifest.backup_bucket), find_tool("pg_dump"))
    )
    with HerokuFake(TOKEN, pg_restore=str(find_tool("pg_restore").path)) as heroku:
        heroku.add_app(
            FakeApp(app, config_vars={"DATABASE_URL": source}, formation={
                "web": {"quantity": 3, "size": "Standard-2X"}, "worker": {"quantity": 2, "size": "Standard-1X"}})
        )  # fmt: skip
        env = {**aws_env, "HEROKU_API_URL": heroku.url, "HEROKU_DATA_API_URL": heroku.url, "HEROKU_API_KEY": TOKEN,
               "HEROKU_API_ATTEMPTS": "2"}  # fmt: skip
        yield Scene(heroku, manifest, source, standby, env, tmp_path / "journal")
    health.shutdown()


def _cutover(scene: Scene, *args: str) -> object:
    return run_script(
        "cutover.py", "--app", scene.manifest.app, "--yes", "--journal-dir", str(scene.journal), "--health-timeout", "20",
        *args, env=scene.env,
    )  # fmt: skip


def _records(manifest: StandbyManifest) -> dict[str, dict[str, object]]:
    sets = boto3.client("route53").list_resource_record_sets(HostedZoneId=manifest.hosted_zone_id)[
        "ResourceRecordSets"
    ]
    return {s["Name"].split(".")[0]: s for s in sets if s["Type"] in ("CNAME", "A")}  # by first label


def test_a_graceful_cutover_fences_heroku_restores_everything_and_moves_dns(
    scene: Scene, tmp_path: Path
) -> None:
    result = _cutover(scene, "--json", str(tmp_path / "report.json"))

    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    app = scene.heroku.apps[scene.manifest.app]
    assert app.maintenance is True
    assert {t: p["quantity"] for t, p in app.formation.items()} == {"web": 0, "worker": 0}
    tables = ["public.rental", "public.payment", "public.customer", "public.film"]
    assert count_tables(scene.standby, tables) == count_tables(scene.source, tables)
    ssm = boto3.client("ssm")
    assert ssm.get_parameter(Name=mode_parameter(scene.manifest.app))["Parameter"]["Value"] == "active"
    services = boto3.client("ecs").describe_services(
        cluster=scene.manifest.cluster, services=list(scene.manifest.services.values())
    )
    assert {s["serviceName"]: s["desiredCount"] for s in services["services"]} == {
        f"{scene.manifest.app}-web": 3, f"{scene.manifest.app}-worker": 2}  # fmt: skip
    records = _records(scene.manifest)
    assert records["www"]["AliasTarget"]["DNSName"].rstrip(".") == LB  # type: ignore[index]
    assert records["api"]["Type"] == "A"

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verified"] is True
    assert report["rto_seconds"] > 0
    assert 0 <= report["rpo_seconds"] < 5  # graceful: the final backup was taken after fencing
    assert [s["name"] for s in report["steps"]] == [
        "preflight", "assess_primary", "fence_primary", "final_backup", "scale_standby", "restore",
        "verify_data", "wait_healthy", "switch_dns", "verify_public"]  # fmt: skip
    assert all(s["outcome"] in ("done", "already done") for s in report["steps"])
    output = result.stdout + result.stderr  # type: ignore[attr-defined]
    journal_text = "".join(p.read_text() for p in scene.journal.glob("*"))
    for secret in (TOKEN, "mock", scene.standby):
        assert secret not in output and secret not in journal_text


def test_heroku_unreachable_without_the_flag_stops_before_any_change(scene: Scene) -> None:
    scene.heroku.stop()
    before = _records(scene.manifest)

    result = _cutover(scene)

    assert result.returncode == 3, result.stderr  # type: ignore[attr-defined]
    assert "--primary-unreachable" in result.stderr  # type: ignore[attr-defined]
    assert _records(scene.manifest) == before
    assert (
        boto3.client("ssm").get_parameter(Name=mode_parameter(scene.manifest.app))["Parameter"]["Value"]
        == "warm"
    )


def test_heroku_down_with_the_flag_cuts_over_from_the_newest_backup(scene: Scene, tmp_path: Path) -> None:
    scene.heroku.stop()
    result = _cutover(scene, "--primary-unreachable", "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verified"] is True
    assert {s["name"]: s["outcome"] for s in report["steps"]}["fence_primary"] == "already done"
    assert report["rpo_seconds"] > 0  # measured: the age of the newest backup when the cutover began


def test_a_second_cutover_while_one_runs_is_refused_and_touches_nothing(scene: Scene) -> None:
    from standby.runbook.lock import DynamoDbLock

    DynamoDbLock(scene.manifest.lock_table or "").acquire(f"{scene.manifest.app}/cutover", "alice@laptop")
    result = _cutover(scene, "--owner", "bob@desk")
    assert result.returncode == 3
    assert "locked by alice@laptop" in result.stderr  # type: ignore[attr-defined]
    assert scene.heroku.apps[scene.manifest.app].maintenance is False


def test_dry_run_prints_the_plan_and_changes_nothing(scene: Scene) -> None:
    result = _cutover(scene, "--dry-run")
    assert result.returncode == 0
    assert "fence_primary" in result.stderr and "Heroku maintenance mode on" in result.stderr  # type: ignore[attr-defined]
    assert scene.heroku.apps[scene.manifest.app].maintenance is False
    assert [r.method for r in scene.heroku.requests] == []


STEPS = ["preflight", "assess_primary", "fence_primary", "final_backup", "scale_standby", "restore",
         "verify_data", "wait_healthy", "switch_dns", "verify_public"]  # fmt: skip


def _journal(scene: Scene) -> dict[str, object]:
    path = scene.journal / f"{scene.manifest.app}-cutover.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _finished(scene: Scene, step: str) -> bool:
    steps = _journal(scene).get("steps") or []
    return any(s["name"] == step and s["outcome"] in ("done", "already done") for s in steps)  # type: ignore[union-attr]


def _started(scene: Scene, step: str) -> bool:
    steps = _journal(scene).get("steps") or []
    return any(s["name"] == step for s in steps)  # type: ignore[union-attr]


def _restoring(pg_server: LocalPostgres) -> bool:
    import psycopg

    with psycopg.connect(pg_server.admin_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE '%__restoring_%'").fetchone()
    return bool(row and row[0])


def _crash_and_resume(scene: Scene, crashed: Callable[[], bool]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(ROOT / "scripts" / "cutover.py"), "--app", scene.manifest.app, "--yes",
               "--journal-dir", str(scene.journal), "--health-timeout", "20", "--owner", "ops"]  # fmt: skip
    process = subprocess.Popen(command, env={**os.environ, **scene.env}, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while process.poll() is None and not crashed() and time.monotonic() < deadline:
        time.sleep(0.005)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)  # the operator's laptop dies
    process.wait()
    return run_script(*command[1:], "--resume", env=scene.env)


CRASH_POINTS = [f"after {step}" for step in STEPS[:-1]] + ["during restore", "during switch_dns"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_cutover_killed_at_any_point_resumes_to_the_same_end_state(
    scene: Scene, pg_server: LocalPostgres, point: str, tmp_path: Path
) -> None:
    crashed = (
        (lambda: _restoring(pg_server))
        if point == "during restore"
        else (lambda: _finished(scene, point[6:]))
    )

    result = _crash_and_resume(scene, crashed)

    assert result.returncode == 0, result.stderr
    app = scene.heroku.apps[scene.manifest.app]
    assert app.maintenance is True and all(p["quantity"] == 0 for p in app.formation.values())
    tables = ["public.rental", "public.payment", "public.customer"]
    assert count_tables(scene.standby, tables) == count_tables(scene.source, tables)
    assert _records(scene.manifest)["www"]["Type"] == "A"
    journal = _journal(scene)
    assert journal["finished"] is True and journal["facts"]["verified"] is True  # type: ignore[index]
    # No side effect twice: one final backup at most, one fencing of the formation, the DNS moved once.
    manifests = [
        k for k in S3Store(scene.manifest.backup_bucket).list_keys("backups/") if k.endswith("manifest.json")
    ]
    assert len(manifests) <= 2
    scale_calls = [r for r in scene.heroku.requests if r.method == "PATCH" and r.path.endswith("/formation")]
    assert len(scale_calls) <= 2  # once, or again only when the kill landed inside the fencing step
    CRASH_POINTS_TRIED.append(point)  # summed up at the end of the session (conftest)


def test_a_failed_data_verification_leaves_dns_and_the_mode_untouched(scene: Scene) -> None:
    # The newest backup's manifest disagrees with its dump: the restore's row check must refuse it.
    store = S3Store(scene.manifest.backup_bucket)
    key = next(k for k in store.list_keys("backups/") if k.endswith("manifest.json"))
    doc = store.get_json(key)
    doc["tables"]["public.rental"] += 1
    store.put_json(key, doc)
    scene.heroku.apps[scene.manifest.app].config_vars.pop("DATABASE_URL")  # no final backup to fall back on
    before = _records(scene.manifest)

    result = _cutover(scene)

    assert result.returncode == 3, result.stderr  # type: ignore[attr-defined]
    assert "step restore failed" in result.stderr and "public.rental: 3000 instead of 3001" in result.stderr  # type: ignore[attr-defined]
    assert _records(scene.manifest) == before


def test_heroku_429_and_503_answers_are_retried(scene: Scene) -> None:
    scene.heroku.fail_next(1, 429)
    scene.heroku.fail_next(1, 503)
    result = run_script(
        "cutover.py", "--app", scene.manifest.app, "--yes", "--journal-dir", str(scene.journal),
        env={**scene.env, "HEROKU_API_ATTEMPTS": "4"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert scene.heroku.apps[scene.manifest.app].maintenance is True
    assert len(scene.heroku.requests) > 2


def test_dry_run_matches_the_golden_plan(scene: Scene) -> None:
    result = _cutover(scene, "--dry-run")
    plan = result.stderr.replace(scene.manifest.app, "APP").replace(scene.manifest.backup_bucket, "BUCKET")  # type: ignore[attr-defined]
    plan = re.sub(r"\d+ s for", "N s for", plan)
    golden = ROOT / "tests" / "golden" / "cutover-dry-run.txt"
    if os.environ.get("STANDBY_UPDATE_GOLDEN"):  # after an intended change of the plan's wording
        golden.write_text(plan)
    assert plan == golden.read_text()


@pytest.mark.parametrize("scene", ["failover"], indirect=True)
def test_in_failover_mode_the_cutover_drives_the_alarm_and_leaves_records_alone(scene: Scene) -> None:
    before = _records(scene.manifest)

    result = _cutover(scene)

    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    alarm = boto3.client("cloudwatch").describe_alarms(AlarmNames=[scene.manifest.failover_alarm or ""])[
        "MetricAlarms"
    ][0]
    assert alarm["StateValue"] == "ALARM"  # Route 53's health check follows it: traffic goes to SECONDARY
    assert _records(scene.manifest) == before  # no control-plane change needed


def test_failback_brings_the_data_written_on_aws_back_to_heroku_and_restores_the_original_state(
    scene: Scene, tmp_path: Path
) -> None:
    assert _cutover(scene).returncode == 0  # type: ignore[attr-defined]
    import psycopg

    with psycopg.connect(scene.standby, autocommit=True) as conn:  # the app ran on AWS for a while
        conn.execute(
            "INSERT INTO actor (first_name, last_name) SELECT 'Aws', 'Era' FROM generate_series(1, 25)"
        )

    result = run_script(
        "failback.py", "--app", scene.manifest.app, "--yes", "--journal-dir", str(scene.journal),
        "--json", str(tmp_path / "failback.json"), env=scene.env,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    tables = ["public.actor", "public.rental", "public.payment"]
    assert count_tables(scene.source, tables) == count_tables(scene.standby, tables)
    assert count_tables(scene.source, ["public.actor"])["public.actor"] == 225
    app = scene.heroku.apps[scene.manifest.app]
    assert app.maintenance is False
    assert {t: p["quantity"] for t, p in app.formation.items()} == {"web": 3, "worker": 2}
    records = _records(scene.manifest)
    assert records["www"]["ResourceRecords"] == [{"Value": "www-1.herokudns.com"}]
    assert records["api"]["Type"] == "CNAME"
    assert (
        boto3.client("ssm").get_parameter(Name=mode_parameter(scene.manifest.app))["Parameter"]["Value"]
        == "warm"
    )
    report = json.loads((tmp_path / "failback.json").read_text())
    assert report["verified"] is True
    assert [s["name"] for s in report["steps"]] == [
        "preflight", "fence_standby", "dump_standby", "restore_heroku", "unfence_heroku", "switch_dns_back",
        "standby_base_mode"]  # fmt: skip


def test_failback_refuses_when_the_standby_is_not_active(scene: Scene) -> None:
    result = run_script(
        "failback.py",
        "--app",
        scene.manifest.app,
        "--yes",
        "--journal-dir",
        str(scene.journal),
        env=scene.env,
    )
    assert result.returncode == 3
    assert "the standby is warm, not active" in result.stderr
    assert scene.heroku.apps[scene.manifest.app].maintenance is False


class _NameServer:
    """A stand-in for the zone's name servers: answers from moto's Route 53, over real DNS packets."""

    def __init__(self, zone_id: str) -> None:
        import socket

        self.zone_id = zone_id
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        from standby import dns_query

        while True:
            try:
                query, client = self.sock.recvfrom(512)
            except OSError:
                return
            name, _ = dns_query._read_name(query, 12)
            self.queries.append(name)
            sets = boto3.client("route53").list_resource_record_sets(HostedZoneId=self.zone_id)[
                "ResourceRecordSets"
            ]
            match = next(
                (r for r in sets if r["Name"].rstrip(".") == name and r["Type"] in ("A", "CNAME")), None
            )
            records: list[tuple[int, str]] = []
            if match and match["Type"] == "CNAME":
                records = [(dns_query.CNAME, match["ResourceRecords"][0]["Value"])]
            elif match:
                records = [
                    (dns_query.A, "192.0.2.10")
                ]  # the load balancer's address, as Route 53 resolves the alias
            self.sock.sendto(dns_query.encode_answer(query, records), client)


def test_the_cutover_asks_the_zones_name_servers_after_the_switch(scene: Scene, tmp_path: Path) -> None:
    from dataclasses import replace

    from standby.names import manifest_parameter

    server = _NameServer(scene.manifest.hosted_zone_id or "")
    manifest = replace(scene.manifest, verify_name_servers=True, name_servers=(f"127.0.0.1:{server.port}",))
    boto3.client("ssm").put_parameter(
        Name=manifest_parameter(manifest.app), Value=manifest.to_json(), Type="String", Overwrite=True
    )

    result = _cutover(scene, "--json", str(tmp_path / "r.json"))

    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["facts"]["public_check"] == "1 name servers answer with AWS"
    assert set(server.queries) == {r["hostname"] for r in manifest.records}
