"""Restore a verified backup into a new database, verify it, then make it the one the app uses.

Plan (pure) -> check the pg_restore against the archive -> download the dump, hashed on the way, and
refuse it if its size or sha256 differ from the manifest -> load it into a *new* database with parallel
jobs, each table's indexes built as soon as its rows are in (a parallel backup's data files load as they
arrive instead, and its indexes wait until every file is checked) -> every table's row count, and
ANALYZE -> sanity checks -> switch, in one transaction that renames the databases.

Nothing reaches the database in use before the switch, and the switch comes after every check. A failed
or interrupted restore leaves only a database named `<name>__restoring_<id>`, which the next run drops.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import psycopg
from psycopg import sql

from standby.backup_store import BackupStore
from standby.catalog import BackupManifest, CatalogEntry, DumpFile, Section, dump_problem, select_backup
from standby.dump_transfer import DumpTransfer
from standby.errors import SafetyRefusal, StandbyError
from standby.loader_role import LoaderRole, Owner, drop_role, leftover_roles
from standby.parallel_dump import available_cpus
from standby.pg_tools import (
    PgTool,
    PgVersion,
    ToolVersionError,
    require_at_least,
    supports_compression,
    widen_pipe,
)
from standby.pg_url import Database

RESTORING: Final = "__restoring_"
BEFORE: Final = "__before_"
TOC_PROBE: Final = 1024 * 1024  # bytes read before trying to list the archive
MAX_IDENT: Final = 63  # PostgreSQL's identifier length
SWITCH_ATTEMPTS: Final = 5
KEEP_PREVIOUS: Final = 1
KEEP_ALL: Final = 1_000_000  # previous databases kept when the database replaced was the live one
DUMP_TO_DATABASE: Final = 5  # a gzip-1 custom dump of a database with its indexes is about a fifth of it
HEADROOM: Final = 1.2  # WAL, temporary files and growth while the restore runs
SANITY_TIMEOUT: Final = "60s"

# TOC entries a Heroku dump carries that a database elsewhere refuses or already has:
# - COMMENT ON EXTENSION needs ownership of the extension (RDS refuses it);
# - the heroku_ext schema is created beforehand, so extensions restore into it whoever owns it.
_SKIPPED_TOC: Final = (
    re.compile(r"^\d+; \d+ \d+ COMMENT - EXTENSION "),
    re.compile(r"^\d+; \d+ \d+ SCHEMA - heroku_ext "),
)


class RestoreRefused(SafetyRefusal):
    """The backup, the archive or the restored data failed a check; the database in use is untouched."""


class DumpRefused(RestoreRefused):
    """The dump itself is broken (size, hash, unreadable archive): another backup may stand in for it."""


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
    dropped: list[str] = field(default_factory=list)  # older previous databases dropped after the switch

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "target": self.target,
            "verified": self.verified,
            "switched": self.switched,
            "rpo_seconds": round(self.rpo_seconds, 1),
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "previous_database": self.previous_database,
            "dropped": self.dropped,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class RestoreRequest:
    store: BackupStore
    server: Database  # a connection to the target server's maintenance database
    target: str  # the name of the database the app uses
    pg_restore: PgTool
    jobs: int = field(default_factory=available_cpus)  # a container counts its CPU quota
    sanity_sql: tuple[str, ...] = ()
    scratch: Path | None = None  # where the dump is downloaded
    keep_previous: int = KEEP_PREVIOUS  # databases the switches renamed away that are kept, newest first
    free_bytes: int | None = None  # free storage on the target server, when known (RDS: FreeStorageSpace)
    before_switch: Callable[[], None] = lambda: None  # a last check, right before the switch (the lock held)
    owner: Owner | None = None  # the app's role, which gets the restored data; None: the server's user


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
    with server.connect(autocommit=True, connect_timeout=10) as conn:
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
    check_room(manifest, request)
    require_at_least(
        request.pg_restore,
        PgVersion.parse(manifest.pg_dump_version),
        f"an archive written by pg_dump {manifest.pg_dump_version}",
    )
    require_decompression(request.pg_restore, manifest)
    problem = dump_problem(request.store, manifest)  # one look per file before any work
    if problem:
        raise DumpRefused(
            f"backup {manifest.backup_id} cannot be restored: {problem}. Restore another (`--backup ID`)."
        )
    with tempfile.TemporaryDirectory(prefix="standby-restore-", dir=request.scratch) as scratch:
        files = manifest.dump_files()
        progress(
            f"downloading {manifest.size / 1e6:.1f} MB in {len(files)} file(s) from {request.store.describe()}"
        )
        start = time.perf_counter()
        transfers: list[DumpTransfer] = []
        loaders: list[subprocess.Popen[bytes]] = []
        role: LoaderRole | None = None
        try:
            # Every file downloads from the start, beside the others: the data streams are on disk, or on
            # their way, by the time the schema is in.
            for file in files:
                transfers.append(DumpTransfer(request.store, file.key, Path(scratch)).start())
            with phase("read_toc", "reading the archive's table of contents"):
                toc = Path(scratch) / "toc.list"
                toc.write_text(_restore_list(request.pg_restore, transfers[0], files[0], manifest))
            _create_database(request.server, plan.new_database)
            # The archive's SQL runs as a role that owns this database only (standby.loader_role).
            # pg_restore --jobs N holds N + 1 sessions, each data file's pg_restore one, the checks one more.
            sessions = max(request.jobs, len(files)) + 2
            role = LoaderRole.create(request.server, plan.new_database, sessions)
            new_db = role.connection(request.server, plan.new_database)
            with new_db.connect(autocommit=True) as conn:
                conn.execute("CREATE SCHEMA IF NOT EXISTS heroku_ext")  # extensions restore into it
            one_file = len(files) == 1
            loading = (
                ("restore", f"loading {plan.new_database}: schema, data, indexes, with {request.jobs} jobs")
                if one_file
                else ("restore_data", f"loading {plan.new_database}'s data files, each as it arrives")
            )
            counted = CountsAsLoaded(new_db, manifest.tables, toc.read_text())
            with phase(*loading), counted:
                feeding = _load_data(request, new_db, toc, manifest, transfers, loaders, counted)
                for transfer in transfers:
                    transfer.wait()
                report.phases["download"] = max(t.finished_at for t in transfers) - start
                for file, transfer in zip(files, transfers, strict=True):
                    verify_transfer(transfer, file, manifest)  # refuses here, before anything can be switched
                for thread in feeding:
                    thread.join()
                for loader in loaders:
                    _finish(loader)
            if not one_file:  # only once every data file is checked
                with phase("restore_indexes", f"indexes, constraints and triggers with {request.jobs} jobs"):
                    post_data = ["--section=post-data", f"--jobs={request.jobs}"]
                    _finish(_start_pg_restore(request, new_db, toc, post_data, transfers[0].path))
            with phase("verify_counts", f"comparing {len(manifest.tables)} row counts, and ANALYZE"):
                _verify_and_analyze(new_db, manifest.tables, request.jobs, counted.matching())
            with phase("sanity", f"{len(request.sanity_sql)} sanity checks"):
                _sanity(new_db, request.sanity_sql)
            role.hand_over(request.server, plan.new_database, request.owner)
        except BaseException:
            for transfer in transfers:  # a refused restore must not keep downloading beside the next one
                transfer.cancel()
            for loader in loaders:
                if loader.poll() is None:
                    loader.kill()
                    loader.wait()
            drop_database(request.server, plan.new_database)
            if role is not None:
                # Best effort: while the database is still there the role owns it, and the next restore's
                # clean-up drops both (_drop_leftovers); the failure being raised matters more.
                with contextlib.suppress(psycopg.Error):
                    drop_role(request.server, role.name)
            raise
        report.verified = True
        request.before_switch()
        with phase("switch", f"switching {plan.target} to the restored database"):
            report.previous_database = _switch(request.server, plan, manifest)
        report.switched = True
        report.dropped = drop_previous(request.server, plan.target, request.keep_previous, progress)
    report.rpo_seconds = (datetime.now(UTC) - manifest.snapshot_at).total_seconds()
    return report


def _load_data(
    request: RestoreRequest,
    database: Database,
    toc: Path,
    manifest: BackupManifest,
    transfers: list[DumpTransfer],
    loaders: list[subprocess.Popen[bytes]],
    counted: CountsAsLoaded,
) -> list[threading.Thread]:
    """Load the rows; pg_restores still running go into `loaders`, with the threads that feed them.

    One dump: whole and checked first, then all of it in one `pg_restore --jobs`, as a raw restore runs:
    its workers take a table's data each, and build a table's indexes as soon as its rows are in, beside
    the other tables still loading. The download is far quicker than the load (on S3, or from a folder),
    so this wins back more than waiting for the last byte costs, and no SQL from a file that is not the
    one backed up ever runs. A parallel backup: its schema, whole and checked first (it is small, and it
    is SQL), then every data file into its own pg_restore at once, each as it arrives; its indexes wait
    until every file is checked.
    """
    files = manifest.dump_files()
    if len(files) == 1:
        dump = transfers[0]
        dump.wait()
        verify_transfer(dump, files[0], manifest)
        parallel = [f"--jobs={request.jobs}", "--verbose"]  # --verbose: each table's rows in, as they are
        loaders.append(_start_pg_restore(request, database, toc, parallel, dump.path))
        _finish(loaders[-1], counted.saw)  # killed with the rest if the restore stops
        return []
    transfers[0].wait()
    verify_transfer(transfers[0], files[0], manifest)
    _finish(_start_pg_restore(request, database, toc, ["--section=pre-data"], transfers[0].path))
    loaders.extend(_start_pg_restore(request, database, None, ["--data-only"]) for _ in files[1:])
    return [transfer.feed(_stdin(loader)) for transfer, loader in zip(transfers[1:], loaders, strict=True)]


def _stdin(process: subprocess.Popen[bytes]) -> IO[bytes]:
    assert process.stdin is not None
    return process.stdin


def verify_transfer(transfer: DumpTransfer, file: DumpFile, manifest: BackupManifest) -> None:
    """Refuse a file that is not the size or sha256 its manifest recorded."""
    what = "the dump" if file.section is Section.ALL else f"the file {transfer.path.name}"
    backup = f" of backup {manifest.backup_id}"
    if transfer.size != file.size:
        raise DumpRefused(
            f"{what}{backup} is {transfer.size} bytes, its manifest says {file.size}: "
            "it is truncated or was replaced. Restore another backup (`--backup ID`)."
        )
    if transfer.sha256 != file.sha256:
        raise DumpRefused(
            f"{what}{backup} does not match its manifest's sha256: it was altered "
            "after the backup. Restore another backup (`--backup ID`) and investigate the bucket."
        )


def require_decompression(pg_restore: PgTool, manifest: BackupManifest) -> None:
    """Refuse, before anything is downloaded, a restore whose pg_restore cannot read the archive's
    compression (zstd and lz4 are build options); its pg_dump, beside it and of the same build, tells."""
    method = manifest.compression.partition(":")[0]
    sibling = pg_restore.path.with_name("pg_dump")
    if method not in ("zstd", "lz4") or not sibling.exists():
        return
    if not supports_compression(PgTool(sibling, pg_restore.version), method):
        raise ToolVersionError(
            [f"backup {manifest.backup_id} is compressed with {method}, and {pg_restore.path} was built without it. "
             "Use a PostgreSQL 16+ build with it (Debian's and the standby image's have it): --pg-bin DIR."]
        )  # fmt: skip


def verify_counts(database: Database, expected: dict[str, int]) -> None:
    """Refuse unless every table's row count equals the manifest's."""
    found: dict[str, int] = {}
    with database.connect(autocommit=True) as conn:
        for name in expected:
            _count(conn, name, found)
    _refuse_wrong_counts(found, expected)


def _count(conn: psycopg.Connection[tuple[Any, ...]], name: str, found: dict[str, int]) -> None:
    """found[name] = the table's rows, or -1 when it is missing."""
    schema, _, table = name.partition(".")
    query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    try:
        row = conn.execute(query).fetchone()
    except psycopg.errors.UndefinedTable:
        row = None
    found[name] = int(row[0]) if row else -1


