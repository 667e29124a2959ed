"""Take a consistent, verified backup of a Postgres database into a backup store.

One transaction exports its snapshot; every table's rows are counted in it (on a second connection that
imports the snapshot) while `pg_dump --snapshot` dumps exactly that state, streamed into the store while
its sha256 is computed: one stream, or for a large database several (`standby.parallel_dump`). The
manifest (counts, every file's hash and size, versions, times) is written last. A run that fails leaves
`failure.json` with the phase and the first line of the error, and no manifest: a dump without a manifest
is not a backup.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg import sql

from standby import catalog, catalog_index, parallel_dump, recovery_mark
from standby.backup_source import FOLLOWER, Follower, Source, choose_source
from standby.backup_store import MIB, BackupStore
from standby.catalog import BackupManifest, DumpFile, files_digest
from standby.dump_stream import (
    EXCLUDED_SCHEMAS,
    StreamFailed,
    StreamStopped,
    part_size_for,
    pg_dump_command,
    stream_into_store,
)
from standby.errors import ConfigError, StandbyError
from standby.integrity import Mac
from standby.names import BACKUP_PREFIX
from standby.pg_tools import PgTool, PgVersion, require_at_least
from standby.pg_url import Database

DEFAULT_COMPRESSION: Final = "gzip:1"  # fast, and every pg_restore reads it
DEFAULT_PART_SIZE: Final = 16 * MIB

# Tables whose rows pg_dump writes: ordinary tables and partitions, minus extension members and the
# schemas we exclude. Partitioned parents hold no rows of their own; counting them would count twice.
TABLES_SQL: Final = """
SELECT n.nspname, c.relname, pg_table_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname <> ALL(%s)
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


class BackupFailed(StandbyError):
    """The backup did not complete; no manifest was written, earlier backups are untouched."""

    def __init__(self, phase: str, reason: str) -> None:
        super().__init__(f"backup failed while {phase}: {reason}")
        self.phase = phase
        self.reason = reason
        self.from_follower = False  # it read a follower: the primary may still answer


@dataclass(frozen=True)
class BackupRequest:
    app: str
    source: Database
    store: BackupStore
    pg_dump: PgTool
    prefix: str = BACKUP_PREFIX
    # pg_dump's --compress; None: gzip level 1 for one stream, zstd (where pg_dump has it) for several.
    compression: str | None = None
    part_size: int = DEFAULT_PART_SIZE
    # Data streams: 1 dumps one file, N several at once (`standby.parallel_dump`), None chooses by size.
    # A dump Heroku itself restores (the failback's) must be one file.
    streams: int | None = None
    source_side: str = "heroku"  # recorded in the manifest (BackupManifest.source_side)
    # The primary's follower, read instead of `source` when it keeps up (standby.backup_source).
    follower: Follower | None = None
    # Signs the manifest and the catalog index, and checks the index it rewrites (standby.integrity.KmsMac),
    # when the standby has a key.
    signer: Mac | None = None
    # Rewrite the catalog index once the manifest is written. `backup.py run` does it itself, after the
    # backups' lease is released: the daily rebuild reads every manifest and must not hold up the schedule.
    index: bool = True


Progress = Callable[[str], None]


def run_backup(request: BackupRequest, progress: Progress = lambda _: None) -> BackupManifest:
    try:
        manifest = _take(request, request.follower, progress)
    except BackupFailed as exc:
        if not exc.from_follower:
            raise
        # A follower's dump can be cancelled by what it replays (a recovery conflict): the primary answers.
        progress(f"warning: the backup from the follower failed ({exc.reason}); taking it from the primary")
        manifest = _take(request, None, progress)
    if request.index:
        update_index(request, progress)
    return manifest


