"""Backups against a real PostgreSQL, moto's S3 on loopback and the Heroku API fake; the script runs as
a subprocess, the way the standby's scheduled task runs it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from standby.backup import BackupFailed, BackupRequest, run_backup
from standby.backup_store import LocalStore
from standby.catalog import BackupManifest
from standby.local.heroku_fake import FakeApp, HerokuFake
from standby.local.postgres import LocalPostgres
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url
from standby.sample_data import load_pagila
from tests.servers import CuttableProxy, count_tables, run_script, writes_going_on

APP = "acme-shop"
TOKEN = "heroku-token-not-for-logs"


@pytest.fixture
def pagila_url(pg_server: LocalPostgres, pagila_template: str) -> str:
    """The sample app (3000 rentals), copied from the session's template in milliseconds."""
    return pg_server.create_database("pagila", template=pagila_template)


@pytest.fixture
def heroku(pagila_url: str) -> Iterator[HerokuFake]:
    with HerokuFake(TOKEN) as fake:
        fake.add_app(FakeApp(APP, config_vars={"DATABASE_URL": pagila_url, "RACK_ENV": "production"}))
        yield fake


@pytest.fixture
def bucket(aws_env: dict[str, str]) -> str:
    name = f"backups-{time.time_ns()}"
    boto3.client("s3").create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-east-2"}
    )
    return name


def _env(aws_env: dict[str, str], heroku: HerokuFake) -> dict[str, str]:
    return {**aws_env, "HEROKU_API_URL": heroku.url, "HEROKU_API_KEY": TOKEN}


def _manifests(bucket: str) -> list[dict[str, Any]]:
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return [
        json.loads(s3.get_object(Bucket=bucket, Key=k)["Body"].read())
        for k in keys
        if k.endswith("manifest.json")
    ]


def _restore(dump: Path, target_url: str) -> None:
    pg_restore = find_tool("pg_restore")
    result = subprocess.run(
        [
            str(pg_restore.path),
            "--no-owner",
            "--no-acl",
            "--exit-on-error",
            f"--dbname={target_url}",
            str(dump),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def _download(bucket: str, key: str, to: Path) -> Path:
    boto3.client("s3").download_file(bucket, key, str(to))
    return to


def test_a_backup_of_pagila_has_the_sources_counts_and_restores_with_them(
    pg_server: LocalPostgres,
    pagila_url: str,
    heroku: HerokuFake,
    bucket: str,
    aws_env: dict[str, str],
    tmp_path: Path,
) -> None:
    result = run_script("backup.py", "--app", APP, "--bucket", bucket, env=_env(aws_env, heroku))
    assert result.returncode == 0, result.stderr

    (manifest_doc,) = _manifests(bucket)
    manifest = BackupManifest.from_json(manifest_doc)
    assert manifest.app == APP
    assert len(manifest.tables) >= 60  # pagila's tables, including every payment partition
    source_counts = count_tables(pagila_url, list(manifest.tables))
    assert manifest.tables == source_counts
    assert manifest.tables["public.rental"] == 3000
    assert "_heroku.internal_state" not in manifest.tables  # Heroku's machinery stays behind
    assert TOKEN not in result.stdout + result.stderr
    assert [(r.method, r.path) for r in heroku.requests] == [  # read-only: the URL, then its followers
        ("GET", f"/apps/{APP}/config-vars"),
        ("GET", f"/apps/{APP}/addon-attachments"),
        ("GET", f"/apps/{APP}/addons"),
    ]

    dump = _download(bucket, manifest.dump_key, tmp_path / "dump")
    assert dump.stat().st_size == manifest.size
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == manifest.sha256
    target = pg_server.create_database("restored")
    _restore(dump, target)
    assert count_tables(target, list(manifest.tables)) == manifest.tables
    with psycopg.connect(target) as conn:
        citext = conn.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE extname = 'citext'"
        ).fetchone()
        assert citext == ("heroku_ext",)
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = '_heroku'").fetchone() == (0,)


def test_writes_during_the_backup_do_not_break_the_agreement_of_counts_and_dump(
    pg_server: LocalPostgres, pagila_url: str, tmp_path: Path
) -> None:
    with writes_going_on(pagila_url) as written:
        before = written[0]
        manifest = run_backup(_request(pagila_url, tmp_path / "store"))
        during = written[0] - before

    assert during > 0, "the writer must have been writing while the backup ran"
    target = pg_server.create_database("restored")
    _restore(tmp_path / "store" / manifest.dump_key, target)
    assert count_tables(target, list(manifest.tables)) == manifest.tables
    # The source moved on after the snapshot; the backup is exactly the snapshot.
    assert count_tables(pagila_url, ["public.rental"])["public.rental"] > manifest.tables["public.rental"]


def _request(url: str, folder: Path, **kwargs: Any) -> BackupRequest:
    return BackupRequest(
        app=APP,
        source=parse_database_url(url),
        store=LocalStore(folder),
        pg_dump=find_tool("pg_dump"),
        **kwargs,
    )


def test_an_unreachable_source_fails_cleanly_and_leaves_earlier_backups_alone(
    pagila_url: str, heroku: HerokuFake, bucket: str, aws_env: dict[str, str]
) -> None:
    env = _env(aws_env, heroku)
    assert run_script("backup.py", "--app", APP, "--bucket", bucket, env=env).returncode == 0
    before = _objects(bucket)

    heroku.apps[APP].config_vars["DATABASE_URL"] = "postgres://u:p@127.0.0.1:1/nowhere?connect_timeout=2"
    result = run_script("backup.py", "--app", APP, "--bucket", bucket, env=env)

    assert result.returncode == 1
    assert "backup failed while connecting to the source database" in result.stderr
    after = _objects(bucket)
    assert {k: v for k, v in after.items() if k in before} == before  # untouched
    new = set(after) - set(before)
    assert [k.rsplit("/", 1)[1] for k in new] == ["failure.json"]
    failure = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=new.pop())["Body"].read())
    assert failure["phase"] == "connecting to the source database"
    assert failure["error"]
    assert "p@" not in result.stderr and "u:p" not in json.dumps(failure)


