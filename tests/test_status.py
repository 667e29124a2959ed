"""scripts/status.py: each unhealthy situation, built in moto and the fake Heroku, costs its check's points
and sets the exit code; a ready standby reports every check ok and 100.

One ready standby per module (building one takes a backup, a second region, a restore-ahead and a drill):
each test breaks one thing, reads the status, and puts the thing back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from standby.aws import duties
from standby.backup_store import S3Store
from standby.commands import restore
from standby.commands import status as status_command
from standby.drill_history import DrillFigures, record_drill
from standby.heroku_api import HerokuClient
from standby.local.heroku_fake import FakeApp
from standby.local.postgres import LocalPostgres
from standby.local.standby_world import WorldSpec, build_standby_world, replicate_backups
from standby.names import READINESS_NAMESPACE
from standby.readiness.assess import assess
from standby.readiness.check import WEIGHTS
from standby.readiness.sources import Sources
from standby.runbook.journal import Journal, JournalStore
from standby.standby_manifest import load_manifest
from tests.aws_calls import ACCOUNT, record_calls, refused
from tests.runbook_scene import Scene, build_scene, run_in_process
from tests.servers import AWS_TEST_ENV, CHILD_ENV

# Every test here reads the one ready standby: on one xdist worker, it is built once.
pytestmark = pytest.mark.xdist_group("status")

COMMIT = "5f2c9e1a7b3d4c5e6f708192a3b4c5d6e7f80912"  # what Heroku runs, and what the image is tagged with
SECOND = "us-west-2"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ready(
    pg_server: LocalPostgres,
    pagila_template: str,
    moto_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scene]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in AWS_TEST_ENV.items():
            env.setenv(name, value)
        env.delenv("AWS_ENDPOINT_URL", raising=False)  # moto in-process; scripts get its server's endpoint
        scenes = build_scene(
            pg_server, pagila_template, env, tmp_path_factory.mktemp("status"),
            settings={"LOG_LEVEL": "info"},
            world={"second_region": SECOND, "image": f"registry.example/acme:{COMMIT[:12]}"},
        )  # fmt: skip
        scene = next(scenes)
        _make_ready(scene)
        yield scene
        next(scenes, None)


def _make_ready(scene: Scene) -> None:
    """Everything a ready standby has besides the scene's backup: its replica in the second region, the
    backup restored ahead, a recent drill, Heroku's domains and commit as the standby knows them, its
    tasks running and room on its database."""
    m = scene.manifest
    second = build_standby_world(
        WorldSpec(
            app=m.app, region=SECOND, database_url=scene.standby, zone=f"{m.app}.example",
            records={r["hostname"]: r["heroku_target"] for r in m.records}, formation={"web": 3, "worker": 2},
            load_balancer_dns="acme-standby-456.us-west-2.elb.amazonaws.com", hosted_zone_id=m.hosted_zone_id,
            mac_primary_keys=(str(m.backup_mac_key), str(m.runbook_mac_key)), second_region=m.region,
        )
    )  # fmt: skip
    replicate_backups(m.backup_bucket, second.backup_bucket, SECOND)
    assert restore.main(["--app", m.app, "--region", m.region, "--ahead", "--yes"]) == 0
    _record_drills(scene, restore_seconds=[2.0])
    app: FakeApp = scene.heroku.apps[m.app]
    app.domains = [r["hostname"] for r in m.records]
    app.dns_targets = {r["hostname"]: r["heroku_target"] for r in m.records}
    app.deploy("Deploy 5f2c9e1", commit=COMMIT)
    _run_task(scene)
    _free_storage(m.database_instance, 50e9, minutes_ago=10)


def _run_task(scene: Scene) -> None:
    """moto's ECS starts no task for a service; one task run by hand stands for the warm standby's (moto
    counts a cluster's tasks for each of its services)."""
    m = scene.manifest
    network = {"subnets": list(m.subnets), "securityGroups": [str(m.task_security_group)]}
    boto3.client("ecs").run_task(
        cluster=m.cluster, taskDefinition=f"{m.app}-web", launchType="FARGATE", startedBy="ecs-svc/1",
        networkConfiguration={"awsvpcConfiguration": network},
    )  # fmt: skip


def _record_drills(scene: Scene, restore_seconds: list[float]) -> list[str]:
    store, newest = S3Store(scene.manifest.backup_bucket), _newest_manifest(scene)
    keys = []
    for i, seconds in enumerate(restore_seconds):
        finished = datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=i)
        figures = DrillFigures(
            scene.app, f"{finished:%Y%m%dT%H%M%SZ}-{i:06x}", finished.isoformat(), newest["backup_id"],
            int(newest["size"]), seconds, seconds + 40.0, 60.0,
        )  # fmt: skip
        keys.append(record_drill(store, figures))
    return keys


