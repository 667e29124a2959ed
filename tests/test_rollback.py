"""`scripts/rollback.py` against the fake Heroku (tests/runbook_scene.py): in-process, one subprocess for
the command-line contract."""

from __future__ import annotations

import os
import time
from typing import Any

import boto3
import psycopg
import pytest

from standby.commands import rollback
from standby.local.heroku_fake import FakeApp
from standby.names import mode_parameter
from standby.runbooks import rollback as rollback_runbook
from tests.runbook_scene import Run, Scene, run_in_process, take_backup
from tests.servers import run_script


class Crash(BaseException):
    """A process killed mid-run."""


def _app(scene: Scene) -> FakeApp:
    return scene.heroku.apps[scene.app]


def _deploys(scene: Scene, *descriptions: str) -> list[dict[str, Any]]:
    return [_app(scene).deploy(d) for d in descriptions]


def _roll_back(scene: Scene, *args: str) -> Run:
    return scene.run(rollback.main, "--health-url", scene.web.url, *args)


def _current(scene: Scene) -> dict[str, Any]:
    return next(r for r in _app(scene).releases if r["current"])


def _changes(scene: Scene) -> list[str]:
    return [f"{r.method} {r.path}" for r in scene.heroku.requests if r.method != "GET"]


def test_a_bad_release_is_rolled_back_to_the_previous_good_one_and_the_app_answers(scene: Scene) -> None:
    good, _bad = _deploys(scene, "Deploy 1a2b3c", "Deploy 4d5e6f")

    run = _roll_back(scene)

    assert run.code == 0, run.output
    now = _current(scene)
    assert (now["version"], now["description"]) == (3, "Rollback to v1")
    assert now["slug"]["id"] == good["slug"]["id"] and now["status"] == "succeeded"
    assert "v2 -> v3 (running v1's slug), healthy: yes" in run.output
    assert _changes(scene) == [f"POST /apps/{scene.app}/releases"]


def test_a_named_release_is_the_target(scene: Scene) -> None:
    first, *_ = _deploys(scene, "Deploy a", "Deploy b", "Deploy c")
    run = _roll_back(scene, "--to", "v1")
    assert run.code == 0, run.output
    assert _current(scene)["slug"]["id"] == first["slug"]["id"]


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("v99", "has no release v99"),
        ("v2", "v2 failed: it never ran"),
        ("v3", "v3 is the current release already"),
        ("latest", "is not a release"),
    ],
    ids=["unknown", "failed", "current", "not-a-version"],
)
def test_a_target_that_cannot_be_rolled_back_to_is_refused_and_nothing_changes(
    scene: Scene, to: str, message: str
) -> None:
    app = _app(scene)
    _deploys(scene, "Deploy a")
    app.release_status = "failed"
    _deploys(scene, "Deploy broken")
    app.release_status = "succeeded"
    _deploys(scene, "Deploy c")
    before = [dict(r) for r in app.releases]

    run = _roll_back(scene, "--to", to)

    assert run.code == 3, run.output
    assert message in run.output
    assert app.releases == before and _changes(scene) == []


def test_a_rollback_whose_release_phase_fails_ends_with_its_status_and_the_old_release_running(
    scene: Scene,
) -> None:
    app = _app(scene)
    _deploys(scene, "Deploy a", "Deploy b")
    app.release_phase, app.release_status = True, "failed"

    run = _roll_back(scene)

    assert run.code == 1, run.output
    assert "the rollback release v3 failed" in run.output and "v2 still runs" in run.output
    assert _current(scene)["version"] == 2


def test_migrations_since_the_target_are_warned_about(scene: Scene) -> None:
    with psycopg.connect(scene.source, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY)")
        conn.execute("INSERT INTO schema_migrations VALUES ('20261101')")
    take_backup(scene.manifest, scene.source)
    app = _app(scene)
    _deploys(scene, "Deploy a")  # the target: its backup holds one migration
    app.release_phase = True
    with psycopg.connect(scene.source, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES ('20261201'), ('20261202')")
    _deploys(scene, "Deploy b with migrations")
    deadline = time.monotonic() + 10
    while _current(scene)["version"] != 2 and time.monotonic() < deadline:  # its release phase runs
        time.sleep(0.05)

    run = _roll_back(scene, "--dry-run")

    assert run.code == 0, run.output
    assert "the release phase ran in v2 since v1" in run.output
    assert "public.schema_migrations has 3 rows, 1 in backup" in run.output
    assert _changes(scene) == []


def test_a_lost_answer_is_adopted_and_a_crash_resumed_never_makes_two_rollbacks(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deploys(scene, "Deploy a", "Deploy b")
    scene.heroku.lose_next_answer("POST", "releases")  # Heroku makes the release, the answer is lost
    _app(scene).release_phase = True

    def crash(self: object, ctx: object) -> None:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(rollback_runbook.WaitRelease, "apply", crash)
        # A killed process releases nothing: its lock stays until the resume takes it over.
        patch.setattr("standby.runbook.lock.DynamoDbLock.delete", lambda self, holder: None)
        with pytest.raises(Crash):
            _roll_back(scene)

    run = _roll_back(scene, "--resume", "--take-over")

    assert run.code == 0, run.output
    rollbacks = [r for r in _app(scene).releases if r["description"].startswith("Rollback")]
    assert len(rollbacks) == 1 and rollbacks[0]["current"]


def test_a_rollback_while_the_app_is_live_on_aws_is_refused(scene: Scene) -> None:
    _deploys(scene, "Deploy a", "Deploy b")
    boto3.client("ssm").put_parameter(Name=mode_parameter(scene.app), Value="active", Overwrite=True)

    run = _roll_back(scene)

    assert run.code == 3 and "not on Heroku" in run.output, run.output
    assert _changes(scene) == []


def test_without_yes_the_apps_name_must_be_typed(scene: Scene) -> None:
    _deploys(scene, "Deploy a", "Deploy b")
    argv = ["--app", scene.app, "--journal-dir", str(scene.journal), "--health-url", scene.web.url]
    run = run_in_process(rollback.main, argv, scene.side())
    assert run.code == 2 and "needs the app's name typed" in run.output
    assert _changes(scene) == []


@pytest.mark.slow
def test_the_rollback_script_rolls_back(scene: Scene) -> None:
    _deploys(scene, "Deploy a", "Deploy b")
    result = run_script(
        "rollback.py", "--app", scene.app, "--yes", "--journal-dir", str(scene.journal),
        "--health-url", scene.web.url, env=dict(os.environ),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _current(scene)["description"] == "Rollback to v1"
