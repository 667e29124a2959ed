"""Choosing a backup is a pure function of the catalog: tested on fixture catalogs, no storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from standby.catalog import (
    BackupManifest,
    BackupState,
    ManifestError,
    NoCompleteBackup,
    backup_time,
    build_catalog,
    new_backup_id,
    select_backup,
)
from standby.errors import ConfigError, SafetyRefusal

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def _id(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y%m%dT%H%M%SZ") + "-abcdef"


def _manifest(minutes: int) -> BackupManifest:
    at = T0 + timedelta(minutes=minutes)
    return BackupManifest(
        backup_id=_id(minutes),
        app="acme",
        dump_key=f"backups/acme/{_id(minutes)}/dump",
        size=100,
        sha256="0" * 64,
        server_version="16.4",
        pg_dump_version="18.1",
        started_at=at,
        snapshot_at=at + timedelta(seconds=1),
        finished_at=at + timedelta(seconds=30),
        tables={"public.t": 1},
        source="u@h/db",
    )


def _catalog() -> list:  # type: ignore[type-arg]
    """0: complete, 15: complete, 30: failed, 45: incomplete (dump, no manifest), plus a stray key."""
    keys = [f"{_id(m)}/dump" for m in (0, 15, 30, 45)] + [f"{_id(m)}/manifest.json" for m in (0, 15)]
    keys += [f"{_id(30)}/failure.json", "README.txt", "not-an-id/dump"]
    return build_catalog(
        keys, {_id(0): _manifest(0), _id(15): _manifest(15)}, {_id(30): {"phase": "x", "error": "y"}}
    )


def test_the_catalog_groups_keys_by_backup_and_knows_their_state() -> None:
    catalog = _catalog()
    assert [(e.backup_id, e.state) for e in catalog] == [
        (_id(0), BackupState.COMPLETE),
        (_id(15), BackupState.COMPLETE),
        (_id(30), BackupState.FAILED),
        (_id(45), BackupState.INCOMPLETE),
    ]


def test_latest_is_the_newest_complete_backup_never_a_failed_or_incomplete_one() -> None:
    assert select_backup(_catalog()).backup_id == _id(15)


def test_before_a_time_picks_the_newest_backup_whose_data_is_older() -> None:
    assert select_backup(_catalog(), before=T0 + timedelta(minutes=10)).backup_id == _id(0)
    with pytest.raises(NoCompleteBackup, match="no complete backup with data from before"):
        select_backup(_catalog(), before=T0)


def test_a_backup_can_be_chosen_by_id_only_if_complete() -> None:
    assert select_backup(_catalog(), _id(0)).backup_id == _id(0)
    with pytest.raises(SafetyRefusal, match="incomplete: it has no manifest"):
        select_backup(_catalog(), _id(45))
    with pytest.raises(SafetyRefusal, match="failed"):
        select_backup(_catalog(), _id(30))
    with pytest.raises(ConfigError, match="no backup 'nope'"):
        select_backup(_catalog(), "nope")


def test_an_empty_catalog_says_to_run_a_backup_first() -> None:
    with pytest.raises(NoCompleteBackup, match=r"Run `python scripts/backup.py` first"):
        select_backup([])


def test_age_is_measured_from_the_snapshot() -> None:
    entry = select_backup(_catalog())
    assert entry.age(T0 + timedelta(minutes=20)) == pytest.approx(5 * 60 - 1)


def test_backup_ids_sort_by_time_and_carry_it() -> None:
    first, second = new_backup_id(T0), new_backup_id(T0 + timedelta(seconds=1))
    assert first < second
    assert backup_time(first) == T0
    assert backup_time("garbage") is None


def test_a_manifest_round_trips_and_refuses_unknown_formats_or_missing_fields() -> None:
    manifest = _manifest(0)
    assert BackupManifest.from_json(manifest.to_json()) == manifest
    with pytest.raises(ManifestError, match="format 99"):
        BackupManifest.from_json({**manifest.to_json(), "format": 99})
    broken = manifest.to_json()
    del broken["sha256"]
    with pytest.raises(ManifestError, match="incomplete or malformed"):
        BackupManifest.from_json(broken)
    with pytest.raises(ManifestError, match="not a JSON object"):
        BackupManifest.from_json(["x"])


# --- the restore plan is a pure function too ------------------------------------------------------


def test_the_restore_plan_names_a_new_database_and_where_the_old_one_goes() -> None:
    from standby.restore import plan_restore

    plan = plan_restore(_catalog(), "app", now=T0 + timedelta(hours=1))
    assert plan.backup.backup_id == _id(15)
    assert plan.new_database == "app__restoring_abcdef"
    assert plan.previous_name == "app__before_20261122110000"
    assert plan.skip_reason is None
    assert any("switch      app -> app__before_" in line for line in plan.describe(T0 + timedelta(hours=1)))


def test_restore_ahead_skips_when_the_target_already_holds_the_newest_backup() -> None:
    from standby.restore import RestoredMarker, plan_restore

    newest = _manifest(15)
    current = RestoredMarker(newest.backup_id, newest.snapshot_at, T0 + timedelta(minutes=20))
    assert plan_restore(_catalog(), "app", ahead=True, current=current, now=T0).skip_reason
    older = RestoredMarker(_id(0), _manifest(0).snapshot_at, T0)
    assert plan_restore(_catalog(), "app", ahead=True, current=older, now=T0).skip_reason is None
    assert plan_restore(_catalog(), "app", ahead=False, current=current, now=T0).skip_reason is None


def test_database_names_stay_within_postgres_63_characters() -> None:
    from standby.restore import plan_restore

    plan = plan_restore(_catalog(), "a" * 63, now=T0)
    assert len(plan.new_database) <= 63 and plan.new_database.endswith("__restoring_abcdef")
    assert len(plan.previous_name) <= 63


def test_backups_started_in_the_same_second_are_ordered_by_their_precise_start() -> None:
    early, late = "20261122T100000Z-ffffff", "20261122T100000Z-000000"  # ids alone would sort the other way
    manifest = _manifest(0)
    complete = BackupManifest(
        **{**manifest.__dict__, "backup_id": early, "started_at": T0.replace(microsecond=100)}
    )
    failure = {"started_at": T0.replace(microsecond=900).isoformat(), "error": "boom"}
    catalog = build_catalog(
        [f"{early}/manifest.json", f"{late}/failure.json"], {early: complete}, {late: failure}
    )
    assert [e.backup_id for e in catalog] == [early, late]
