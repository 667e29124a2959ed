"""The cutover and the failback, end to end on loopback (tests/runbook_scene.py): real PostgreSQL, moto's
server holding the standby as `pulumi up` leaves it, the fake Heroku API and a stand-in web app. The
runbooks run in-process; one test per script runs it as a subprocess, as an operator does, with the
production standby side."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from standby.backup_store import S3Store
from standby.commands import cutover, failback
from standby.config.models import DnsMode, Mode
from standby.integrity import KmsMac
from standby.loader_role import leftover_roles
from standby.local.name_server import LocalNameServer
from standby.names import heroku_fence_parameter
from standby.pg_url import parse_database_url
from standby.primary_side import HerokuSide
from standby.runbook.journal import Journal, JournalStore
from standby.runbook.lock import DynamoDbLock, Holder
from standby.standby_side import AwsStandby
from tests.aws_calls import operator_refusals, record_calls
from tests.conftest import SAMPLE_RENTALS
from tests.runbook_scene import LB, TOKEN, Scene
from tests.servers import ROOT, count_tables, run_script

STEPS = ["preflight", "assess_primary", "fence_primary", "fence_database", "final_backup", "restore",
         "verify_data", "scale_standby", "wait_healthy", "switch_dns", "verify_public"]  # fmt: skip
TABLES = ["public.rental", "public.payment", "public.customer", "public.film"]


def _fenced(scene: Scene) -> bool:
    app = scene.heroku.apps[scene.app]
    return app.maintenance and all(p["quantity"] == 0 for p in app.formation.values())


@pytest.mark.slow
def test_the_cutover_script_fences_heroku_restores_everything_and_moves_dns(
    scene: Scene, tmp_path: Path
) -> None:
    """The command-line contract, with the production standby side: the web service's health is read from
    the load balancer's target group (moto lists the warm web task as healthy)."""
    result = run_script(
        "cutover.py", "--app", scene.app, "--yes", "--journal-dir", str(scene.journal),
        "--json", str(tmp_path / "report.json"), env=dict(os.environ),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert _fenced(scene)
    assert count_tables(scene.standby, TABLES) == count_tables(scene.source, TABLES)
    assert scene.mode() == "active"
    services = boto3.client("ecs").describe_services(
        cluster=scene.manifest.cluster, services=list(scene.manifest.services.values())
    )
    assert {s["serviceName"]: s["desiredCount"] for s in services["services"]} == {
        f"{scene.app}-web": 3, f"{scene.app}-worker": 2}  # fmt: skip
    records = scene.records()
    assert records["www"]["AliasTarget"]["DNSName"].rstrip(".") == LB
    assert records["api"]["Type"] == "A"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verified"] is True and report["rto_seconds"] > 0
    assert 0 <= report["rpo_seconds"] < 5  # graceful: the final backup was taken after fencing
    assert [s["name"] for s in report["steps"]] == STEPS
    assert all(s["outcome"] in ("done", "already done") for s in report["steps"])
    # moto's name servers are names only: the report says the public check was not made, and why.
    assert report["facts"]["public_check"].startswith("not asked: cannot resolve the zone's name servers")
    journal_text = "".join(p.read_text() for p in scene.journal.glob("*"))
    for secret in (TOKEN, scene.standby, "testing"):
        assert secret not in result.stdout + result.stderr and secret not in journal_text


@pytest.mark.parametrize("scene", [(DnsMode.RECORD, Mode.PILOT_LIGHT)], indirect=True)
def test_a_web_service_that_never_turns_healthy_stops_the_cutover_before_dns(scene: Scene) -> None:
    # Pilot light: no web task runs, so no target is registered. moto starts no task for the scaled
    # services, so the production check (the load balancer's target health) never sees a healthy one.
    before = scene.records()

    run = scene.run(cutover.main, "--health-timeout", "1", side=AwsStandby)

    assert run.code == 3, run.output
    assert "step wait_healthy failed: the standby's web service is not healthy after 1 s" in run.output
    assert scene.records() == before


def test_the_stand_in_web_app_decides_health_through_the_target_group(scene: Scene) -> None:
    scene.web.healthy = False
    before = scene.records()

    run = scene.run(cutover.main, "--health-timeout", "1")

    assert run.code == 3 and "step wait_healthy failed" in run.output
    assert scene.records() == before
    scene.web.healthy = True
    assert scene.run(cutover.main, "--resume").code == 0
    assert scene.records()["www"]["Type"] == "A"


def test_heroku_unreachable_without_the_flag_stops_before_any_change(scene: Scene) -> None:
    scene.heroku.stop()
    before = scene.records()

    run = scene.run(cutover.main)

    assert run.code == 3, run.output
    assert "--primary-unreachable" in run.output
    assert scene.records() == before
    assert scene.mode() == "warm"


def test_heroku_down_with_the_flag_cuts_over_from_the_newest_backup(scene: Scene, tmp_path: Path) -> None:
    scene.heroku.stop()

    run = scene.run(cutover.main, "--primary-unreachable", "--json", str(tmp_path / "r.json"))

    assert run.code == 0, run.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verified"] is True
    assert {s["name"]: s["outcome"] for s in report["steps"]}["fence_primary"] == "already done"
    assert report["rpo_seconds"] > 0  # measured: the age of the newest backup when the cutover began


def test_a_second_cutover_while_one_runs_is_refused_and_touches_nothing(scene: Scene) -> None:
    DynamoDbLock(scene.manifest.lock_table, scene.app).acquire(Holder("failback", "alice@laptop", "a1"))

    run = scene.run(cutover.main, "--owner", "bob@desk")

    assert run.code == 3
    assert "locked by failback of alice@laptop" in run.output
    assert scene.heroku.apps[scene.app].maintenance is False


def test_dry_run_prints_the_plan_matching_the_golden_one_and_changes_nothing(scene: Scene) -> None:
    run = scene.run(cutover.main, "--dry-run")

    assert run.code == 0
    assert scene.heroku.apps[scene.app].maintenance is False
    assert [r.method for r in scene.heroku.requests] == []
    plan = run.output.replace(scene.app, "APP").replace(scene.manifest.backup_bucket, "BUCKET")
    plan = re.sub(r"\d+ s for", "N s for", plan)
    golden = ROOT / "tests" / "golden" / "cutover-dry-run.txt"
    if os.environ.get("STANDBY_UPDATE_GOLDEN"):  # after an intended change of the plan's wording
        golden.write_text(plan)
    assert plan == golden.read_text()


class Crash(BaseException):
    """The operator's laptop dies here: nothing after this line of the process runs."""


def _crash_when(monkeypatch: pytest.MonkeyPatch, crashed: Callable[[Journal], bool]) -> None:
    """Kill the run right after the journal write that makes `crashed` true; a dead process releases no lock."""
    save = JournalStore.save

    def save_then_crash(self: JournalStore, journal: Journal) -> None:
        save(self, journal)
        if crashed(journal):
            raise Crash

    monkeypatch.setattr(JournalStore, "save", save_then_crash)
    monkeypatch.setattr(DynamoDbLock, "delete", lambda self, holder: None)


def _finished(step: str) -> Callable[[Journal], bool]:
    def crashed(journal: Journal) -> bool:
        record = journal.record(step)
        return record is not None and record.outcome in ("done", "already done")

    return crashed


def _crash_during_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    """Die with the data loaded into the new database and nothing switched; a dead process drops nothing."""
    import standby.restore

    def crash(*args: object) -> None:
        raise Crash

    monkeypatch.setattr(standby.restore, "_verify_and_analyze", crash)
    monkeypatch.setattr(standby.restore, "drop_database", lambda server, name: None)
    monkeypatch.setattr(DynamoDbLock, "delete", lambda self, holder: None)


def _crash_during_dns_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Die after Route 53 took the change batch, before its INSYNC was seen."""
    from standby import dns_switch

    monkeypatch.setattr(dns_switch, "INSYNC_TIMEOUT", -1.0)
    real = dns_switch.DnsSwitch.move

    def move_then_crash(self: dns_switch.DnsSwitch, on_standby: bool, reason: str) -> str | None:
        real(self, on_standby, reason)
        raise Crash

    monkeypatch.setattr(dns_switch.DnsSwitch, "move", move_then_crash)
    monkeypatch.setattr(DynamoDbLock, "delete", lambda self, holder: None)


CRASH_POINTS = [f"after {step}" for step in STEPS[:-1]] + ["during restore", "during switch_dns"]


@pytest.mark.slow
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_cutover_killed_at_any_point_resumes_to_the_same_end_state(
    scene: Scene, point: str, monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, object], None]
) -> None:
    with monkeypatch.context() as crash:
        if point == "during restore":
            _crash_during_restore(crash)
        elif point == "during switch_dns":
            _crash_during_dns_switch(crash)
        else:
            _crash_when(crash, _finished(point.removeprefix("after ")))
        with pytest.raises(Crash):
            scene.run(cutover.main, "--owner", "ops")

    # The dead run's lease has not run out: the operator who knows it died takes the lock over.
    run = scene.run(cutover.main, "--owner", "ops", "--resume", "--take-over")

    assert run.code == 0, run.output
    assert _fenced(scene)
    assert count_tables(scene.standby, TABLES) == count_tables(scene.source, TABLES)
    assert scene.records()["www"]["Type"] == "A"
    journal = json.loads((scene.journal / f"{scene.app}-cutover.json").read_text())
    assert journal["finished"] is True and journal["facts"]["verified"] is True
    # No side effect twice: one final backup at most, one fencing of the formation, the DNS moved once.
    keys = S3Store(scene.manifest.backup_bucket).list_keys("backups/")
    assert len([k for k in keys if k.endswith("manifest.json")]) <= 2
    scale_calls = [r for r in scene.heroku.requests if r.method == "PATCH" and r.path.endswith("/formation")]
    assert len(scale_calls) == 1
    assert leftover_roles(parse_database_url(scene.standby)) == []  # a dead restore's loader role is gone
    record_property("crash_point", point)  # summed up at the end of the session (conftest)


def test_a_failed_data_verification_leaves_dns_and_the_mode_untouched(scene: Scene) -> None:
    # The newest backup's manifest disagrees with its dump: the restore's row check must refuse it.
    store = S3Store(scene.manifest.backup_bucket)
    key = next(k for k in store.list_keys("backups/") if k.endswith("manifest.json"))
    doc = store.get_json(key)
    doc["tables"]["public.rental"] += 1
    # Signed: the writer itself got it wrong (a forged one is refused before, by its MAC).
    store.put_json(key, KmsMac(scene.manifest.backup_mac_key or "", scene.manifest.region).sign(doc))
    scene.heroku.apps[scene.app].config_vars.pop("DATABASE_URL")  # no final backup to fall back on
    before = scene.records()

    run = scene.run(cutover.main)

    assert run.code == 3, run.output
    rentals = SAMPLE_RENTALS
    assert (
        "step restore failed" in run.output
        and f"public.rental: {rentals} instead of {rentals + 1}" in run.output
    )
    assert scene.records() == before


def test_heroku_429_and_503_answers_are_retried(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEROKU_API_ATTEMPTS", "4")
    scene.heroku.fail_next(1, 429)
    scene.heroku.fail_next(1, 503)

    run = scene.run(cutover.main)

    assert run.code == 0, run.output
    assert scene.heroku.apps[scene.app].maintenance is True


def test_a_notice_that_cannot_be_sent_neither_stops_the_cutover_nor_hides_a_failure(scene: Scene) -> None:
    boto3.client("sns").delete_topic(TopicArn=scene.manifest.topic_arn)
    scene.heroku.stop()

    refused = scene.run(cutover.main)
    assert refused.code == 3 and "--primary-unreachable" in refused.output  # the step's own error
    assert "warning: notice 'cutover failed' not sent" in refused.output

    done = scene.run(cutover.main, "--restart", "--primary-unreachable")
    assert done.code == 0, done.output
    assert "warning: notice 'cutover finished' not sent" in done.output


@pytest.mark.parametrize("scene", [(DnsMode.FAILOVER, Mode.WARM)], indirect=True)
def test_in_failover_mode_the_cutover_drives_the_alarm_and_leaves_records_alone(scene: Scene) -> None:
    before = scene.records()

    run = scene.run(cutover.main)

    assert run.code == 0, run.output
    alarm = boto3.client("cloudwatch").describe_alarms(AlarmNames=[scene.manifest.failover_alarm or ""])
    assert alarm["MetricAlarms"][0]["StateValue"] == "ALARM"  # Route 53's health check follows it
    assert scene.records() == before  # no control-plane change needed


def test_failback_brings_the_data_written_on_aws_back_to_heroku_and_restores_the_original_state(
    scene: Scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with record_calls(monkeypatch) as calls:
        assert scene.run(cutover.main).code == 0
        _the_journal_is_signed_with_the_runbook_key(scene)
        with _as_the_app(scene) as conn:  # the app ran on AWS for a while, as its own role
            conn.execute(
                "INSERT INTO actor (first_name, last_name) SELECT 'Aws', 'Era' FROM generate_series(1, 25)"
            )

        run = scene.run(failback.main, "--json", str(tmp_path / "failback.json"))

    assert run.code == 0, run.output
    assert operator_refusals(scene.manifest, calls) == []  # the operator role may do all it took
    tables = ["public.actor", "public.rental", "public.payment"]
    assert count_tables(scene.source, tables) == count_tables(scene.standby, tables)
    assert count_tables(scene.source, ["public.actor"])["public.actor"] == 225
    app = scene.heroku.apps[scene.app]
    assert app.maintenance is False
    assert {t: p["quantity"] for t, p in app.formation.items()} == {"web": 3, "worker": 2}
    records = scene.records()
    assert records["www"]["ResourceRecords"] == [{"Value": "www-1.herokudns.com"}]
    assert records["api"]["Type"] == "CNAME"
    assert scene.mode() == "warm"
    report = json.loads((tmp_path / "failback.json").read_text())
    assert report["verified"] is True
    assert [s["name"] for s in report["steps"]] == [
        "preflight", "fence_standby", "dump_standby", "capture_heroku", "unfence_database", "restore_heroku",
        "hand_back", "unfence_heroku", "switch_dns_back", "standby_base_mode"]  # fmt: skip
    with psycopg.connect(scene.source, autocommit=True) as conn:  # the database fence is undone
        conn.execute("INSERT INTO actor (first_name, last_name) VALUES ('Back', 'Home')")
    assert boto3.client("ssm").get_parameters(Names=[heroku_fence_parameter(scene.app)])["Parameters"] == []
    # Heroku's own database was kept first, as Heroku keeps backups: the way back from a bad failback.
    kept = report["facts"]["heroku_backup"]
    assert scene.heroku.backups[kept].startswith(b"PGDMP")
    posts = [r for r in scene.heroku.requests if r.method == "POST" and r.path.startswith("/client/")]
    assert [r.path.rsplit("/", 1)[-1] for r in posts] == ["backups", "restores"]
    # SigV4 (SSE-KMS objects refuse SigV2), and short-lived: Heroku starts its download at once.
    url = posts[1].body["backup_url"]
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "X-Amz-Expires=900" in url


def test_a_cutover_run_again_after_it_finished_is_refused_before_touching_anything(scene: Scene) -> None:
    """A fresh run (no --resume) would take a "final backup" of the fenced Heroku and restore it over the
    live database."""
    assert scene.run(cutover.main).code == 0
    with psycopg.connect(scene.standby, autocommit=True) as conn:
        conn.execute("INSERT INTO actor (first_name, last_name) VALUES ('Aws', 'Era')")

    run = scene.run(cutover.main)

    assert run.code == 3, run.output
    assert "step preflight failed: the standby in us-east-2 is live already" in run.output
    assert count_tables(scene.standby, ["public.actor"]) == {"public.actor": 201}


def test_after_the_fence_the_apps_own_credential_cannot_write_to_herokus_database(scene: Scene) -> None:
    session = psycopg.connect(scene.source, autocommit=True)  # a console someone left open

    run = scene.run(cutover.main)

    assert run.code == 0, run.output
    assert "open session(s) ended" in run.output
    with pytest.raises(psycopg.OperationalError):
        session.execute("INSERT INTO actor (first_name, last_name) VALUES ('Late', 'Write')")
    with (
        psycopg.connect(scene.source, autocommit=True) as conn,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        conn.execute("INSERT INTO actor (first_name, last_name) VALUES ('Late', 'Write')")
    session.close()


def test_the_cutover_records_heroku_fenced_before_it_fences(scene: Scene) -> None:
    """The restore runs before the live mode turns active: meanwhile `pulumi up -s primary` must see it."""
    seen: list[bool] = []
    real = HerokuSide.fence

    def fence(self: HerokuSide) -> None:
        seen.append(
            bool(boto3.client("ssm").get_parameters(Names=[heroku_fence_parameter(scene.app)])["Parameters"])
        )
        real(self)

    HerokuSide.fence = fence  # type: ignore[method-assign]
    try:
        assert scene.run(cutover.main).code == 0
    finally:
        HerokuSide.fence = real  # type: ignore[method-assign]
    assert seen == [True]


def test_failback_refuses_to_restore_over_a_heroku_that_is_not_fenced(scene: Scene) -> None:
    assert scene.run(cutover.main).code == 0
    scene.heroku.apps[scene.app].maintenance = False  # someone turned maintenance off by hand
    before = count_tables(scene.source, ["public.actor"])
    with psycopg.connect(scene.standby, autocommit=True) as conn:
        conn.execute("INSERT INTO actor (first_name, last_name) VALUES ('Aws', 'Era')")

    run = scene.run(failback.main)

    assert run.code == 3, run.output
    assert "step unfence_database failed: Heroku is not fenced" in run.output
    assert count_tables(scene.source, ["public.actor"]) == before  # Heroku's data untouched
    assert not [r for r in scene.heroku.requests if r.path.endswith("/restores")]


def test_failback_waits_for_the_standby_tasks_to_stop_and_refuses_while_one_runs(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task still running after the scale to zero (draining, stopping) can write: the fence waits for it.
    moto starts no task for a service, so one is started by hand, as a service's would be."""
    from standby.runbooks import failback as failback_runbook

    assert scene.run(cutover.main).code == 0
    monkeypatch.setattr(failback_runbook, "DRAIN_TIMEOUT", 1.0)
    monkeypatch.setattr(failback_runbook, "POLL_SECONDS", 0.2)
    ecs = boto3.client("ecs")
    manifest = scene.manifest
    task = ecs.run_task(
        cluster=manifest.cluster, taskDefinition=manifest.services["web"], launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": list(manifest.subnets),
                                                      "securityGroups": [manifest.task_security_group]}},
    )["tasks"][0]  # fmt: skip

    run = scene.run(failback.main)

    assert run.code == 3, run.output
    assert "step fence_standby failed: standby tasks still run 1 s after scaling to zero" in run.output
    assert not [r for r in scene.heroku.requests if r.path.endswith(("/restores", "/backups"))]
    ecs.stop_task(cluster=manifest.cluster, task=task["taskArn"])
    assert scene.run(failback.main, "--resume").code == 0  # stopped: the failback goes on


