"""Restore a verified backup into a new database, verify it, then make it the one the app uses.

The order is the safety: plan (pure) -> fetch and verify the dump against its manifest -> check the
archive against the pg_restore in use -> restore into a *new* database -> verify every table's row
count -> ANALYZE -> sanity checks -> switch, in one transaction that renames the databases. Until the
switch, the database in use is not touched; a failed or interrupted restore leaves only a database named
`<name>__restoring_<id>`, which the next run drops.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql

from standby.backup_store import BackupStore
from standby.catalog import BackupManifest, CatalogEntry, select_backup
from standby.errors import SafetyRefusal, StandbyError
from standby.pg_tools import PgTool, PgVersion, require_at_least
from standby.pg_url import Database

RESTORING: Final = "__restoring_"
BEFORE: Final = "__before_"
HASH_CHUNK: Final = 8 * 1024 * 1024
MAX_IDENT: Final = 63  # PostgreSQL's identifier length
SWITCH_ATTEMPTS: Final = 5

# TOC entries a Heroku dump carries that a database elsewhere refuses or already has:
# - COMMENT ON EXTENSION needs ownership of the extension (RDS refuses it);
# - the heroku_ext schema is created beforehand, so extensions restore into it whoever owns it.
_SKIPPED_TOC: Final = (
    re.compile(r"^\d+; \d+ \d+ COMMENT - EXTENSION "),
    re.compile(r"^\d+; \d+ \d+ SCHEMA - heroku_ext "),
)


class RestoreRefused(SafetyRefusal):
    """The backup, the archive or the restored data failed a check; the database in use is untouched."""


@dataclass(frozen=True)
class RestoredMarker:
    """What the database in use was restored from; kept as its database comment, so it moves with it."""

    backup_id: str
    snapshot_at: datetime
    restored_at: datetime

    def to_comment(self) -> str:
        return json.dumps(
            {
                "standby_restore": {
                    "backup_id": self.backup_id,
                    "snapshot_at": self.snapshot_at.isoformat(),
                    "restored_at": self.restored_at.isoformat(),
                }
            }
        )

    @classmethod
    def from_comment(cls, comment: str | None) -> RestoredMarker | None:
        try:
            doc = json.loads(comment or "")["standby_restore"]
            return cls(
                doc["backup_id"],
                datetime.fromisoformat(doc["snapshot_at"]),
                datetime.fromisoformat(doc["restored_at"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class RestorePlan:
    """What a restore will do. Built by `plan_restore`, a pure function of its inputs."""

    backup: BackupManifest
    target: str  # the database the app uses (its name)
    new_database: str
    previous_name: str  # what the database in use is renamed to at the switch
    skip_reason: str | None = None  # set when there is nothing to do (restore-ahead already current)

    def describe(self, now: datetime) -> list[str]:
        age = (now - self.backup.snapshot_at).total_seconds()
        if self.skip_reason:
            return [f"nothing to do: {self.skip_reason}"]
        return [
            f"backup      {self.backup.backup_id} (data from {self.backup.snapshot_at.isoformat()}, "
            f"{age / 60:.1f} min old; {self.backup.size / 1e6:.1f} MB; {len(self.backup.tables)} tables)",
            f"restore     into the new database {self.new_database}",
            "verify      sha256 and size before, every table's row count after, then ANALYZE",
            f"switch      {self.target} -> {self.previous_name} (kept), {self.new_database} -> {self.target}",
        ]


def _ident(base: str, suffix: str) -> str:
    return base[: MAX_IDENT - len(suffix)] + suffix


def plan_restore(
    catalog: list[CatalogEntry],
    target: str,
    *,
    choice: str = "latest",
    before: datetime | None = None,
    current: RestoredMarker | None = None,
    ahead: bool = False,
    now: datetime,
) -> RestorePlan:
    """Choose the backup and name the databases. With `ahead`, skip when `current` is as new."""
    entry = select_backup(catalog, choice, before)
    assert entry.manifest is not None
    manifest = entry.manifest
    skip = None
    if ahead and current is not None and current.snapshot_at >= manifest.snapshot_at:
        skip = (
            f"{target} already holds backup {current.backup_id}, as new as the newest ({manifest.backup_id})"
        )
    short = manifest.backup_id.split("-")[-1]
    return RestorePlan(
        backup=manifest,
        target=target,
        new_database=_ident(target, f"{RESTORING}{short}"),
        previous_name=_ident(target, f"{BEFORE}{now.strftime('%Y%m%d%H%M%S')}"),
        skip_reason=skip,
    )


@dataclass
class RestoreReport:
    backup_id: str
    target: str
    rpo_seconds: float  # age of the restored data at the switch
    phases: dict[str, float] = field(default_factory=dict)
    verified: bool = False
    switched: bool = False
    previous_database: str | None = None
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "target": self.target,
            "verified": self.verified,
            "switched": self.switched,
            "rpo_seconds": round(self.rpo_seconds, 1),
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "previous_database": self.previous_database,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class RestoreRequest:
    store: BackupStore
    server: Database  # a connection to the target server's maintenance database
    target: str  # the name of the database the app uses
    pg_restore: PgTool
    jobs: int = os.cpu_count() or 2
    sanity_sql: tuple[str, ...] = ()
    scratch: Path | None = None  # where the dump is downloaded


Progress = Callable[[str], None]


class _Phases:
    def __init__(self, report: RestoreReport, progress: Progress) -> None:
        self.report = report
        self.progress = progress

    @contextmanager
    def __call__(self, name: str, line: str) -> Iterator[None]:
        self.progress(line)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.report.phases[name] = time.perf_counter() - start


def read_marker(server: Database, target: str) -> RestoredMarker | None:
    with server.connect(autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [target]
        ).fetchone()
    return RestoredMarker.from_comment(row[0]) if row else None


def execute_restore(
    plan: RestorePlan, request: RestoreRequest, progress: Progress = lambda _: None
) -> RestoreReport:
    """Carry out `plan`. Raises RestoreRefused, leaving the database in use as it was, on any failed check."""
    manifest = plan.backup
    report = RestoreReport(manifest.backup_id, plan.target, rpo_seconds=0.0)
    if plan.skip_reason:
        report.skipped = plan.skip_reason
        report.rpo_seconds = (datetime.now(UTC) - manifest.snapshot_at).total_seconds()
        return report
    phase = _Phases(report, progress)
    _drop_leftovers(request, plan.target, progress)
    with tempfile.TemporaryDirectory(prefix="standby-restore-", dir=request.scratch) as scratch:
        with phase("download", f"downloading {manifest.size / 1e6:.1f} MB from {request.store.describe()}"):
            dump = request.store.fetch(manifest.dump_key, Path(scratch))
        with phase("verify", "verifying size and sha256 against the manifest"):
            verify_dump(dump, manifest)
            toc = _restore_list(request.pg_restore, dump, manifest)
        try:
            with phase("restore", f"restoring into {plan.new_database} with {request.jobs} jobs"):
                _create_database(request.server, plan.new_database)
                _pg_restore(request, dump, toc, plan.new_database, Path(scratch))
            new_db = request.server.with_dbname(plan.new_database)
            with phase("verify_counts", f"comparing the row counts of {len(manifest.tables)} tables"):
                verify_counts(new_db, manifest.tables)
            with phase("analyze", "ANALYZE"), new_db.connect(autocommit=True) as conn:
                conn.execute("ANALYZE")
            with phase("sanity", f"{len(request.sanity_sql)} sanity checks"):
                _sanity(new_db, request.sanity_sql)
        except BaseException:
            _drop_database(request.server, plan.new_database)
            raise
        report.verified = True
        with phase("switch", f"switching {plan.target} to the restored database"):
            report.previous_database = _switch(request.server, plan, manifest)
        report.switched = True
    report.rpo_seconds = (datetime.now(UTC) - manifest.snapshot_at).total_seconds()
    return report


def verify_dump(dump: Path, manifest: BackupManifest) -> None:
    size = dump.stat().st_size
    if size != manifest.size:
        raise RestoreRefused(
            f"the dump of backup {manifest.backup_id} is {size} bytes, its manifest says {manifest.size}: "
            "it is truncated or was replaced. Restore another backup (`--backup ID`)."
        )
    digest = hashlib.sha256()
    with dump.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != manifest.sha256:
        raise RestoreRefused(
            f"the dump of backup {manifest.backup_id} does not match its manifest's sha256: it was altered "
            "after the backup. Restore another backup (`--backup ID`) and investigate the bucket."
        )


def verify_counts(database: Database, expected: dict[str, int]) -> None:
    wrong = []
    with database.connect() as conn:
        for name, rows in sorted(expected.items()):
            schema, _, table = name.partition(".")
            query = sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            try:
                row = conn.execute(query).fetchone()
                found = int(row[0]) if row else -1
            except psycopg.errors.UndefinedTable:
                conn.rollback()
                found = -1
            if found != rows:
                wrong.append(f"{name}: {'missing' if found < 0 else found} instead of {rows}")
    if wrong:
        listed = "; ".join(wrong[:5]) + (f"; and {len(wrong) - 5} more" if len(wrong) > 5 else "")
        raise RestoreRefused(
            f"the restored data does not match the backup's manifest ({listed}). Nothing was switched."
        )


def _restore_list(pg_restore: PgTool, dump: Path, manifest: BackupManifest) -> str:
    """The archive's table of contents, minus what a database outside Heroku refuses."""
    require_at_least(
        pg_restore,
        PgVersion.parse(manifest.pg_dump_version),
        f"an archive written by pg_dump {manifest.pg_dump_version}",
    )
    result = subprocess.run([str(pg_restore.path), "--list", str(dump)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RestoreRefused(
            f"{pg_restore.path} cannot read the archive of backup {manifest.backup_id}: "
            f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'unknown error'}."
        )
    return "".join(
        line + "\n" for line in result.stdout.splitlines() if not any(p.match(line) for p in _SKIPPED_TOC)
    )


def _pg_restore(request: RestoreRequest, dump: Path, toc: str, dbname: str, scratch: Path) -> None:
    listing = scratch / "toc.list"
    listing.write_text(toc)
    with request.server.with_dbname(dbname).connect(autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS heroku_ext")
    command = [
        str(request.pg_restore.path),
        f"--jobs={max(1, request.jobs)}",
        "--no-owner",  # the standby's roles are not Heroku's
        "--no-acl",
        "--exit-on-error",
        f"--use-list={listing}",
        f"--dbname={request.server.with_dbname(dbname).conninfo}",
        str(dump),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **request.server.env})
    if result.returncode != 0:
        lines = [
            line for line in result.stderr.splitlines() if "error" in line.lower()
        ] or result.stderr.splitlines()
        raise StandbyError(f"pg_restore failed: {lines[0] if lines else f'exit code {result.returncode}'}")


def _sanity(database: Database, checks: tuple[str, ...]) -> None:
    with database.connect() as conn:
        for check in checks:
            row = conn.execute(check.encode()).fetchone()
            if not row or row[0] is not True:
                raise RestoreRefused(f"sanity check failed (it must return true): {check}")


def _create_database(server: Database, name: str) -> None:
    with server.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop_database(server: Database, name: str) -> None:
    with server.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _drop_leftovers(request: RestoreRequest, target: str, progress: Progress) -> None:
    """Drop what crashed or failed restores left: their databases were never in use."""
    with request.server.connect(autocommit=True) as conn:
        pattern = target[: MAX_IDENT - len(RESTORING) - 6] + RESTORING + "%"
        names = [
            r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [pattern])
        ]
    for name in names:
        progress(f"dropping {name}, left by an interrupted restore")
        _drop_database(request.server, name)