def _objects(bucket: str) -> dict[str, str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: o["ETag"] for o in listing}


def test_a_pg_dump_older_than_the_server_is_refused_before_dumping(
    pagila_url: str, heroku: HerokuFake, bucket: str, aws_env: dict[str, str], tmp_path: Path
) -> None:
    old_bin = tmp_path / "pg12" / "bin"
    old_bin.mkdir(parents=True)
    fake = old_bin / "pg_dump"
    fake.write_text(
        '#!/bin/sh\necho \'pg_dump (PostgreSQL) 12.22\'\n[ "$1" = --version ] || touch "$0.ran"\n'
    )
    fake.chmod(0o755)

    result = run_script(
        "backup.py", "--app", APP, "--bucket", bucket, "--pg-bin", str(old_bin), env=_env(aws_env, heroku)
    )

    assert result.returncode == 2
    assert "is version 12.22, but a PostgreSQL 18" in result.stderr
    assert "needs pg_dump 18 or newer" in result.stderr
    assert not (old_bin / "pg_dump.ran").exists(), "the old pg_dump must never be asked to dump"
    assert _objects(bucket) == {}


def test_an_upload_cut_mid_stream_leaves_no_backup_and_earlier_ones_intact(
    heroku: HerokuFake, bucket: str, aws_env: dict[str, str], moto_endpoint: str
) -> None:
    env = _env(aws_env, heroku)
    assert run_script("backup.py", "--app", APP, "--bucket", bucket, env=env).returncode == 0
    before = _objects(bucket)

    # The sample's dump is about 0.6 MB: the endpoint goes away a quarter of the way through it.
    proxy = CuttableProxy(int(moto_endpoint.rsplit(":", 1)[1]), cut_after=128 * 1024)
    try:
        result = run_script(
            "backup.py", "--app", APP, "--bucket", bucket, env={**env, "AWS_ENDPOINT_URL": proxy.url}
        )
    finally:
        proxy.close()

    assert proxy.cut.is_set(), "the proxy must have cut the upload"
    assert result.returncode == 1
    assert "backup failed while dumping and uploading" in result.stderr
    after = _objects(bucket)
    assert after == before  # no new dump object, no manifest; the earlier backup is byte-for-byte there
    uploads = boto3.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert all(not u["Key"].endswith("manifest.json") for u in uploads)


def test_a_rotated_database_url_is_picked_up_on_the_next_run(
    pg_server: LocalPostgres, heroku: HerokuFake, bucket: str, aws_env: dict[str, str]
) -> None:
    env = _env(aws_env, heroku)
    assert run_script("backup.py", "--app", APP, "--bucket", bucket, env=env).returncode == 0
    rotated = pg_server.create_database("rotated")
    load_pagila(rotated, rentals=500)
    heroku.apps[APP].config_vars["DATABASE_URL"] = rotated
    assert run_script("backup.py", "--app", APP, "--bucket", bucket, env=env).returncode == 0

    first, second = sorted(_manifests(bucket), key=lambda m: m["started_at"])
    assert first["tables"]["public.rental"] == 3000
    assert second["tables"]["public.rental"] == 500
    assert second["source"].endswith("/" + str(conninfo_to_dict(rotated)["dbname"]))