@pytest.mark.slow
def test_the_failback_script_refuses_when_the_standby_is_not_active(scene: Scene) -> None:
    result = run_script(
        "failback.py", "--app", scene.app, "--yes", "--journal-dir", str(scene.journal), env=dict(os.environ)
    )
    assert result.returncode == 3
    assert "the standby is warm, not active" in result.stderr
    assert scene.heroku.apps[scene.app].maintenance is False


def test_the_cutover_asks_the_zones_name_servers_after_the_switch(scene: Scene, tmp_path: Path) -> None:
    server = LocalNameServer(scene.manifest.hosted_zone_id or "")
    scene.name_servers = [("127.0.0.1", server.port)]

    run = scene.run(cutover.main, "--json", str(tmp_path / "r.json"))

    assert run.code == 0, run.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["facts"]["public_check"] == "1 name servers answer with AWS"
    assert set(server.queries) == {r["hostname"] for r in scene.manifest.records}


def test_a_restore_that_cannot_fit_on_the_standby_is_refused_with_the_numbers(scene: Scene) -> None:
    """A full disk would stop the database in use too: the restore refuses before it starts."""
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/RDS",
        MetricData=[{"MetricName": "FreeStorageSpace", "Value": 1_000_000.0, "Unit": "Bytes",
                     "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": f"{scene.app}-standby"}]}],
    )  # fmt: skip
    before = scene.records()

    run = scene.run(cutover.main)

    assert run.code == 3, run.output
    assert "step restore failed" in run.output
    assert re.search(r"needs about \d+\.\d\d GB on the target server .* and 0\.00 GB are free", run.output)
    assert scene.records() == before and scene.mode() == "warm"


