"""Parallel backups: several pg_dump streams from one snapshot, restored in parallel, every file checked."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from standby.backup import BackupFailed, BackupRequest, run_backup
from standby.backup_store import LocalStore
from standby.catalog import DATA, SCHEMA, BackupManifest, ManifestError, Section, check_belongs
from standby.catalog_index import read_catalog
from standby.commands import restore
from standby.local.postgres import LocalPostgres
from standby.parallel_dump import GIB, PARALLEL_FROM, available_cpus, choose_streams, plan_streams
from standby.pg_tools import PIPE_SIZE, find_tool, widen_pipe
from standby.pg_url import parse_database_url
from tests.servers import writes_going_on

APP = "acme-shop"

# Names pg_dump's patterns would read as wildcards or split at a dot, unless quoted exactly.
ODD = '''
CREATE SCHEMA "Odd *";
CREATE TABLE "Odd *"."a.b ""c""" (id serial PRIMARY KEY, body text NOT NULL);
INSERT INTO "Odd *"."a.b ""c""" (body) SELECT 'row ' || g FROM generate_series(1, 500) g;
CREATE TABLE public."payment?" (id int);  -- a "?" wildcard would also match public.payment_p2022_01 ...
INSERT INTO public."payment?" VALUES (1), (2);
SELECT lo_from_bytea(0, 'a large object, carried by data-1');
'''

# Every table's rows, every sequence's value and every large object, as one comparable value.
FINGERPRINT = """
SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_heroku') ORDER BY 1
"""


def _fingerprint(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        found: dict[str, Any] = {}
        for (table,) in conn.execute(FINGERPRINT).fetchall():
            row = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
            ).fetchone()
            found[table] = row
        found["sequences"] = conn.execute(
            "SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2"
        ).fetchall()
        found["large objects"] = conn.execute(
            "SELECT md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY 1"
        ).fetchall()
    return found  # fmt: skip


def _odd_pagila(pg_server: LocalPostgres, pagila_template: str) -> str:
    url = pg_server.create_database("heroku", template=pagila_template)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ODD.encode())
    return url


@pytest.fixture
def source_url(pg_server: LocalPostgres, pagila_template: str) -> str:
    return _odd_pagila(pg_server, pagila_template)


@pytest.fixture(scope="module")
def backed_up(
    pg_server: LocalPostgres, pagila_template: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, BackupManifest]:
    """One parallel backup of the module's source; each test damages its own copy of the store."""
    url = _odd_pagila(pg_server, pagila_template)
    root = tmp_path_factory.mktemp("parallel-store")
    return url, root, _backup(url, LocalStore(root))


@pytest.fixture
def parallel_backup(
    backed_up: tuple[str, Path, BackupManifest], tmp_path: Path
) -> tuple[LocalStore, BackupManifest]:
    _, root, manifest = backed_up
    shutil.copytree(root, tmp_path / "store")
    return LocalStore(tmp_path / "store"), manifest


def _backup(url: str, store: Any, streams: int | None = 3) -> BackupManifest:
    return run_backup(
        BackupRequest(APP, parse_database_url(url), store, find_tool("pg_dump"), streams=streams)
    )


def _restore(store: LocalStore, target: str) -> int:
    return restore.main(["--app", APP, "--folder", str(store.root), "--target-url", target, "--yes"])


def test_a_parallel_backup_restores_to_the_same_rows_sequences_and_large_objects(
    pg_server: LocalPostgres,
    backed_up: tuple[str, Path, BackupManifest],
    parallel_backup: tuple[LocalStore, BackupManifest],
) -> None:
    source_url = backed_up[0]
    store, manifest = parallel_backup

    folder = manifest.dump_key.rsplit("/", 1)[0] + "/"
    assert manifest.parallel and manifest.dump_key == folder + SCHEMA
    assert [f.key for f in manifest.files] == [folder + SCHEMA, *(f"{folder}{DATA}{n}" for n in (1, 2, 3))]
    assert manifest.size == sum(f.size for f in manifest.files)
    stored = json.loads((store.root / folder / "manifest.json").read_text())
    assert stored["format"] == 2  # a standby from before parallel backups asks for an upgrade
    with pytest.raises(ManifestError, match="Upgrade standby"):
        BackupManifest.from_json({**manifest.to_json(), "format": 1})  # files under the old format: altered
    named = [t for f in manifest.files for t in f.tables]
    assert sorted(named) == sorted(manifest.tables) and len(set(named)) == len(named)  # each table once
    assert manifest.tables['Odd *.a.b "c"'] == 500

    target = pg_server.url(f"standby_{time.time_ns()}")
    assert _restore(store, target) == 0
    assert _fingerprint(target) == _fingerprint(source_url)


def test_every_stream_is_the_same_snapshot_while_writes_go_on(
    pg_server: LocalPostgres, source_url: str, tmp_path: Path
) -> None:
    """Rows go into tables of different streams all along: each stream holds exactly what the counts
    saw (the restore compares every table's rows), and the source moved on past it."""
    store = LocalStore(tmp_path / "store")

    with writes_going_on(source_url) as written:
        before = written[0]
        manifest = _backup(source_url, store)
        during = written[0] - before

    assert during > 0, "the writer must have been writing while the backup ran"
    streams = {t: f.key for f in manifest.files for t in f.tables}
    assert streams["public.rental"] != streams["public.actor"]
    target = pg_server.url(f"standby_{time.time_ns()}")
    assert _restore(store, target) == 0  # every table's rows checked against the counts
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM rental").fetchone() == (manifest.tables["public.rental"],)
    with psycopg.connect(source_url) as conn:
        assert conn.execute("SELECT count(*) FROM rental").fetchone()[0] > manifest.tables["public.rental"]  # type: ignore[index]


def _damage(path: Path) -> None:
    body = bytearray(path.read_bytes())
    body[len(body) // 2] ^= 0xFF
    path.write_bytes(bytes(body))


@pytest.mark.parametrize("damage", ["data file altered", "schema altered", "data file missing"])
def test_a_damaged_or_missing_file_is_refused_and_nothing_is_switched(
    pg_server: LocalPostgres,
    parallel_backup: tuple[LocalStore, BackupManifest],
    damage: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, manifest = parallel_backup
    data = store.root / manifest.files[2].key
    if damage == "data file altered":
        _damage(data)
    elif damage == "schema altered":
        _damage(store.root / manifest.dump_key)
    else:
        data.unlink()
    target = pg_server.url(f"standby_{time.time_ns()}")

    assert _restore(store, target) == 3
    said = capsys.readouterr().err
    assert "data-2" in said or "schema" in said
    assert ("missing" if "missing" in damage else "sha256") in said
    with psycopg.connect(pg_server.admin_url) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database")]
    assert not [n for n in names if n.startswith(target.rsplit("/", 1)[-1])]  # nothing restored, nothing left


class FailingStream(LocalStore):
    """A store that refuses one stream's upload midway."""

    def write_stream(self, key: str, parts: Any) -> int:
        if key.endswith(f"{DATA}2"):
            next(iter(parts))
            raise OSError("the disk is full")
        return super().write_stream(key, parts)


def test_one_failed_stream_fails_the_backup_with_no_manifest(source_url: str, tmp_path: Path) -> None:
    store = FailingStream(tmp_path / "store")
    with pytest.raises(BackupFailed, match="the disk is full"):
        _backup(source_url, store)
    entries = read_catalog(store, "backups", APP)
    assert [e.state.value for e in entries] == ["failed"]
    assert not list(store.root.rglob("manifest.json"))


def test_a_manifest_whose_files_do_not_add_up_is_not_a_backup(
    parallel_backup: tuple[LocalStore, BackupManifest],
) -> None:
    _, manifest = parallel_backup
    base = "backups/acme-shop/"
    now = manifest.finished_at
    check_belongs(manifest, manifest.backup_id, APP, base, now)
    dropped = BackupManifest.from_json(
        {**manifest.to_json(), "files": [f.to_json() for f in manifest.files[:-1]]}
    )
    with pytest.raises(ManifestError, match="does not add up"):
        check_belongs(dropped, manifest.backup_id, APP, base, now)
    elsewhere = manifest.files[1].to_json() | {"key": "backups/other/data-1"}
    moved = BackupManifest.from_json({**manifest.to_json(), "files": [manifest.files[0].to_json(), elsewhere,
                                                                      *[f.to_json() for f in manifest.files[2:]]]})  # fmt: skip
    with pytest.raises(ManifestError, match="not a parallel backup's"):
        check_belongs(moved, manifest.backup_id, APP, base, now)
    assert manifest.files[0].section is Section.SCHEMA


def test_streams_are_planned_largest_first_into_the_lightest() -> None:
    sizes = {("public", "events"): 900, ("public", "orders"): 500, ("public", "users"): 400, ("s", "tiny"): 1}
    assert plan_streams(sizes, 2) == [
        [("public", "events"), ("s", "tiny")],
        [("public", "orders"), ("public", "users")],
    ]
    assert plan_streams(sizes, 3) == [
        [("public", "events")],
        [("public", "orders")],
        [("public", "users"), ("s", "tiny")],
    ]
    # Past the names a command line carries, the smallest tables go to data-1 (named by exclusion).
    assert plan_streams(sizes, 3, max_named=1) == [
        [("public", "events"), ("public", "users"), ("s", "tiny")],
        [("public", "orders")],
    ]
    assert plan_streams({("public", "only"): 10}, 4) == [[("public", "only")]]  # no empty stream


def test_the_layout_is_chosen_by_size_and_cores_and_can_be_forced(tmp_path: Path) -> None:
    assert choose_streams(None, PARALLEL_FROM - 1, cpus=8) == 1
    assert choose_streams(None, PARALLEL_FROM, cpus=8) == 4
    assert choose_streams(None, PARALLEL_FROM, cpus=2) == 2
    assert choose_streams(None, 100 * GIB, cpus=1) == 1  # one core compresses one stream at a time
    assert choose_streams(1, 100 * GIB) == 1
    assert choose_streams(3, 1) == 3
    quota = tmp_path / "cpu.max"
    quota.write_text("200000 100000\n")  # what ECS sets for two vCPU, whatever the host has
    assert available_cpus(quota) == 2
    quota.write_text("max 100000\n")  # no quota: the cores this process may run on
    assert available_cpus(quota) == len(os.sched_getaffinity(0))


def test_a_database_of_one_table_makes_a_single_stream_backup(
    pg_server: LocalPostgres, tmp_path: Path
) -> None:
    url = pg_server.create_database("one_table")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT generate_series(1, 10) AS id")
    manifest = _backup(url, LocalStore(tmp_path / "store"), streams=4)
    assert not manifest.parallel and manifest.dump_key.endswith("/dump")


def test_the_pipes_to_and_from_the_postgresql_programs_hold_a_mebibyte(tmp_path: Path) -> None:
    """pg_dump and pg_restore run on while our end of their pipe waits, instead of every 64 KiB."""
    with subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as process:
        assert process.stdin is not None and process.stdout is not None
        for pipe in (process.stdin, process.stdout):
            assert fcntl.fcntl(pipe.fileno(), fcntl.F_GETPIPE_SZ) < PIPE_SIZE
            widen_pipe(pipe)
            assert fcntl.fcntl(pipe.fileno(), fcntl.F_GETPIPE_SZ) == PIPE_SIZE
        process.stdin.close()
    with (tmp_path / "not-a-pipe").open("wb") as file:
        widen_pipe(file)  # nothing to widen, and no error: the program still runs, at the usual pace