def _newest_manifest(scene: Scene) -> dict[str, Any]:
    store = S3Store(scene.manifest.backup_bucket)
    names = sorted(k for k in store.list_keys(f"backups/{scene.app}/") if k.endswith("manifest.json"))
    return dict(store.get_json(names[-1]))


def _free_storage(instance: str | None, free: float, minutes_ago: int) -> None:
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/RDS",
        MetricData=[{"MetricName": "FreeStorageSpace", "Value": free, "Unit": "Bytes",
                     "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": str(instance)}],
                     "Timestamp": datetime.now(UTC) - timedelta(minutes=minutes_ago)}],
    )  # fmt: skip


def status(scene: Scene, tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    report = tmp_path / "status.json"
    argv = ["--app", scene.app, "--journal-dir", str(scene.journal), "--json", str(report), *extra]
    run = run_in_process(status_command.main, argv, scene.side())
    return run.code, json.loads(report.read_text()), run.output


def levels(doc: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["level"] for c in doc["checks"]}


def only(doc: dict[str, Any], check: str, level: str) -> None:
    """`check` is at `level`, every other check ok, and the score lost exactly that check's cost."""
    found = levels(doc)
    assert found[check] == level, doc
    assert {k: v for k, v in found.items() if k != check} == {k: "ok" for k in found if k != check}, doc
    weight = WEIGHTS[check]
    assert doc["score"] == 100 - (weight if level == "critical" else weight // 2)
    assert doc["costs"] == {check: 100 - doc["score"]}


def test_a_ready_standby_reports_every_check_ok_and_100(ready: Scene, tmp_path: Path) -> None:
    code, doc, output = status(ready, tmp_path, "--publish")
    assert (code, doc["score"], doc["level"]) == (0, 100, "ok"), output
    assert set(levels(doc)) == set(WEIGHTS) and set(levels(doc).values()) == {"ok"}
    assert 0 < doc["figures"]["rto_forecast_seconds"] < ready.manifest.rto_seconds
    assert "readiness 100/100" in output and "fix:" not in output
    metrics = boto3.client("cloudwatch").get_metric_statistics(
        Namespace=READINESS_NAMESPACE, MetricName="ReadinessScore",
        Dimensions=[{"Name": "App", "Value": ready.app}], StartTime=datetime.now(UTC) - timedelta(minutes=5),
        EndTime=datetime.now(UTC) + timedelta(minutes=1), Period=60, Statistics=["Maximum"],
    )  # fmt: skip
    assert [p["Maximum"] for p in metrics["Datapoints"]] == [100.0]


def test_a_backup_older_than_twice_the_rpo_is_critical(ready: Scene, tmp_path: Path) -> None:
    """The same standby, looked at an hour later (RPO 15 min): nothing else has aged past its bound."""
    later = datetime.now(UTC) + timedelta(hours=1)
    sources = Sources(ready.manifest, S3Store(ready.manifest.backup_bucket), ready.side()(ready.manifest),
                      HerokuClient.from_env, later)  # fmt: skip
    readiness = assess(sources, ready.journal)
    doc = readiness.to_json()
    only(doc, "backup-age", "critical")
    assert readiness.exit_code == 3
    assert (
        "a disaster now loses more than the RPO"
        in next(c for c in doc["checks"] if c["check"] == "backup-age")["summary"]
    )


def test_a_backup_missing_from_the_second_region_is_critical(ready: Scene, tmp_path: Path) -> None:
    replica = boto3.client("s3", region_name=SECOND)
    bucket = f"{ready.app}-backups-{SECOND}"
    newest = _newest_manifest(ready)
    replica.delete_object(Bucket=bucket, Key=newest["dump_key"])
    try:
        code, doc, _ = status(ready, tmp_path)
    finally:
        replicate_backups(ready.manifest.backup_bucket, bucket, SECOND)
    only(doc, "backup-replica", "critical")
    assert code == 3


def test_a_config_var_only_heroku_sets_is_critical_and_one_only_aws_gets_a_warning(
    ready: Scene, tmp_path: Path
) -> None:
    config = ready.heroku.apps[ready.app].config_vars
    config["FEATURE_PAYMENTS"] = "sk-live-value-not-for-logs"
    try:
        code, doc, output = status(ready, tmp_path)
    finally:
        del config["FEATURE_PAYMENTS"]
    only(doc, "config-vars", "critical")
    assert code == 3 and "FEATURE_PAYMENTS" in output
    assert "value-not-for-logs" not in output + json.dumps(doc)  # names only, never values

    del config["LOG_LEVEL"]
    try:
        code, doc, output = status(ready, tmp_path)
    finally:
        config["LOG_LEVEL"] = "info"
    only(doc, "config-vars", "warning")
    assert code == 1 and "LOG_LEVEL" in output


def test_heroku_upgraded_past_the_standby_major_version_is_critical(
    ready: Scene, tmp_path: Path, pg_server: LocalPostgres
) -> None:
    database = ready.heroku.apps[ready.app].database
    major = int(str(ready.manifest.postgres_version))
    database.version = f"{major + 1}.1"  # Heroku's forced upgrade
    try:
        code, doc, _ = status(ready, tmp_path)
    finally:
        database.version = None
    only(doc, "postgres-version", "critical")
    summary = next(c for c in doc["checks"] if c["check"] == "postgres-version")["summary"]
    assert f"older than Heroku's {major + 1}" in summary and "the next backups fail" in summary
    assert code == 3


def test_a_name_pointing_at_the_wrong_side_is_critical(ready: Scene, tmp_path: Path) -> None:
    route53 = boto3.client("route53")
    record = ready.manifest.records[0]

    def point(target: str) -> None:
        route53.change_resource_record_sets(
            HostedZoneId=ready.manifest.hosted_zone_id,
            ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
                "Name": record["hostname"], "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": target}]}}]},
        )  # fmt: skip

    point("elsewhere.herokudns.com")
    try:
        code, doc, output = status(ready, tmp_path)
    finally:
        point(record["heroku_target"])
    only(doc, "dns", "critical")
    assert code == 3 and record["hostname"] in output


