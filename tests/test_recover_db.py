"""`scripts/recover_db.py` against the fake Heroku (tests/runbook_scene.py), whose Heroku Postgres add-ons
are real databases (local/heroku_postgres_fake.py): in-process, one subprocess for the command line."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from standby import recovery_mark
from standby.backup import BackupFailed, BackupRequest, run_backup
from standby.backup_store import LocalStore
from standby.commands import recover_db
from standby.local.heroku_fake import FakeApp
from standby.local.heroku_postgres_fake import FakeDatabase
from standby.local.postgres import LocalPostgres
from standby.names import mode_parameter
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url
from standby.runbooks import recover_db as steps
from tests.aws_calls import operator_refusals, record_calls
from tests.runbook_scene import Run, Scene, run_in_process, take_backup
from tests.servers import count_tables, run_script

TABLES = ["public.rental", "public.payment", "public.customer"]


class Crash(BaseException):
    """A process killed mid-run."""


def _app(scene: Scene) -> FakeApp:
    return scene.heroku.apps[scene.app]


def _recover(scene: Scene, *args: str) -> Run:
    return scene.run(recover_db.main, *args, "--health-url", scene.web.url)


def _changes(scene: Scene) -> list[str]:
    return [f"{r.method} {r.path}" for r in scene.heroku.requests if r.method != "GET"]


def _lose_rentals(url: str) -> None:
    """The disaster: a careless DELETE on the primary."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM payment WHERE rental_id > 1000")
        conn.execute("DELETE FROM rental WHERE rental_id > 1000")


def _serving(app: FakeApp) -> bool:
    return not app.maintenance and {k: v["quantity"] for k, v in app.formation.items()} == {
        "web": 3,
        "worker": 2,
    }


def _takes_writes(url: str) -> bool:
    with psycopg.connect(url) as conn:
        try:
            conn.execute("CREATE TABLE probe (id int)")
            return True
        except psycopg.errors.ReadOnlySqlTransaction:
            return False
        finally:
            conn.rollback()


def _newest_backup_id(scene: Scene) -> str:
    keys = boto3.client("s3").list_objects_v2(Bucket=scene.manifest.backup_bucket)["Contents"]
    return sorted(k["Key"].split("/")[2] for k in keys if k["Key"].endswith("manifest.json"))[-1]


# --- follower ---------------------------------------------------------------------------------------