def _take(request: BackupRequest, follower: Follower | None, progress: Progress) -> BackupManifest:
    started = datetime.now(UTC)
    backup_id = catalog.new_backup_id(started)
    base = catalog.backup_prefix(request.prefix, request.app, backup_id)
    phase = "connecting to the source database"
    source: Source | None = None
    try:
        source = choose_source(request.source, follower)
        if source.passed_over:
            progress(f"backing up the primary: {source.passed_over}")
        elif source.role == FOLLOWER:
            progress(
                f"backing up the follower, at the primary's position of {source.dated_at} ({source.lag_seconds} s to reach it)"
            )
        with source.database.connect(connect_timeout=15) as conn:
            # REPEATABLE READ: every statement of this transaction, and pg_dump through the exported
            # snapshot, sees the same committed state.
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            phase = "exporting the snapshot"
            row = conn.execute(
                "SELECT pg_export_snapshot(), now(), current_setting('server_version'),"
                " current_setting('server_version_num')::int, pg_database_size(current_database()),"
                f" ({recovery_mark.COMMENT_SQL})"
            ).fetchone()
            assert row is not None
            snapshot, server_now, server_version, server_num, db_size, comment = row
            recovering = recovery_mark.recovering_run(comment)
            if recovering:
                raise BackupFailed(
                    "exporting the snapshot",
                    f"a database recovery on Heroku (recover_db run {recovering}) is restoring into this database, "
                    "so a dump now would hold half of it. Backups take it again when the recovery ends; an "
                    "interrupted one finishes with `python scripts/recover_db.py from-backup ... --resume`.",
                )
            phase = "checking pg_dump"
            require_at_least(
                request.pg_dump,
                PgVersion.from_server_num(server_num),
                f"a PostgreSQL {server_version} server",
            )
            phase = "planning the dump"
            groups = _stream_groups(request, conn, int(db_size), progress)
            compression = request.compression or (
                parallel_dump.choose_compression(request.pg_dump) if groups else DEFAULT_COMPRESSION
            )
            phase = "dumping and uploading"
            streams = f"{len(groups)} data streams and the schema" if groups else "one stream"
            progress(
                f"snapshot {snapshot}: dumping {db_size / MIB:.0f} MiB in {streams} ({compression}) "
                f"to {request.store.describe()}"
            )
            # Rows are counted on a second connection in the same snapshot while pg_dump runs: the
            # counts cost no extra time when the dump is the bottleneck.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="count-rows") as pool:
                counting = pool.submit(_count_in_snapshot, source.database, snapshot)
                files = _dump(
                    request, source.database, snapshot, base, groups, compression, int(db_size), progress
                )
                phase = "counting rows"
                tables = counting.result()
            conn.rollback()  # the snapshot may go only once pg_dump and the counts are done with it
        phase = "writing the manifest"
        one = files[0] if len(files) == 1 else None
        manifest = BackupManifest(
            backup_id=backup_id,
            app=request.app,
            dump_key=files[0].key,
            size=one.size if one else sum(f.size for f in files),
            sha256=one.sha256 if one else files_digest(files),
            server_version=server_version,
            pg_dump_version=str(request.pg_dump.version),
            started_at=started,
            # A follower's own clock does not date its data; the primary's moment it had replayed does.
            snapshot_at=(source.dated_at or server_now).astimezone(UTC),
            finished_at=datetime.now(UTC),
            tables=tables,
            source=source.database.redacted,
            source_side=request.source_side,
            source_role=source.role,
            source_lag_seconds=source.lag_seconds,
            database_size=int(db_size),
            compression=compression,
            files=() if one else files,
        )
        document = manifest.to_json()
        request.store.put_json(
            f"{base}{catalog.MANIFEST}", request.signer.sign(document) if request.signer else document
        )
    except Exception as exc:
        failure = _as_failure(exc, phase)
        if failure is None and phase in BEFORE_THE_DUMP:
            raise
        if failure is None:  # files may be in the store already: whatever stopped the run is on record
            failure = BackupFailed(phase, _first_line(exc))
        _record_failure(request, base, backup_id, started, failure.phase, failure.reason)
        # Only what the follower itself said (a recovery conflict, a pg_dump error) is worth the primary's try.
        read_error = isinstance(exc, psycopg.Error | StreamFailed) and not isinstance(exc, StreamStopped)
        failure.from_follower = read_error and source is not None and source.role == FOLLOWER
        raise failure from None
    return manifest


BEFORE_THE_DUMP: Final = (
    "connecting to the source database",
    "exporting the snapshot",
    "checking pg_dump",
    "planning the dump",
)


def _as_failure(exc: Exception, phase: str) -> BackupFailed | None:
    """What a failed run records and raises; None for what is not a failed backup (a configuration
    error, caught before dumping, such as a pg_dump too old: nothing to record)."""
    if isinstance(exc, BackupFailed):
        return exc
    if isinstance(exc, StreamFailed):  # pg_dump's own words, whole: they say what to fix
        return BackupFailed(phase, str(exc))
    if isinstance(exc, StandbyError):
        return None if exc.exit_code == 2 else BackupFailed(phase, _first_line(exc))
    if isinstance(exc, psycopg.Error | OSError):
        return BackupFailed(phase, _first_line(exc))
    return None