def _refuse_wrong_counts(found: dict[str, int], expected: dict[str, int]) -> None:
    wrong = [
        f"{name}: {'missing' if found[name] < 0 else found[name]} instead of {rows}"
        for name, rows in sorted(expected.items())
        if found[name] != rows
    ]
    if wrong:
        listed = "; ".join(wrong[:5]) + (f"; and {len(wrong) - 5} more" if len(wrong) > 5 else "")
        raise RestoreRefused(
            f"the restored data does not match the backup's manifest ({listed}). Nothing was switched."
        )


def _restore_list(
    pg_restore: PgTool, transfer: DumpTransfer, file: DumpFile, manifest: BackupManifest
) -> str:
    """The archive's table of contents, minus what a database outside Heroku refuses.

    The table of contents sits at the start of the archive: it is read as soon as enough has arrived.
    """
    wanted = TOC_PROBE
    while True:
        available = transfer.wait_for(wanted)
        result = subprocess.run(
            [str(pg_restore.path), "--list", str(transfer.path)], capture_output=True, text=True
        )
        if result.returncode == 0:
            break
        if transfer.done and available <= wanted:
            verify_transfer(
                transfer, file, manifest
            )  # an altered dump is the likelier, more useful diagnosis
            last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "unknown error"
            raise DumpRefused(
                f"{pg_restore.path} cannot read the archive of backup {manifest.backup_id}: {last}."
            )
        wanted = available * 4
    kept = [line for line in result.stdout.splitlines() if not any(p.match(line) for p in _SKIPPED_TOC)]
    return "".join(line + "\n" for line in kept)


