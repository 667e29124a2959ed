"""Scheduled backups dump a follower that keeps up with Heroku's primary, else the primary itself."""

from __future__ import annotations

import psycopg
import pytest

from standby import catalog
from standby.backup_store import S3Store
from standby.catalog import BackupManifest
from standby.catalog_index import read_catalog
from standby.commands import backup
from tests.runbook_scene import Scene

NEW_ACTORS = 7  # written on the primary after the follower was made: the fake follower does not stream


def _newest(scene: Scene) -> BackupManifest:
    newest = catalog.newest_complete(
        read_catalog(S3Store(scene.manifest.backup_bucket), "backups", scene.app)
    )
    assert newest is not None and newest.manifest is not None
    return newest.manifest


def _follower_then_writes(scene: Scene, behind_by: int, ready: bool = True) -> tuple[str, int]:
    app = scene.heroku.apps[scene.app]
    follower = app.add_follower(behind_by=behind_by)
    if not ready:
        follower.ready_at = float("inf")  # still preparing
    with psycopg.connect(scene.source, autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM actor").fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO actor (first_name, last_name) SELECT 'On', 'Primary' FROM generate_series(1, %s)",
            [NEW_ACTORS],
        )
    return follower.name, int(before)


def test_a_follower_that_keeps_up_is_dumped_and_the_manifest_says_so(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    name, before = _follower_then_writes(scene, behind_by=3)

    assert backup.main(["--app", scene.app, "--no-metrics"]) == 0, capsys.readouterr().err

    manifest = _newest(scene)
    assert manifest.source_database == f"follower {name}"
    assert manifest.source_note == "3 commits behind the primary when the backup started"
    assert manifest.tables["public.actor"] == before  # the follower's rows, not the primary's newer ones


@pytest.mark.parametrize(
    ("behind_by", "ready", "why"),
    [
        (5000, True, "5000 commits behind, over the bound of 1000"),
        (0, False, "still preparing"),
    ],
)
def test_a_follower_that_lags_or_is_not_ready_leaves_the_backup_to_the_primary(
    scene: Scene, capsys: pytest.CaptureFixture[str], behind_by: int, ready: bool, why: str
) -> None:
    name, before = _follower_then_writes(scene, behind_by=behind_by, ready=ready)

    assert backup.main(["--app", scene.app, "--no-metrics"]) == 0, capsys.readouterr().err

    manifest = _newest(scene)
    assert manifest.source_database == "primary"
    assert manifest.source_note == f"follower {name} {why}"
    assert manifest.tables["public.actor"] == before + NEW_ACTORS


def test_from_primary_never_looks_at_followers(scene: Scene) -> None:
    _, before = _follower_then_writes(scene, behind_by=0)

    assert backup.main(["--app", scene.app, "--no-metrics", "--from", "primary"]) == 0

    manifest = _newest(scene)
    assert manifest.source_database == "primary" and manifest.tables["public.actor"] == before + NEW_ACTORS
