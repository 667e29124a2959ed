"""Backups from a follower: a real streaming standby (local/streaming_follower.py) of a dedicated server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from standby.backup import BackupRequest, run_backup
from standby.backup_source import Follower
from standby.backup_store import LocalStore
from standby.local.postgres import LocalPostgres
from standby.local.streaming_follower import StreamingFollower
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url


@pytest.fixture(scope="module")
def leader() -> Iterator[tuple[LocalPostgres, str]]:
    with LocalPostgres() as server:
        url = server.create_database("app")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
            conn.execute("INSERT INTO orders DEFAULT VALUES")
        yield server, url


@pytest.fixture(scope="module")
def streaming(leader: tuple[LocalPostgres, str]) -> Iterator[StreamingFollower]:
    with StreamingFollower(leader[0]) as standby:
        yield standby


@pytest.fixture
def follower(streaming: StreamingFollower) -> Iterator[StreamingFollower]:
    """The module's follower, replaying again after each test (one pauses it)."""
    yield streaming
    streaming.resume()


def _order(url: str) -> int:
    """A write on the primary: the commit a backup taken right after must hold."""
    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.execute("INSERT INTO orders DEFAULT VALUES RETURNING id").fetchone()[0])  # type: ignore[index]


def _backup(
    url: str, follower_url: str, tmp_path: Path, max_lag: float = 10.0, lines: list[str] | None = None
):  # type: ignore[no-untyped-def]
    follower = Follower(parse_database_url(follower_url), "HEROKU_POSTGRESQL_JADE", max_lag)
    request = BackupRequest(
        "shop", parse_database_url(url), LocalStore(tmp_path), find_tool("pg_dump"), follower=follower
    )
    return run_backup(request, progress=(lines if lines is not None else []).append)


def test_a_follower_that_keeps_up_is_backed_up_and_dated_by_the_primary(
    leader: tuple[LocalPostgres, str], follower: StreamingFollower, tmp_path: Path
) -> None:
    """The follower is behind when the backup starts: the backup waits for it to replay the commit made
    just before, and is dated by the primary's moment, not by when the follower got there."""
    _, url = leader
    follower_url = follower.url(conninfo_to_dict(url)["dbname"])
    follower.pause()
    newest = _order(url)
    asked = datetime.now(UTC)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(_backup, url, follower_url, tmp_path)
        time.sleep(1.5)
        caught_up = datetime.now(UTC)
        follower.resume()
        manifest = running.result()

    assert manifest.source_role == "follower" and "standby-follower-" in manifest.source
    assert manifest.tables["public.orders"] == newest  # it waited for the commit made just before
    assert manifest.source_lag_seconds >= 1.0
    assert asked <= manifest.snapshot_at < caught_up  # the primary's moment, not the follower's


def test_a_lagging_follower_makes_the_backup_read_the_primary(
    leader: tuple[LocalPostgres, str], follower: StreamingFollower, tmp_path: Path
) -> None:
    """Replay paused: the follower's clock says now, its data says earlier. The primary is read instead."""
    _, url = leader
    follower.pause()
    newest = _order(url)
    lines: list[str] = []

    manifest = _backup(url, follower.url(conninfo_to_dict(url)["dbname"]), tmp_path, max_lag=0.5, lines=lines)

    assert manifest.source_role == "primary" and "standby-follower-" not in manifest.source
    assert manifest.tables["public.orders"] == newest
    assert any("did not reach the primary's position within 0.5 s" in line for line in lines), lines


def test_a_copy_that_does_not_replay_or_a_follower_gone_is_passed_over(
    leader: tuple[LocalPostgres, str], tmp_path: Path
) -> None:
    server, url = leader
    copy = server.create_database("copy", template=conninfo_to_dict(url)["dbname"])
    lines: list[str] = []
    assert _backup(url, copy, tmp_path, lines=lines).source_role == "primary"
    assert "is not replaying a primary's WAL" in lines[0]
    gone = url.replace(conninfo_to_dict(url)["host"], str(tmp_path))  # no server there
    again: list[str] = []
    assert _backup(url, gone, tmp_path, lines=again).source_role == "primary"
    assert "does not answer" in again[0]


def test_a_follower_dump_that_fails_is_taken_again_from_the_primary(
    leader: tuple[LocalPostgres, str],
    follower: StreamingFollower,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a recovery conflict does to a long dump on a follower: the primary still answers."""
    from standby import backup
    from standby.dump_stream import StreamFailed

    _, url = leader
    follower_url = follower.url(conninfo_to_dict(url)["dbname"])
    real = backup._dump

    def conflict(request: BackupRequest, source, *args, **kwargs):  # type: ignore[no-untyped-def]
        if "standby-follower-" in source.redacted:
            raise StreamFailed("pg_dump failed: canceling statement due to conflict with recovery")
        return real(request, source, *args, **kwargs)

    monkeypatch.setattr(backup, "_dump", conflict)
    lines: list[str] = []
    manifest = _backup(url, follower_url, tmp_path, lines=lines)

    assert manifest.source_role == "primary"
    assert any("conflict with recovery" in line and "from the primary" in line for line in lines)
    failed = list(tmp_path.rglob("failure.json"))
    assert len(failed) == 1  # the follower's attempt is on record, as failed


def test_a_database_with_unlogged_tables_is_backed_up_from_the_primary(
    leader: tuple[LocalPostgres, str], follower: StreamingFollower, tmp_path: Path
) -> None:
    """A follower replicates no row of an unlogged table: its dump would silently lack them."""
    server, _ = leader
    url = server.create_database("logs")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE UNLOGGED TABLE hits AS SELECT generate_series(1, 5) AS id")
    lines: list[str] = []

    manifest = _backup(url, follower.url(conninfo_to_dict(url)["dbname"]), tmp_path, lines=lines)

    assert manifest.source_role == "primary" and manifest.tables["public.hits"] == 5
    assert "the primary has 1 unlogged table(s), which no follower holds" in lines[0]