def _start_pg_restore(
    request: RestoreRequest,
    database: Database,
    toc: Path | None,
    options: list[str],
    archive: Path | None = None,
) -> subprocess.Popen[bytes]:
    """pg_restore into `database` of the entries in `toc` (all when None); from stdin unless `archive` is given."""
    command = [
        str(request.pg_restore.path),
        *options,
        "--no-owner",  # the standby's roles are not Heroku's
        "--no-acl",
        "--exit-on-error",
        *([f"--use-list={toc}"] if toc else []),
        f"--dbname={database.conninfo}",
        *([str(archive)] if archive else []),
    ]
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE if archive is None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **database.env},  # the loader role's password, not the master's
    )
    if process.stdin is not None:
        widen_pipe(process.stdin)
    return process


def _finish(process: subprocess.Popen[bytes], on_line: Callable[[str], None] = lambda _: None) -> None:
    """Wait for a pg_restore, each line it writes to stderr handed to `on_line`; raise if it failed."""
    # Not communicate(): the feeding thread owns (and has closed) stdin.
    assert process.stderr is not None
    lines = []
    for raw in process.stderr:
        lines.append(raw.decode(errors="replace").rstrip("\n"))
        on_line(lines[-1])
    process.wait()
    if process.returncode != 0:
        errors = [line for line in lines if "error" in line.lower()] or lines[-1:]
        raise StandbyError(f"pg_restore failed: {errors[0] if errors else f'exit code {process.returncode}'}")


