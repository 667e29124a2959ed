"""One live side: after a cutover the standby's database is the app's live database. The scheduled
backup follows it there, and nothing restores over it but an explicit, confirmed recovery."""

from __future__ import annotations

import psycopg
import pytest

from standby import catalog, catalog_index
from standby.backup_store import S3Store
from standby.commands import backup, cutover, restore
from standby.config.models import Mode
from standby.live_side import HEROKU, live_place
from standby.runbook.lock import DynamoDbLock, Holder
from tests.runbook_scene import Scene
from tests.servers import count_tables

ACTOR = ["public.actor"]


def _app_writes_on_aws(scene: Scene, rows: int) -> None:
    with psycopg.connect(scene.standby, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO actor (first_name, last_name) SELECT 'Aws', 'Era' FROM generate_series(1, %s)",
            [rows],
        )


def _newest(scene: Scene) -> catalog.BackupManifest:
    entries = catalog_index.read_catalog(S3Store(scene.manifest.backup_bucket), "backups", scene.app)
    found = catalog.newest_complete(entries)
    assert found is not None and found.manifest is not None
    return found.manifest


def test_after_a_cutover_the_scheduled_backup_dumps_the_standby_database(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    assert live_place(scene.manifest) == HEROKU
    assert scene.run(cutover.main).code == 0
    assert live_place(scene.manifest) == scene.manifest.region
    _app_writes_on_aws(scene, 50)

    # What the schedule runs: no --source-url, the manifest from SSM.
    assert backup.main(["--app", scene.app, "--no-metrics"]) == 0, capsys.readouterr().err

    newest = _newest(scene)
    assert newest.source_side == f"standby:{scene.manifest.region}"
    assert newest.tables["public.actor"] == 250  # the writes the app made on AWS are in the chain
    assert "standby:us-east-2" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--ahead", "--yes"], "restore-ahead stands down"),
        (["--yes"], "pass --replace-live"),
        (["--yes", "--backup", "OLDEST"], "pass --replace-live"),
    ],
    ids=["restore-ahead", "restore", "restore of an older backup"],
)
def test_no_restore_replaces_the_live_standby_database(
    scene: Scene, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    oldest = _newest(scene).backup_id
    assert scene.run(cutover.main).code == 0
    _app_writes_on_aws(scene, 50)
    before = count_tables(scene.standby, ACTOR)

    code = restore.main(["--app", scene.app, *[oldest if a == "OLDEST" else a for a in args]])

    assert code == 3
    err = capsys.readouterr().err
    assert said in err and "Nothing was changed" in err and err.count("\n") == 1
    assert count_tables(scene.standby, ACTOR) == before == {"public.actor": 250}


def test_an_explicit_recovery_may_replace_the_live_database(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    assert scene.run(cutover.main).code == 0
    _app_writes_on_aws(scene, 50)

    assert restore.main(["--app", scene.app, "--replace-live", "--yes"]) == 0, capsys.readouterr().err

    assert count_tables(scene.standby, ACTOR) == {"public.actor": 200}  # the backup, on purpose


def test_restore_ahead_is_refused_while_a_runbook_holds_the_apps_lock(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    DynamoDbLock(scene.manifest.lock_table, scene.app).acquire(Holder("cutover", "alice@laptop", "a1"))

    assert restore.main(["--app", scene.app, "--ahead", "--yes"]) == 3
    assert "locked by cutover of alice@laptop" in capsys.readouterr().err
    assert scene.mode() == Mode.WARM.value