def test_a_database_without_room_for_one_more_restore_is_critical(ready: Scene, tmp_path: Path) -> None:
    _free_storage(ready.manifest.database_instance, 1e6, minutes_ago=3)
    try:
        code, doc, output = status(ready, tmp_path)
    finally:
        _free_storage(ready.manifest.database_instance, 50e9, minutes_ago=2)
    only(doc, "database", "critical")
    assert code == 3 and "the next restore is refused" in output


def test_a_held_lock_is_a_warning_but_restore_ahead_holding_it_is_the_standby_at_work(
    ready: Scene, tmp_path: Path
) -> None:
    dynamodb, now = boto3.client("dynamodb"), int(datetime.now(UTC).timestamp())

    def held_by(runbook: str) -> tuple[int, dict[str, Any], str]:
        dynamodb.put_item(
            TableName=ready.manifest.lock_table,
            Item={"lock": {"S": ready.app}, "runbook": {"S": runbook}, "who": {"S": "ops@laptop"},
                  "acquired_at": {"N": str(now - 60)}, "expires_at": {"N": str(now + 300)}},
        )  # fmt: skip
        try:
            return status(ready, tmp_path)
        finally:
            dynamodb.delete_item(TableName=ready.manifest.lock_table, Key={"lock": {"S": ready.app}})

    code, doc, output = held_by("drill")
    only(doc, "runbooks", "warning")
    assert code == 1 and "drill of ops@laptop holds the lock" in output
    code, doc, output = held_by("restore")  # the status task runs after each backup, beside restore-ahead
    assert (code, doc["score"]) == (0, 100) and "a restore is under way" in output