def _switch(server: Database, plan: RestorePlan, manifest: BackupManifest) -> str | None:
    """Swap names in one transaction: the app's next connection finds the restored data."""
    marker = RestoredMarker(manifest.backup_id, manifest.snapshot_at, datetime.now(UTC))
    with server.connect(autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [plan.target]).fetchone()
        renames = [(plan.target, plan.previous_name)] if exists else []
        renames.append((plan.new_database, plan.target))
        for attempt in range(SWITCH_ATTEMPTS):
            # Sessions on the old database would keep using it after the rename; end them. An app that
            # reconnects in between makes the rename fail; then end them again.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [plan.target],
            )
            try:
                with conn.transaction():
                    for old, new in renames:
                        conn.execute(
                            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                                sql.Identifier(old), sql.Identifier(new)
                            )
                        )
                    conn.execute(
                        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                            sql.Identifier(plan.target), sql.Literal(marker.to_comment())
                        )
                    )
                break
            except psycopg.errors.ObjectInUse:
                if attempt + 1 == SWITCH_ATTEMPTS:
                    raise RestoreRefused(
                        f"{plan.target} kept being reconnected to during the switch; stop the app's services and "
                        f"run again. The restored database {plan.new_database} is verified and was kept."
                    ) from None
                time.sleep(0.2 * (attempt + 1))
    return plan.previous_name if exists else None