def test_the_follower_is_promoted_inside_a_fence_and_takes_writes(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(scene)
    old = app.database
    follower = app.add_follower(behind_by=7)

    with record_calls(monkeypatch) as calls:
        run = _recover(scene, "follower")

    assert run.code == 0, run.output
    assert app.database is follower and app.config_vars["DATABASE_URL"] == follower.url
    assert old in app.attachments.values()  # the old database stays attached, under a name of its own
    assert _takes_writes(app.config_vars["DATABASE_URL"])
    assert "DATABASE is " + follower.name + " (it was behind by 7 commits)" in run.output
    assert _serving(app)  # the formation is back and maintenance is off
    changes = _changes(scene)
    assert changes.index(f"PATCH /apps/{scene.app}") < changes.index(
        "POST /addon-attachments"
    )  # fenced first
    assert operator_refusals(scene.manifest, calls) == []  # the operator role may do all it took


def test_without_a_follower_the_promotion_is_refused_and_nothing_changes(scene: Scene) -> None:
    run = _recover(scene, "follower")

    assert run.code == 3, run.output
    assert "has no follower" in run.output
    assert _changes(scene) == []


# --- point in time ----------------------------------------------------------------------------------


def _remembered_before_a_loss(scene: Scene) -> datetime:
    """Heroku's history of the database holds its state before the loss; the loss follows."""
    _app(scene).database.remember()
    time.sleep(0.2)
    before = datetime.now(UTC)
    time.sleep(0.2)
    _lose_rentals(scene.source)
    return before


def test_a_point_in_time_recovery_promotes_the_database_as_it_was_and_keeps_the_old_one(scene: Scene) -> None:
    app = _app(scene)
    before_loss = count_tables(scene.source, TABLES)
    at = _remembered_before_a_loss(scene)
    old = app.database

    run = _recover(scene, "point-in-time", "--at", at.isoformat())

    assert run.code == 0, run.output
    assert app.database is not old and count_tables(app.config_vars["DATABASE_URL"], TABLES) == before_loss
    assert old in app.attachments.values() and count_tables(scene.source, TABLES) != before_loss
    assert "rollback" in run.output and "public.rental" in run.output  # the comparison was shown
    assert len(app.databases) == 2 and _serving(app)


def test_a_time_outside_the_rollback_window_is_refused_with_the_window(scene: Scene) -> None:
    at = datetime.now(UTC) - timedelta(days=5)

    run = _recover(scene, "point-in-time", "--at", at.isoformat())

    assert run.code == 3, run.output
    assert "outside" in run.output and "rollback window" in run.output
    assert _changes(scene) == [] and len(_app(scene).databases) == 1


def test_the_promotion_waits_for_the_operators_word_and_a_resume_asks_again(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(scene)
    at = _remembered_before_a_loss(scene)
    old = app.database
    answers: list[str] = []

    def typed(name: str, action: str) -> bool:
        answers.append(action)
        return not action.startswith("Promote") or len(answers) > 2

    monkeypatch.setattr("standby.commands.runbook_command.confirm_by_name", typed)
    monkeypatch.setattr("standby.commands.recover_db.confirm_by_name", typed)
    argv = ["point-in-time", "--at", at.isoformat(), "--app", scene.app, "--journal-dir", str(scene.journal),
            "--health-url", scene.web.url]  # fmt: skip

    declined = run_in_process(recover_db.main, argv, scene.side())

    assert declined.code == 3 and "not promoted" in declined.output, declined.output
    assert app.database is old and len(app.databases) == 2 and _serving(app)

    resumed = run_in_process(recover_db.main, [*argv, "--resume"], scene.side())

    assert resumed.code == 0, resumed.output
    assert app.database is not old and len(app.databases) == 2  # the same rollback database, not a second


# --- from our backup --------------------------------------------------------------------------------


def test_our_backup_is_restored_into_heroku_after_herokus_own_backup(scene: Scene) -> None:
    app = _app(scene)
    before_loss = count_tables(scene.source, TABLES)
    backup = _newest_backup_id(scene)
    _lose_rentals(scene.source)
    after_loss = count_tables(scene.source, TABLES)

    run = _recover(scene, "from-backup", "--backup", backup)

    assert run.code == 0, run.output
    assert count_tables(scene.source, TABLES) == before_loss and _serving(app)
    assert len(scene.heroku.backups) == 1  # what it held before: Heroku's own backup, the way back
    assert f"DATABASE holds backup {backup}" in run.output
    take_backup(scene.manifest, scene.source)  # the mark is gone: backups take the database again
    assert after_loss != before_loss


def test_a_backup_whose_dump_does_not_verify_is_refused_and_nothing_changes(scene: Scene) -> None:
    backup = _newest_backup_id(scene)
    s3 = boto3.client("s3")
    key = f"{scene.manifest.backup_prefix}/{scene.app}/{backup}/dump"
    size = s3.head_object(Bucket=scene.manifest.backup_bucket, Key=key)["ContentLength"]
    s3.put_object(Bucket=scene.manifest.backup_bucket, Key=key, Body=b"\0" * size)  # same size, other bytes

    run = _recover(scene, "from-backup", "--backup", backup)

    assert run.code == 3, run.output
    assert f"backup {backup} does not verify" in run.output
    assert _changes(scene) == []


def test_a_parallel_backup_is_refused_before_anything_changes(scene: Scene) -> None:
    """Heroku's pg:backups:restore takes one dump file; a parallel backup (in S3, signed) has several."""
    backup = take_backup(scene.manifest, scene.source, streams=2)
    assert backup.parallel

    run = _recover(scene, "from-backup", "--backup", backup.backup_id)

    assert run.code == 3, run.output
    assert "is a parallel backup (3 files)" in run.output and "FILES 1" in run.output
    assert _changes(scene) == []


def test_the_apps_own_credential_marks_its_database_and_backups_refuse_it_until_lifted(
    pg_server: LocalPostgres, tmp_path: Path
) -> None:
    """Heroku's credential owns its database but is no superuser: the mark must be its to set."""
    role = f"heroku_owner_{time.time_ns() % 10**9}"
    name = f"heroku_{role}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
    url = pg_server.url(name).replace("postgres:@", f"{role}:@")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"COMMENT ON DATABASE \"{name}\" IS 'the shop'")
        conn.execute("CREATE TABLE orders (id int)")
    database = parse_database_url(url)
    earlier = psycopg.connect(url, autocommit=True)  # a session from before the mark: a backup in flight
    request = BackupRequest("shop", database, LocalStore(tmp_path), find_tool("pg_dump"))

    recovery_mark.mark(database, "run-1")

    with pytest.raises(psycopg.OperationalError):
        earlier.execute("SELECT 1")  # ended
    with pytest.raises(BackupFailed, match="recover_db run run-1"):
        run_backup(request)
    recovery_mark.unmark(database)
    assert run_backup(request).tables == {"public.orders": 0}
    with psycopg.connect(url) as conn:
        assert conn.execute(recovery_mark.COMMENT_SQL).fetchone() == ("the shop",)


def test_a_resume_must_ask_for_the_same_recovery(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    backup = _newest_backup_id(scene)
    with monkeypatch.context() as patch:
        patch.setattr(steps.RestoreBackup, "apply", _crash)
        patch.setattr("standby.runbook.lock.DynamoDbLock.delete", lambda self, holder: None)
        with pytest.raises(Crash):
            _recover(scene, "from-backup", "--backup", backup)

    other = _recover(scene, "from-backup", "--backup", "20261201T000000Z-abcdef", "--resume", "--take-over")

    assert other.code == 3 and "resume it with the same arguments" in other.output, other.output


def test_a_resume_after_a_cutover_is_refused_and_heroku_stays_fenced(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(scene)
    app.add_follower()
    with monkeypatch.context() as patch:
        patch.setattr(steps.Promote, "apply", _crash)
        patch.setattr("standby.runbook.lock.DynamoDbLock.delete", lambda self, holder: None)
        with pytest.raises(Crash):
            _recover(scene, "follower")
    # While the killed run's lock lapsed, someone cut over to AWS: the app is live there now.
    boto3.client("ssm").put_parameter(Name=mode_parameter(scene.app), Value="active", Overwrite=True)

    run = _recover(scene, "follower", "--resume", "--take-over")

    assert run.code == 3 and "not on Heroku" in run.output, run.output
    assert app.maintenance and not any(f["quantity"] for f in app.formation.values())


def test_an_app_that_runs_no_dyno_needs_the_formation_named(scene: Scene) -> None:
    app = _app(scene)
    app.add_follower()
    for process in app.formation.values():
        process["quantity"] = 0  # fenced by hand in a hurry
    app.scale_dynos()

    refused = _recover(scene, "follower")
    named = _recover(scene, "follower", "--restart", "--formation", "web=3,worker=2")

    assert refused.code == 3 and "--formation web=2,worker=1" in refused.output, refused.output
    assert named.code == 0, named.output
    assert _serving(app)


def _disaster(scene: Scene, mode: str) -> list[str]:
    """What each mode recovers from, made to happen; the arguments that recover from it."""
    if mode == "follower":
        _app(scene).add_follower()
        return [mode]
    if mode == "point-in-time":
        return [mode, "--at", _remembered_before_a_loss(scene).isoformat()]
    backup = _newest_backup_id(scene)
    _lose_rentals(scene.source)
    return [mode, "--backup", backup]


def _crash(self: object, ctx: object) -> None:
    raise Crash


@pytest.mark.parametrize(
    ("mode", "step"),
    [
        ("follower", steps.FenceApp),
        ("point-in-time", steps.CreateRollbackDatabase),
        ("point-in-time", steps.Promote),
        ("from-backup", steps.CaptureHeroku),
        ("from-backup", steps.HoldBackups),
        ("from-backup", steps.RestoreBackup),
    ],
    ids=lambda p: p if isinstance(p, str) else p.name,
)
def test_a_crash_after_a_step_acted_is_resumed_to_the_same_end_without_acting_twice(
    scene: Scene, monkeypatch: pytest.MonkeyPatch, mode: str, step: Any
) -> None:
    app = _app(scene)
    before_loss = count_tables(scene.source, TABLES)
    args = _disaster(scene, mode)

    with monkeypatch.context() as patch:
        patch.setattr(step, "verify", _crash)  # the step acted; the journal never heard
        patch.setattr("standby.runbook.lock.DynamoDbLock.delete", lambda self, holder: None)  # killed: kept
        with pytest.raises(Crash):
            _recover(scene, *args)
    if step is steps.HoldBackups or step is steps.RestoreBackup:
        with pytest.raises(BackupFailed, match="recover_db run"):  # a half-restored database is not dumped
            take_backup(scene.manifest, scene.source)

    run = _recover(scene, *args, "--resume", "--take-over")

    assert run.code == 0, run.output
    assert _serving(app) and _takes_writes(app.config_vars["DATABASE_URL"])
    assert len(app.databases) == 2 if mode != "from-backup" else len(scene.heroku.backups) == 1
    if mode != "follower":
        assert count_tables(app.config_vars["DATABASE_URL"], TABLES) == before_loss
    posts = [c for c in _changes(scene) if c.endswith("/restores") or c.endswith("/addons")]
    assert len(posts) == (0 if mode == "follower" else 1)


def test_without_yes_the_apps_name_must_be_typed(scene: Scene) -> None:
    _app(scene).add_follower()
    argv = [
        "follower",
        "--app",
        scene.app,
        "--journal-dir",
        str(scene.journal),
        "--health-url",
        scene.web.url,
    ]
    run = run_in_process(recover_db.main, argv, scene.side())
    assert run.code == 2 and "needs the app's name typed" in run.output
    assert _changes(scene) == []


def test_a_follower_made_through_the_api_refuses_writes_until_unfollowed(scene: Scene) -> None:
    follower = FakeDatabase.follower_of(_app(scene).database)
    assert not _takes_writes(follower.url)
    follower.unfollow()
    assert _takes_writes(follower.url)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["follower", "point-in-time", "from-backup"])
def test_the_recover_db_script_recovers(scene: Scene, mode: str) -> None:
    app = _app(scene)
    before_loss = count_tables(scene.source, TABLES)
    args = _disaster(scene, mode)

    result = run_script(
        "recover_db.py", *args, "--app", scene.app, "--yes", "--journal-dir", str(scene.journal),
        "--health-url", scene.web.url, env=dict(os.environ),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert count_tables(app.config_vars["DATABASE_URL"], TABLES) == before_loss and _serving(app)
    assert f"recover_db of {scene.app} done" in result.stdout


def test_a_database_another_app_owns_is_recovered_from_that_app_not_this_one(scene: Scene) -> None:
    owner = scene.heroku.add_app(FakeApp(f"{scene.app}-data", config_vars={"DATABASE_URL": scene.source}))
    _app(scene).attach(owner)  # `heroku addons:attach`: this app's DATABASE is the other app's add-on
    scene.heroku.requests.clear()

    run = _recover(scene, "from-backup", "--backup", _newest_backup_id(scene))

    assert run.code == 3 and "of its own" in run.output, run.output
    assert _changes(scene) == []


@pytest.mark.parametrize(
    ("following", "database_url", "same"),
    [
        (
            "postgres://ec2-1.compute.amazonaws.com:5432/d1",
            "postgres://u:secret@ec2-1.compute.amazonaws.com:5432/d1",
            True,
        ),
        (
            "postgres://ec2-1.compute.amazonaws.com:5432/d1",
            "postgres://u:secret@ec2-1.compute.amazonaws.com:5432/d2",
            False,
        ),
        (
            "postgres://ec2-1.compute.amazonaws.com:5432/d1",
            "postgres://u:secret@ec2-2.compute.amazonaws.com:5432/d1",
            False,
        ),
        ("postgresql://pg:@/db?host=/run/a", "postgresql://pg:@/db?host=/run/b", False),
    ],
)
def test_a_follower_is_matched_to_its_leader_as_the_cli_matches_urls(
    following: str, database_url: str, same: bool
) -> None:
    assert steps.same_database(following, database_url) is same


def test_a_scheduled_backup_finds_the_follower_and_passes_over_one_that_does_not_replay(scene: Scene) -> None:
    """The fake's follower is a copy (it replays nothing): the backup reads the primary and says why;
    a streaming follower is used (tests/test_backup_source.py)."""
    from standby.commands import backup as backup_command

    follower = _app(scene).add_follower()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = backup_command.main(["--app", scene.app, "--no-metrics"])

    assert code == 0, out.getvalue()
    assert f"backing up the primary: {follower.name} is not replaying a primary's WAL" in out.getvalue()
    newest = _newest_backup_id(scene)
    doc = boto3.client("s3").get_object(
        Bucket=scene.manifest.backup_bucket,
        Key=f"{scene.manifest.backup_prefix}/{scene.app}/{newest}/manifest.json",
    )
    assert json.loads(doc["Body"].read())["source_role"] == "primary"