def test_an_unfinished_cutover_is_critical(ready: Scene, tmp_path: Path) -> None:
    store = S3Store(ready.manifest.backup_bucket)
    journal = Journal.new(ready.app, "cutover", "20261203T101500Z-abc123")
    journal.start("preflight", 1.0)
    journal.end("preflight", 2.0, "done", "", {})
    journal.start("fence_primary", 2.0)
    JournalStore(tmp_path / "elsewhere", store).save(journal)  # the bucket's copy: another operator's run
    try:
        code, doc, output = status(ready, tmp_path)
    finally:
        boto3.client("s3").delete_object(
            Bucket=store.bucket, Key=f"runbooks/{ready.app}/cutover/current.json"
        )
    only(doc, "runbooks", "critical")
    assert code == 3 and "cutover run 20261203T101500Z-abc123 stopped after 2 steps" in output


def test_a_standby_never_drilled_is_critical(ready: Scene, tmp_path: Path) -> None:
    s3, bucket = boto3.client("s3"), ready.manifest.backup_bucket
    drills = S3Store(bucket).list_keys(f"drills/{ready.app}/")
    saved = {k: S3Store(bucket).get_json(k) for k in drills}
    for name in drills:
        s3.delete_object(Bucket=bucket, Key=name)
    try:
        code, doc, output = status(ready, tmp_path)
    finally:
        for name, doc_ in saved.items():
            S3Store(bucket).put_json(name, doc_)
    only(doc, "drill", "critical")
    assert code == 3 and "never drilled" in output


def test_a_forecast_above_the_rto_is_critical(ready: Scene, tmp_path: Path) -> None:
    """Two drills that restored at a crawl make the median throughput theirs: the forecast follows."""
    slow = _record_drills(ready, restore_seconds=[5000.0, 6000.0])
    try:
        code, doc, output = status(ready, tmp_path)
    finally:
        for name in slow:
            boto3.client("s3").delete_object(Bucket=ready.manifest.backup_bucket, Key=name)
    only(doc, "rto-forecast", "critical")
    assert doc["figures"]["rto_forecast_seconds"] > ready.manifest.rto_seconds
    assert code == 3 and "(drills)" in output