# A parallel pg_restore --verbose says when an entry is done; the table of contents says what it is. Its
# processes share stderr and write a message's prefix apart from it: a line may start anywhere in one.
_FINISHED_DATA: Final = re.compile(r"finished item (\d+) TABLE DATA ")
_TOC_DATA: Final = re.compile(r"^(\d+); \d+ \d+ TABLE DATA (.+) \S+$")  # "schema table owner"


def data_entries(toc: str, tables: Iterable[str]) -> dict[str, str]:
    """The archive's TABLE DATA entries, by dump id, for the tables named as a manifest names them."""
    named = {name.replace(".", " ", 1): name for name in tables}  # as `pg_restore --list` prints them
    matches = (_TOC_DATA.match(line) for line in toc.splitlines())
    return {match[1]: named[match[2]] for match in matches if match and match[2] in named}


class CountsAsLoaded:
    """Counts each table on a connection of its own as soon as pg_restore says its rows are in.

    The load leaves a core idle most of its time (one table's COPY is one backend) and the checks after
    it leave none. Only a count that matches the manifest is kept: a table whose rows were not all in
    yet (a partition that another partition's data routes rows into) is counted again after the load,
    and so is a table whose message or entry this cannot read.
    """

    def __init__(self, database: Database, expected: dict[str, int], toc: str) -> None:
        self._database = database
        self._expected = expected
        self.entries = data_entries(toc, expected)
        self._found: dict[str, int] = {}
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._failed = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> CountsAsLoaded:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """The counts still queued are taken (few: the load's last tables); none if the load failed."""
        if kind is not None:
            self._failed.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()

    def saw(self, line: str) -> None:
        """A line of pg_restore's stderr."""
        match = _FINISHED_DATA.search(line)
        if not match or match[1] not in self.entries:
            return
        self._queue.put(self.entries[match[1]])
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="counts-as-loaded", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(psycopg.Error), self._database.connect(autocommit=True) as conn:
            while (name := self._queue.get()) is not None and not self._failed.is_set():
                _count(conn, name, self._found)

    def matching(self) -> set[str]:
        """The tables whose count, taken as the load went on, equals the manifest's."""
        return {name for name, rows in self._found.items() if self._expected[name] == rows}