def _writer(url: str, who: str) -> Callable[[threading.Event], None]:
    """What a one-off dyno does in the harsh case: it keeps writing until its process is stopped."""

    def work(stopping: threading.Event) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stopping.wait(0.02):
                conn.execute("INSERT INTO actor (first_name, last_name) VALUES (%s, 'Dyno')", [who])

    return work


def test_the_fence_stops_one_off_and_scheduler_dynos_that_write_through_maintenance_mode(
    scene: Scene, tmp_path: Path
) -> None:
    app = scene.heroku.apps[scene.app]
    console = app.run_one_off("run", "rails console", _writer(scene.source, "console"))
    job = app.run_one_off("scheduler", "rake reports:nightly", _writer(scene.source, "scheduler"))

    run = scene.run(cutover.main, "--json", str(tmp_path / "r.json"))

    assert run.code == 0, run.output
    assert console.stopping.is_set() and job.stopping.is_set()
    assert app.dynos == {}  # nothing runs on Heroku
    written = count_tables(scene.source, ["public.actor"])
    assert written["public.actor"] > 200  # they did write before the fence
    # The final backup holds every row written before the fence, and nothing is written after it.
    assert count_tables(scene.standby, ["public.actor"]) == written
    time.sleep(0.2)
    assert count_tables(scene.source, ["public.actor"]) == written
    stops = [r.path.split("/")[-3] for r in scene.heroku.requests if r.path.endswith("/actions/stop")]
    assert sorted(stops) == sorted([console.name, job.name])