def test_list_shows_complete_and_failed_backups_with_their_age(
    heroku: HerokuFake, bucket: str, aws_env: dict[str, str], tmp_path: Path
) -> None:
    env = _env(aws_env, heroku)
    assert run_script("backup.py", "--app", APP, "--bucket", bucket, env=env).returncode == 0
    heroku.apps[APP].config_vars["DATABASE_URL"] = "postgres://127.0.0.1:1/x?connect_timeout=1"
    assert run_script("backup.py", "--app", APP, "--bucket", bucket, env=env).returncode == 1

    listing = run_script(
        "backup.py", "list", "--app", APP, "--bucket", bucket, "--json", str(tmp_path / "l.json"), env=env
    )

    assert listing.returncode == 0, listing.stderr
    rows = json.loads((tmp_path / "l.json").read_text())
    assert [r["state"] for r in rows] == ["failed", "complete"]  # newest first
    assert all(0 <= r["age_seconds"] < 120 for r in rows)
    assert "complete" in listing.stdout and "failed" in listing.stdout


def test_a_backup_publishes_its_age_and_size_metrics(
    heroku: HerokuFake, bucket: str, aws_env: dict[str, str]
) -> None:
    assert (
        run_script("backup.py", "--app", APP, "--bucket", bucket, env=_env(aws_env, heroku)).returncode == 0
    )
    metrics = boto3.client("cloudwatch").list_metrics(Namespace="Standby/Backups")["Metrics"]
    names = {m["MetricName"] for m in metrics if {"Name": "App", "Value": APP} in m["Dimensions"]}
    assert {"BackupAgeSeconds", "BackupSizeBytes", "BackupCompleted"} <= names
    # A read-only Heroku credential (scope read-protected) is enough: the backup only reads.
    assert heroku.requests and {r.method for r in heroku.requests} == {"GET"}


def test_a_failed_pg_dump_is_reported_with_its_error(pagila_url: str, tmp_path: Path) -> None:
    with psycopg.connect(pagila_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE locked_out (id int)")
        conn.execute("REVOKE ALL ON locked_out FROM PUBLIC")
    broken = tmp_path / "bin"
    broken.mkdir()
    real = find_tool("pg_dump")
    script = broken / "pg_dump"
    script.write_text(
        f"#!/bin/sh\n[ \"$1\" = --version ] && exec {real.path} --version\necho 'pg_dump: error: boom' >&2\nexit 1\n"
    )
    script.chmod(0o755)
    request = _request(pagila_url, tmp_path / "store")
    request = BackupRequest(**{**request.__dict__, "pg_dump": find_tool("pg_dump", broken)})
    with pytest.raises(BackupFailed, match="pg_dump failed: pg_dump: error: boom"):
        run_backup(request)
    failures = list((tmp_path / "store").rglob("failure.json"))
    assert len(failures) == 1
    assert not list((tmp_path / "store").rglob("manifest.json"))
    assert json.loads(failures[0].read_text())["phase"] == "dumping and uploading"


def test_without_bucket_the_standby_manifest_names_it(
    heroku: HerokuFake, bucket: str, aws_env: dict[str, str]
) -> None:
    from standby.standby_manifest import StandbyManifest, parameter_name

    secret = boto3.client("secretsmanager").create_secret(Name=f"heroku-url-{bucket}")["ARN"]
    manifest = StandbyManifest(
        app=APP,
        region="us-east-2",
        backup_bucket=bucket,
        backup_prefix="nightly",
        primary_database_secret=secret,
    )
    boto3.client("ssm").put_parameter(
        Name=parameter_name(APP), Value=manifest.to_json(), Type="String", Overwrite=True
    )

    result = run_script("backup.py", "--app", APP, env=_env(aws_env, heroku))

    assert result.returncode == 0, result.stderr
    assert any(k.startswith(f"nightly/{APP}/") and k.endswith("manifest.json") for k in _objects(bucket))
    # This manifest names a lock table nobody made: the backup runs all the same, and says what it lacked.
    assert "backing up without the backups' lease" in result.stderr
    # Kept for a cutover with Heroku's API dark, in the secret only, never in the output.
    url = heroku.apps[APP].config_vars["DATABASE_URL"]
    assert boto3.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"] == url
    assert url not in result.stdout + result.stderr


def test_without_bucket_or_manifest_the_error_says_what_to_do(
    heroku: HerokuFake, aws_env: dict[str, str]
) -> None:
    result = run_script("backup.py", "--app", "no-such-app", env=_env(aws_env, heroku))
    assert result.returncode == 2
    assert "no standby manifest at SSM /standby/no-such-app/manifest" in result.stderr
    assert "pass --bucket NAME" in result.stderr
