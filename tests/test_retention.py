"""Retention in code: the newest complete backups never expire, whatever their age; the bucket's lifecycle
rule expires only what the retention tagged."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from standby import catalog
from standby.backup_store import EXPIRABLE, S3Store
from standby.catalog import BackupManifest
from standby.retention import apply_retention

APP = "acme"


@pytest.fixture
def store(aws_env: dict[str, str]) -> S3Store:
    bucket = f"retention-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-east-2"}
    )
    return S3Store(bucket)


def _backup(store: S3Store, days_ago: float, state: str = "complete") -> str:
    """A backup as the backup writes it, `days_ago` old (a month-old schedule that stopped, say)."""
    at = datetime.now(UTC) - timedelta(days=days_ago)
    backup_id = catalog.new_backup_id(at)
    base = catalog.backup_prefix("backups", APP, backup_id)
    store.write_stream(base + "dump", [b"PGDMP-not-really"])
    if state == "complete":
        manifest = BackupManifest(
            backup_id, APP, base + "dump", 16, "0" * 64, "16.4", "16.4", at, at, at, {}, "x"
        )
        store.put_json(base + "manifest.json", manifest.to_json())
    elif state == "failed":
        store.put_json(
            base + "failure.json",
            {"phase": "dumping", "error": "pg_dump failed", "started_at": at.isoformat()},
        )
    return backup_id


def _expirable(store: S3Store, backup_id: str) -> bool:
    keys = store.list_keys(catalog.backup_prefix("backups", APP, backup_id))
    tagged = [
        {"Key": EXPIRABLE[0], "Value": EXPIRABLE[1]}
        in store.client.get_object_tagging(Bucket=store.bucket, Key=k)["TagSet"]
        for k in keys
    ]
    assert len(set(tagged)) == 1, "all of a backup's objects share its fate"
    return tagged[0]


def test_the_newest_complete_backups_never_expire_however_old(store: S3Store) -> None:
    old = [_backup(store, days) for days in (90, 80, 70)]  # backups stopped two months ago
    failed = _backup(store, 60, "failed")
    newest = [_backup(store, days) for days in (50, 40)]

    redundant = apply_retention(store, "backups", APP, keep=2)

    assert sorted(redundant) == sorted([*old, failed])
    assert [_expirable(store, b) for b in newest] == [False, False]  # 40 and 50 days old: kept
    assert all(_expirable(store, b) for b in [*old, failed])


def test_a_backup_without_a_manifest_is_left_alone_while_it_may_still_run(store: S3Store) -> None:
    complete = [_backup(store, d) for d in (3, 2)]
    running = _backup(store, 0.01, "incomplete")
    crashed = _backup(store, 5, "incomplete")

    apply_retention(store, "backups", APP, keep=1)

    assert not _expirable(store, running) and _expirable(store, crashed)
    assert _expirable(store, complete[0]) and not _expirable(store, complete[1])


def test_with_fewer_complete_backups_than_kept_none_expires(store: S3Store) -> None:
    only = _backup(store, 400)
    assert apply_retention(store, "backups", APP, keep=4) == []
    assert not _expirable(store, only)