def test_a_dyno_that_will_not_stop_is_named_and_nothing_goes_on(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    from standby import primary_side

    monkeypatch.setattr(primary_side, "FENCE_TIMEOUT", 0.5)
    monkeypatch.setattr(primary_side, "DYNO_POLL", 0.1)
    app = scene.heroku.apps[scene.app]
    stuck = app.run_one_off("run", "bash")

    class Sticky(dict):  # type: ignore[type-arg]
        """Heroku's stop does not take for this one dyno: it stays in the list, running."""

        def pop(self, key: str, *default: object) -> object:
            return self[key] if key == stuck.name else super().pop(key, *default)

    app.dynos = Sticky(app.dynos)
    before = scene.records()

    run = scene.run(cutover.main)

    assert run.code == 3, run.output
    assert f"step fence_primary failed: Heroku still runs {stuck.name} after the fence" in run.output
    assert scene.records() == before and scene.mode() == "warm"


def test_with_herokus_api_dark_but_its_database_up_the_cutover_fences_the_database_and_goes_on(
    scene: Scene, tmp_path: Path
) -> None:
    """June 2025: the API, the dashboard and the status page dark for hours; the databases answered."""
    AwsStandby(scene.manifest).remember_primary_database_url(scene.source)  # as every backup does
    scene.heroku.stop()

    run = scene.run(cutover.main, "--json", str(tmp_path / "r.json"))  # no --primary-unreachable

    assert run.code == 0, run.output
    assert "Heroku's API does not answer, but its database does" in run.output
    report = json.loads((tmp_path / "r.json").read_text())
    outcomes = {s["name"]: s["outcome"] for s in report["steps"]}
    assert outcomes["fence_primary"] == "already done"  # nothing to do through a dark API
    assert outcomes["fence_database"] == "done" and report["facts"]["final_backup"]
    assert report["rpo_seconds"] < 5  # the final backup, taken after the database fence
    with (
        psycopg.connect(scene.source, autocommit=True) as conn,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        conn.execute("INSERT INTO actor (first_name, last_name) VALUES ('Late', 'Write')")
    assert count_tables(scene.standby, ["public.actor"]) == count_tables(scene.source, ["public.actor"])


def test_a_refused_cutover_resumed_is_refused_again(scene: Scene) -> None:
    """The refusal must not leave a fact behind that lets --resume skip the check (and the fence)."""
    scene.heroku.stop()

    assert scene.run(cutover.main).code == 3
    again = scene.run(cutover.main, "--resume")

    assert again.code == 3, again.output
    assert "step assess_primary failed" in again.output and "--primary-unreachable" in again.output
    assert scene.mode() == "warm"


def test_with_the_api_dark_a_database_that_stops_answering_at_the_fence_is_refused_not_skipped(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    from standby import database_fence

    AwsStandby(scene.manifest).remember_primary_database_url(scene.source)
    scene.heroku.stop()

    def too_many_connections(database: object) -> int:
        raise psycopg.OperationalError("FATAL: too many connections for role")

    monkeypatch.setattr(database_fence, "fence_database", too_many_connections)
    run = scene.run(cutover.main)

    assert run.code == 3, run.output
    assert (
        "step fence_database failed: Heroku's database answered a moment ago but not the fence" in run.output
    )
    assert scene.mode() == "warm"


def test_failback_stops_a_scheduler_job_that_started_after_the_cutover(scene: Scene) -> None:
    """Maintenance mode does not stop Heroku Scheduler: a job started since may write during the restore."""
    assert scene.run(cutover.main).code == 0
    job = scene.heroku.apps[scene.app].run_one_off("scheduler", "rake reports:nightly")

    run = scene.run(failback.main)

    assert run.code == 0, run.output
    assert job.stopping.is_set() and job.name not in scene.heroku.apps[scene.app].dynos


def _journal_claiming_the_fence_done(scene: Scene) -> dict[str, object]:
    """What someone with the bucket's rights would plant so that a --resume skips the fence."""
    now = time.time()
    journal = Journal.new(scene.app, "cutover", "20261201T000000Z-f0f0f0")
    for step in STEPS[:4]:
        journal.start(step, now)
        journal.end(step, now, "done", "", {"fenced": True})
    return journal.to_json()


def test_a_forged_journal_is_refused_and_nothing_is_done(scene: Scene) -> None:
    key = f"runbooks/{scene.app}/cutover/current.json"
    store = S3Store(scene.manifest.backup_bucket)
    unsigned = _journal_claiming_the_fence_done(scene)
    altered = KmsMac(str(scene.manifest.runbook_mac_key), scene.manifest.region).sign(unsigned)
    altered["steps"][3]["detail"] = "altered"  # type: ignore[index]
    forgeries = {
        "unsigned": unsigned,
        # The key a compromised backup task holds signs backups, not journals.
        "signed with the backup key": KmsMac(str(scene.manifest.backup_mac_key), scene.manifest.region).sign(
            unsigned
        ),
        "signed, then altered": altered,
    }
    for how, document in forgeries.items():
        store.put_json(key, document)

        run = scene.run(cutover.main, "--resume")

        assert run.code == 3, (how, run.output)
        assert (
            f"the runbook journal s3://{scene.manifest.backup_bucket}/{key} cannot be trusted" in run.output
        )
        assert "MAC" in run.output
        assert not _fenced(scene) and scene.mode() == "warm"
        assert not [r for r in scene.heroku.requests if r.method != "GET"], how


def _as_the_app(scene: Scene) -> psycopg.Connection[tuple[object, ...]]:
    """A connection as the app's tasks make it (the app's URL secret), after checking what that role is:
    the owner of the restored data, and nothing more."""
    url = AwsStandby(scene.manifest).app_database_url()
    assert url is not None
    with psycopg.connect(scene.standby) as conn:
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        ).fetchall()
        database_owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        powers = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = 'app_user'"
        ).fetchone()
    # The data is the app's; the database stays the master's: its comment is the restore marker.
    assert owners == [("app_user",)] and database_owner != ("app_user",)
    assert powers == (False, False, False, False)
    app = psycopg.connect(url, autocommit=True)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("CREATE ROLE app_made_this")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # cannot forge the restore marker
        app.execute("COMMENT ON DATABASE " + str(conninfo_to_dict(scene.standby)["dbname"]) + " IS 'forged'")
    return app


def _the_journal_is_signed_with_the_runbook_key(scene: Scene) -> None:
    mac = KmsMac(str(scene.manifest.runbook_mac_key), scene.manifest.region)
    remote = S3Store(scene.manifest.backup_bucket).get_json(f"runbooks/{scene.app}/cutover/current.json")
    local = json.loads((scene.journal / f"{scene.app}-cutover.json").read_text())
    assert mac.problem(remote) is None and mac.problem(local) is None
    assert JournalStore(scene.journal, S3Store(scene.manifest.backup_bucket), mac).load(scene.app, "cutover")


def test_a_genuine_journal_put_back_from_an_older_run_cannot_make_a_resume_skip_the_fence(
    scene: Scene,
) -> None:
    """The bucket keeps every version of a journal, each signed: one saying the fence was done is put back
    while Heroku runs unfenced. The steps it calls done are checked against the world, not believed."""
    old = KmsMac(str(scene.manifest.runbook_mac_key), scene.manifest.region).sign(
        _journal_claiming_the_fence_done(scene)
    )
    S3Store(scene.manifest.backup_bucket).put_json(f"runbooks/{scene.app}/cutover/current.json", old)

    run = scene.run(cutover.main, "--resume")

    assert run.code == 0, run.output
    assert "fence_primary: done in run" not in run.output and _fenced(scene)