def update_index(request: BackupRequest, progress: Progress) -> None:
    """The backup is complete with its manifest; a stale index only costs readers time (they read every
    manifest instead), so failing to rewrite it is a warning, not a failed backup."""
    try:
        catalog_index.write_index(request.store, request.prefix, request.app, request.signer)
    except (StandbyError, ValueError) as exc:
        progress(
            f"warning: the catalog index was not rewritten ({_first_line(exc)}); readers still find this backup, "
            "at a few requests more, until the next backup rewrites it"
        )


def _stream_groups(
    request: BackupRequest, conn: psycopg.Connection[tuple[Any, ...]], db_size: int, progress: Progress
) -> list[list[parallel_dump.Table]]:
    """The tables of each data stream of a parallel dump, in the snapshot; [] for a single-stream one."""
    streams = parallel_dump.choose_streams(request.streams, db_size)
    if streams < 2:
        return []
    sizes = {
        (str(s), str(t)): int(size or 0) for s, t, size in conn.execute(TABLES_SQL, [list(EXCLUDED_SCHEMAS)])
    }
    groups = parallel_dump.plan_streams(sizes, streams)
    if len(groups) < 2:
        progress(f"{len(sizes)} table(s) make one data stream: dumping a single stream instead")
        return []
    return groups


def _dump(
    request: BackupRequest,
    source: Database,
    snapshot: str,
    base: str,
    groups: list[list[parallel_dump.Table]],
    compression: str,
    db_size: int,
    progress: Progress,
) -> tuple[DumpFile, ...]:
    part_size = part_size_for(request.part_size, db_size)
    if groups:
        return parallel_dump.dump_parallel(
            request.pg_dump, source, request.store, compression, snapshot, base, groups, part_size, progress
        )
    command = pg_dump_command(request.pg_dump, source, compression, snapshot)
    dumped = stream_into_store(command, source.env, request.store, f"{base}{catalog.DUMP}", part_size)
    return (DumpFile(dumped.key, dumped.size, dumped.sha256),)


def _count_in_snapshot(source: Database, snapshot: str) -> dict[str, int]:
    with source.connect(connect_timeout=15) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        # One backend: the counts have the whole dump to finish in, and parallel workers would only take
        # the server's cores from pg_dump's backend (and from the app) for their moment.
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        return count_rows(conn)


def count_rows(conn: psycopg.Connection[tuple[Any, ...]]) -> dict[str, int]:
    """Rows of every dumped table, as seen by the connection's current transaction."""
    counts: dict[str, int] = {}
    for schema, table, _ in conn.execute(TABLES_SQL, [list(EXCLUDED_SCHEMAS)]).fetchall():
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def check_streams(value: str) -> int | None:
    """`--streams`: "auto" (None: chosen by size) or a count from 1 to 16, or a ConfigError."""
    if value == "auto":
        return None
    if value.isdigit() and 1 <= int(value) <= 16:
        return int(value)
    raise ConfigError([f"--streams must be auto or a number of streams from 1 to 16. Got {value!r}."])


COMPRESSION_METHODS: Final = ("gzip", "lz4", "zstd", "none")


def check_compression(compression: str) -> str:
    """`compression` as pg_dump's --compress takes it (METHOD[:LEVEL] or a gzip level), or a ConfigError."""
    method, _, level = compression.partition(":")
    if method.isdigit() and not level and 0 <= int(method) <= 9:
        return compression
    if method in COMPRESSION_METHODS and (not level or level.isdigit()):
        return compression
    raise ConfigError(
        [f"--compress must be METHOD[:LEVEL] with METHOD one of {', '.join(COMPRESSION_METHODS)}, or a gzip level "
         f"0-9. Got {compression!r}."]
    )  # fmt: skip


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _record_failure(
    request: BackupRequest, base: str, backup_id: str, started: datetime, phase: str, error: str
) -> None:
    record = {
        "backup_id": backup_id,
        "app": request.app,
        "phase": phase,
        "error": error,
        "started_at": started.isoformat(),
        "failed_at": datetime.now(UTC).isoformat(),
    }
    # The store may be what failed; the caller reports the error either way.
    with contextlib.suppress(Exception):
        request.store.put_json(f"{base}{catalog.FAILURE}", record)