# What ANALYZE (with no table named) analyzes, minus the system catalogs: tables, partitions, materialized
# views and partitioned tables, with their size (the order to take them in). No user schema starts "pg_".
_ANALYZED: Final = r"""
SELECT n.nspname, c.relname, c.relkind, pg_relation_size(c.oid) FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
"""
_ANALYZE_SAMPLE: Final = 30_000 * 8192  # bytes: ANALYZE reads at most 300 x statistics target (100) pages


def _verify_and_analyze(database: Database, expected: dict[str, int], jobs: int, counted: set[str]) -> None:
    """Every table's row count (but those `counted` already, equal to the manifest's), and ANALYZE, one
    relation at a time on each of `jobs` connections, the largest first, as `vacuumdb --analyze-only
    --jobs` does: ANALYZE of the whole database on one backend would leave the other cores idle."""
    with database.connect(autocommit=True) as conn:
        relations = conn.execute(_ANALYZED).fetchall()
        only = conn.info.server_version >= 180000  # before 18, ANALYZE of a parent also does its partitions
    size = {f"{schema}.{name}": int(nbytes) for schema, name, _, nbytes in relations}
    found = {name: expected[name] for name in counted}
    work: list[tuple[int, Callable[[psycopg.Connection[tuple[Any, ...]]], object]]] = [
        (size.get(name, 0), functools.partial(_count, name=name, found=found))
        for name in expected
        if name not in counted
    ]
    for schema, name, kind, nbytes in relations:
        analyze = sql.SQL("ANALYZE {}{}.{}").format(
            sql.SQL("ONLY " if kind == "p" and only else ""), sql.Identifier(schema), sql.Identifier(name)
        )
        work.append((min(int(nbytes), _ANALYZE_SAMPLE), functools.partial(_execute, statement=analyze)))
    work.sort(key=lambda item: item[0], reverse=True)
    pending = iter([task for _, task in work])
    taking, failed = threading.Lock(), threading.Event()

    def worker() -> None:
        with database.connect(autocommit=True) as conn:
            while not failed.is_set():
                with taking:
                    task = next(pending, None)
                if task is None:
                    return
                try:
                    task(conn)
                except BaseException:
                    failed.set()  # the others stop after their current task
                    raise

    workers = max(1, min(jobs, len(work)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
        for running in [pool.submit(worker) for _ in range(workers)]:
            running.result()
    _refuse_wrong_counts(found, expected)


def _execute(conn: psycopg.Connection[tuple[Any, ...]], statement: sql.Composed) -> None:
    conn.execute(statement)


def _sanity(database: Database, checks: tuple[str, ...]) -> None:
    """Each check in a read-only transaction that is rolled back: a check may look, never change.

    Prepared, so a check is one statement: "SELECT true; COMMIT; DELETE ..." cannot step outside.
    """
    with database.connect() as conn:
        conn.read_only = True
        conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(SANITY_TIMEOUT)))
        try:
            for check in checks:
                try:
                    row = conn.execute(check.encode(), prepare=True).fetchone()
                except psycopg.errors.ReadOnlySqlTransaction:
                    raise RestoreRefused(
                        f"sanity check tried to change the data (checks may only read): {check}"
                    ) from None
                except psycopg.Error as exc:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise RestoreRefused(f"sanity check failed ({first}): {check}") from None
                if not row or row[0] is not True:
                    raise RestoreRefused(f"sanity check failed (it must return true): {check}")
        finally:
            conn.rollback()


def room_needed(manifest: BackupManifest) -> int:
    """Bytes a restore of this backup takes on the server, beside the database in use."""
    return int((manifest.database_size or manifest.size * DUMP_TO_DATABASE) * HEADROOM)


