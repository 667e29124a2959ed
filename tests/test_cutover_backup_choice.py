"""The cutover restores a backup that verifies: a broken newest one is passed over, with its reason and
the data it costs, and the choice is pinned in the journal (tests/runbook_scene.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from standby import catalog, catalog_index
from standby.backup import BackupRequest, run_backup
from standby.backup_store import S3Store
from standby.commands import cutover
from standby.integrity import KmsMac
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url
from tests.runbook_scene import Scene
from tests.servers import count_tables

ACTOR = ["public.actor"]


def _mac(scene: Scene) -> KmsMac:
    return KmsMac(scene.manifest.backup_mac_key or "", scene.manifest.region)


def _second_backup(scene: Scene) -> tuple[str, str]:
    """(the first backup's id, a newer one's) with 25 more actors in the newer one."""
    store = S3Store(scene.manifest.backup_bucket)
    first = catalog.newest_complete(catalog_index.read_catalog(store, "backups", scene.app))
    assert first is not None
    with psycopg.connect(scene.source, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO actor (first_name, last_name) SELECT 'New', 'Er' FROM generate_series(1, 25)"
        )
    newer = run_backup(
        BackupRequest(
            scene.app, parse_database_url(scene.source), store, find_tool("pg_dump"), signer=_mac(scene)
        )
    )
    return first.backup_id, newer.backup_id


def _break(scene: Scene, backup_id: str, how: str) -> None:
    store = S3Store(scene.manifest.backup_bucket)
    base = f"backups/{scene.app}/{backup_id}/"
    dump = b"".join(store.read_stream(base + "dump"))
    if how == "missing":
        store.client.delete_object(Bucket=store.bucket, Key=base + "dump")
    elif how == "truncated":
        store.write_stream(base + "dump", [dump[: len(dump) // 2]])
    elif how == "flipped":  # same size, one byte changed: only the hash can tell
        at = len(dump) // 2
        store.write_stream(base + "dump", [dump[:at] + bytes([dump[at] ^ 0xFF]) + dump[at + 1 :]])
    elif how == "altered":  # rewritten with the bucket's rights, without the key: the MAC no longer matches
        doc = store.get_json(base + "manifest.json")
        doc["tables"]["public.actor"] = 999
        store.put_json(base + "manifest.json", doc)
    elif how == "unsigned":  # planted with the bucket's rights: a manifest nobody with the key wrote
        doc = store.get_json(base + "manifest.json")
        del doc["mac"]
        store.put_json(base + "manifest.json", doc)
    elif how == "future":  # written by the writer itself, with a clock gone wrong: signed, and still refused
        doc = store.get_json(base + "manifest.json")
        doc["snapshot_at"] = (datetime.now(UTC) + timedelta(days=2)).isoformat()
        store.put_json(base + "manifest.json", _mac(scene).sign(doc))


@pytest.mark.parametrize("how", ["missing", "truncated", "flipped", "future", "altered", "unsigned"])
def test_a_broken_newest_backup_is_passed_over_for_the_previous_one_and_its_cost_reported(
    scene: Scene, tmp_path: Path, how: str
) -> None:
    first, newer = _second_backup(scene)
    _break(scene, newer, how)
    scene.heroku.apps[scene.app].config_vars.pop("DATABASE_URL")  # no final backup to take instead

    run = scene.run(cutover.main, "--json", str(tmp_path / "r.json"))

    assert run.code == 0, run.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["facts"]["chosen_backup"] == report["facts"]["restored_backup"] == first
    assert count_tables(scene.standby, ACTOR) == {"public.actor": 200}  # the previous backup's data
    skipped = report["facts"]["skipped_backups"]
    assert [s["backup_id"] for s in skipped] == [newer]
    assert skipped[0]["rpo_cost_seconds"] > 0
    reason = {"missing": "its dump is missing", "truncated": "truncated", "flipped": "sha256",
              "future": "in the future", "altered": "its MAC does not match",
              "unsigned": "it carries no MAC"}[how]  # fmt: skip
    assert reason in skipped[0]["reason"]
    tables = catalog.select_backup(
        catalog_index.read_catalog(S3Store(scene.manifest.backup_bucket), "backups", scene.app), first
    )
    assert tables.manifest is not None
    assert report["verified"] is True and report["facts"]["verified_tables"] == len(tables.manifest.tables)


def test_the_operator_may_name_the_backup_and_the_cutover_keeps_to_it(scene: Scene, tmp_path: Path) -> None:
    first, _ = _second_backup(scene)

    run = scene.run(cutover.main, "--backup", first, "--json", str(tmp_path / "r.json"))

    assert run.code == 0, run.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["facts"]["final_backup"]  # Heroku answered: its last state is kept, but not restored
    assert report["facts"]["restored_backup"] == first
    assert count_tables(scene.standby, ACTOR) == {"public.actor": 200}


def test_a_named_backup_whose_dump_is_broken_is_refused_not_replaced(scene: Scene) -> None:
    first, _ = _second_backup(scene)
    _break(scene, first, "flipped")
    before = scene.records()

    run = scene.run(cutover.main, "--backup", first)

    assert run.code == 3, run.output
    assert "step restore failed" in run.output and "sha256" in run.output
    assert scene.records() == before and scene.mode() == "warm"
