"""The backup schedule never overlaps itself, and says when backups outgrow their interval."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import boto3
import psycopg
import pytest

from standby import catalog
from standby.backup_store import S3Store
from standby.catalog_index import read_catalog
from standby.commands import backup
from standby.names import backup_lock_key, manifest_parameter
from standby.runbook.lock import DynamoDbLock, Holder
from tests.runbook_scene import Scene


def _backups(scene: Scene) -> list[str]:
    entries = read_catalog(S3Store(scene.manifest.backup_bucket), "backups", scene.app)
    return [e.backup_id for e in entries]


def _skipped_metrics(scene: Scene) -> list[float]:
    end = datetime.now(UTC) + timedelta(minutes=1)
    answer = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="Standby/Backups", MetricName="BackupSkipped", Dimensions=[{"Name": "App", "Value": scene.app}],
        StartTime=end - timedelta(hours=1), EndTime=end, Period=3600, Statistics=["Sum"],
    )  # fmt: skip
    return [p["Sum"] for p in answer["Datapoints"]]


def _set_interval(scene: Scene, seconds: int) -> None:
    ssm = boto3.client("ssm")
    name = manifest_parameter(scene.app)
    document = json.loads(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    document["backup_interval_seconds"] = seconds
    ssm.put_parameter(Name=name, Value=json.dumps(document), Type="String", Overwrite=True)


@pytest.mark.parametrize("running_for", [60, 40 * 60])
def test_a_scheduled_run_is_skipped_while_the_previous_backup_runs(
    scene: Scene, capsys: pytest.CaptureFixture[str], running_for: int
) -> None:
    lock = DynamoDbLock(scene.manifest.lock_table, backup_lock_key(scene.app), scene.manifest.region)
    lease = lock.acquire(Holder("backup", "backup.py", "earlier"))
    table = boto3.client("dynamodb")
    table.update_item(  # the running backup started `running_for` seconds ago (its lease is renewed)
        TableName=scene.manifest.lock_table, Key={"lock": {"S": backup_lock_key(scene.app)}},
        UpdateExpression="SET acquired_at = :at", ExpressionAttributeValues={":at": {"N": str(int(time.time()) - running_for)}},
    )  # fmt: skip
    before = _backups(scene)
    try:
        code = backup.main(["--app", scene.app])
    finally:
        lease.release()

    said = capsys.readouterr().err
    assert code == 3, said
    assert "is still running after" in said and "this run is skipped, so backups never overlap" in said
    assert _backups(scene) == before  # nothing dumped, nothing written
    assert _skipped_metrics(scene) == [1.0]
    if running_for > scene.manifest.backup_interval_seconds:
        assert "longer than the 15 min between scheduled runs" in said
        # 40 min running: one completes every 45 min, so data up to 45 + 40 min old.
        assert "can be 85 min old, against an RPO of 15 min: out of reach" in said
    else:
        assert "out of reach" not in said
    # The runbooks' lock is another item, untouched.
    assert "Item" not in table.get_item(TableName=scene.manifest.lock_table, Key={"lock": {"S": scene.app}})

    assert backup.main(["--app", scene.app, "--no-metrics"]) == 0  # the lease is free again: the next runs
    assert len(_backups(scene)) == len(before) + 1


def test_a_backup_longer_than_the_interval_is_reported_with_its_numbers(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    _set_interval(scene, 1)
    # A migration holds a table until the backup has waited on it for 1.2 s: the backup outlasts its 1 s
    # interval however long it took to get there.
    with psycopg.connect(scene.source) as migration:
        migration.execute("LOCK TABLE public.actor IN ACCESS EXCLUSIVE MODE")

        def release_once_waited_on() -> None:
            with psycopg.connect(scene.source, autocommit=True) as watcher:
                query = (
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'public.actor'::regclass"
                )
                while watcher.execute(query).fetchone() == (0,):
                    time.sleep(0.05)
            time.sleep(1.2)
            migration.commit()

        threading.Thread(target=release_once_waited_on, daemon=True).start()
        assert backup.main(["--app", scene.app, "--no-metrics"]) == 0

    said = capsys.readouterr().err
    assert "warning: A backup takes" in said and "longer than the 1 s between scheduled runs" in said
    lock = DynamoDbLock(scene.manifest.lock_table, backup_lock_key(scene.app), scene.manifest.region)
    assert lock.holder() is None  # released at the end
    newest = catalog.newest_complete(
        read_catalog(S3Store(scene.manifest.backup_bucket), "backups", scene.app)
    )
    assert newest is not None and newest.backup_id == _backups(scene)[-1]