def check_room(manifest: BackupManifest, request: RestoreRequest) -> None:
    """Refuse a restore that cannot fit beside the database in use: a full disk stops the live one too."""
    if request.free_bytes is None:
        return
    needed = room_needed(manifest)
    if needed > request.free_bytes:
        previous = previous_databases(request.server, request.target)
        hint = (
            f" Previous databases kept on it: {', '.join(previous)}; dropping them frees room."
            if previous
            else " Grow the storage (`allocatedStorage`), or restore elsewhere with --target-url."
        )
        raise RestoreRefused(
            f"backup {manifest.backup_id} needs about {needed / 1e9:.2f} GB on the target server (its database "
            f"was {(manifest.database_size or manifest.size * DUMP_TO_DATABASE) / 1e9:.2f} GB, plus {HEADROOM - 1:.0%} "
            f"headroom) and {request.free_bytes / 1e9:.2f} GB are free: nothing was restored.{hint}"
        )


def _create_database(server: Database, name: str) -> None:
    with server.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(server: Database, name: str) -> None:
    with server.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _databases_with(server: Database, prefix: str) -> list[str]:
    """Databases whose names start with `prefix` (compared here, not with LIKE: `_` is a LIKE wildcard)."""
    with server.connect(autocommit=True) as conn:
        names = [str(r[0]) for r in conn.execute("SELECT datname FROM pg_database")]
    return sorted(n for n in names if n.startswith(prefix))


def previous_databases(server: Database, target: str) -> list[str]:
    """The databases earlier switches renamed away from `target`, newest first."""
    return sorted(_databases_with(server, target[: MAX_IDENT - len(BEFORE) - 14] + BEFORE), reverse=True)


def drop_previous(server: Database, target: str, keep: int, progress: Progress) -> list[str]:
    """Keep the newest `keep` previous databases, drop the rest: a scheduled restore must not fill the disk."""
    dropped = previous_databases(server, target)[keep:]
    for name in dropped:
        progress(f"dropping {name}: only the newest {keep} previous database(s) are kept")
        drop_database(server, name)
    return dropped


def _drop_leftovers(request: RestoreRequest, target: str, progress: Progress) -> None:
    """Undo what crashed or failed restores left: their databases were never in use, and a switch killed
    after closing the database in use to new sessions left it closed."""
    for name in _databases_with(request.server, target[: MAX_IDENT - len(RESTORING) - 6] + RESTORING):
        progress(f"dropping {name}, left by an interrupted restore")
        drop_database(request.server, name)
    for role in leftover_roles(request.server):
        progress(f"dropping the role {role}, left by an interrupted restore")
        try:
            drop_role(request.server, role)
        except psycopg.Error as exc:  # it still owns something: leave it, and say so; the restore goes on
            progress(f"  {role} stays: {type(exc).__name__}; drop it by hand once nothing depends on it")
    with request.server.connect(autocommit=True) as conn:
        row = conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", [target]).fetchone()
        if row is not None and not row[0]:
            progress(f"{target} was left closed to new sessions by an interrupted switch: opening it again")
            _allow_connections(conn, target, True)


def _switch(server: Database, plan: RestorePlan, manifest: BackupManifest) -> str | None:
    """Swap names in one transaction: the app's next connection finds the restored data."""
    marker = RestoredMarker(manifest.backup_id, manifest.snapshot_at, datetime.now(UTC))
    with server.connect(autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [plan.target]).fetchone()
        renames = [(plan.target, plan.previous_name)] if exists else []
        renames.append((plan.new_database, plan.target))
        if exists:
            # No new session may reach the old database from here on: a pool that reconnects cannot hold
            # the rename up, and nothing writes into what becomes the previous database.
            _allow_connections(conn, plan.target, False)
        try:
            _rename(conn, plan, renames, marker)
        except BaseException:
            if exists:
                _allow_connections(conn, plan.target, True)  # still the database in use: open it again
            raise
        if exists:  # renamed away: nothing reaches it by the app's name, and people may look into it
            _allow_connections(conn, plan.previous_name, True)
    return plan.previous_name if exists else None


def _allow_connections(conn: psycopg.Connection[tuple[Any, ...]], name: str, allow: bool) -> None:
    conn.execute(
        sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.SQL("true" if allow else "false")
        )
    )


def _rename(
    conn: psycopg.Connection[tuple[Any, ...]],
    plan: RestorePlan,
    renames: list[tuple[str, str]],
    marker: RestoredMarker,
) -> None:
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
                    f"{plan.target} kept sessions open through the switch; stop the app's services and run "
                    "again. Nothing was switched; the next run restores afresh."
                ) from None
            time.sleep(0.2 * (attempt + 1))