def test_an_unreachable_heroku_leaves_its_checks_unchecked_as_warnings(
    ready: Scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEROKU_API_KEY", "a-wrong-token-not-for-logs")
    code, doc, output = status(ready, tmp_path)
    unchecked = {k for k, v in levels(doc).items() if v != "ok"}
    assert unchecked == {"formation", "config-vars", "image", "domains", "postgres-version"}
    assert set(levels(doc).values()) == {"ok", "warning"} and code == 1
    assert "a-wrong-token-not-for-logs" not in output + json.dumps(doc) and "not checked" in output


def test_heroku_scaled_past_what_the_standby_was_built_for_is_a_warning(ready: Scene, tmp_path: Path) -> None:
    formation = ready.heroku.apps[ready.app].formation
    formation["web"]["quantity"] = 5
    try:
        code, doc, output = status(ready, tmp_path)
    finally:
        formation["web"]["quantity"] = 3
    only(doc, "formation", "warning")
    assert code == 1 and "web: Heroku 5 Standard-2X, standby built for 3 Standard-2X" in output


def test_a_deploy_the_standby_image_does_not_hold_is_a_warning(ready: Scene, tmp_path: Path) -> None:
    app = ready.heroku.apps[ready.app]
    app.deploy("Deploy 9a8b7c6", commit="9a8b7c6d5e4f30211f2e3d4c5b6a79881726354a")
    try:
        code, doc, output = status(ready, tmp_path)
    finally:
        app.deploy("Deploy 5f2c9e1 again", commit=COMMIT)
    only(doc, "image", "warning")
    assert code == 1 and "Heroku runs commit 9a8b7c6d5e4f" in output and "serves older code" in output


def test_a_service_with_no_running_task_is_critical(ready: Scene, tmp_path: Path) -> None:
    ecs, cluster = boto3.client("ecs"), ready.manifest.cluster
    tasks = ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"]
    for task in tasks:
        ecs.stop_task(cluster=cluster, task=task)
    try:
        code, doc, output = status(ready, tmp_path)
    finally:
        _run_task(ready)
    only(doc, "services", "critical")
    assert code == 3 and "web 0 of 1" in output


def test_an_overdue_drill_is_a_warning_and_broken_or_future_drill_records_count_for_nothing(
    ready: Scene, tmp_path: Path
) -> None:
    s3, store = boto3.client("s3"), S3Store(ready.manifest.backup_bucket)
    drills = store.list_keys(f"drills/{ready.app}/")
    saved = {k: store.get_json(k) for k in drills}
    for name in drills:
        s3.delete_object(Bucket=store.bucket, Key=name)
    old = datetime.now(UTC) - timedelta(days=40)
    ahead = datetime.now(UTC) + timedelta(days=400)
    size = int(_newest_manifest(ready)["size"])
    written = [
        record_drill(store, DrillFigures(ready.app, f"{at:%Y%m%dT%H%M%SZ}-{i}", at.isoformat(), "b", size, 2.0, 42.0, 0.0))
        for i, at in enumerate((old, ahead))
    ]  # fmt: skip
    store.put_json(
        f"drills/{ready.app}/20261201T000000Z-broken.json", {"run_id": "x", "restore_seconds": None}
    )
    written.append(f"drills/{ready.app}/20261201T000000Z-broken.json")
    try:
        code, doc, output = status(ready, tmp_path)
    finally:
        for name in written:
            s3.delete_object(Bucket=store.bucket, Key=name)
        for name, document in saved.items():
            store.put_json(name, document)
    only(doc, "drill", "warning")
    assert code == 1 and "finished 40 d 0 h ago" in output and "drills are due every 30 days" in output


@pytest.mark.slow
def test_status_py_runs_as_a_script_with_its_exit_code_and_json(ready: Scene, tmp_path: Path) -> None:
    report = tmp_path / "status.json"
    env = {**os.environ, **CHILD_ENV, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "status.py"), "--app", ready.app, "--json", str(report),
         "--journal-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    # As a script it sees the standby through AwsStandby: moto calls every registered target healthy.
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(report.read_text())["score"] == 100


def test_the_readiness_reader_allows_every_call_of_a_published_status_run(
    ready: Scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status task's policy (standby.aws.duties), evaluated against every AWS call a run makes."""
    m = ready.manifest
    replica = load_manifest(m.app, SECOND).backup_bucket
    reader = duties.readiness_reader(m, ACCOUNT, f"arn:aws:kms:{m.region}:{ACCOUNT}:key/bucket", replica)
    with record_calls(monkeypatch) as calls:
        code, _, _ = status(ready, tmp_path, "--publish")
    assert code == 0
    assert refused(reader, calls) == []
    # It published, verified the manifests' MACs and listed the replica: the duty covers those too.
    assert {"cloudwatch:PutMetricData", "kms:VerifyMac"} <= {c.action for c in calls}
    assert any(c.resource == f"arn:aws:s3:::{replica}" for c in calls)


def test_heroku_recorded_fenced_while_it_is_the_live_side_is_critical(ready: Scene, tmp_path: Path) -> None:
    """A cutover that fenced Heroku and was then abandoned (its journal restarted away): the app is down."""
    ssm, name = boto3.client("ssm"), f"/standby/{ready.app}/heroku-fenced"
    ssm.put_parameter(Name=name, Value="cutover 20261203T101500Z-abc123", Type="String", Overwrite=True)
    try:
        code, doc, output = status(ready, tmp_path)
    finally:
        ssm.delete_parameter(Name=name)
    only(doc, "runbooks", "critical")
    assert (
        code == 3
        and "Heroku is the live side but is recorded fenced (cutover 20261203T101500Z-abc123)" in output
    )
