"""A parallel backup: the schema and several streams of rows, all dumped from one exported snapshot.

One pg_dump compresses on one core (about 127 MB/s at gzip level 1 on the development machine), so a
single stream's duration grows with the database until it outruns the backup interval. Here the rows go
out through several pg_dump processes at once, each in the same exported snapshot (`--snapshot`): the
files together hold one consistent state, exactly as one dump would.

The files, each uploaded as it is written (docs/backups.md, "Parallel backups"):
- `schema`: every definition, pre- and post-data, and no rows;
- `data-1`: the rows of every table that no other stream names, with the sequences' values and the
  large objects: it is defined by exclusion, so a table the listing missed is still in it;
- `data-2` ...: the rows of the tables planned to them, largest first, each to the lightest stream.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Final

from standby.backup_store import BackupStore
from standby.catalog import DATA, SCHEMA, DumpFile, Section
from standby.dump_stream import Dumped, StreamStopped, pg_dump_command, stream_into_store
from standby.pg_tools import PgTool, supports_compression
from standby.pg_url import Database

GIB: Final = 1024**3
PARALLEL_FROM: Final = 8 * GIB  # databases from this size are dumped in parallel unless told otherwise
MAX_STREAMS: Final = 4  # each stream is a connection to the primary and a pg_dump on a core of ours
MAX_NAMED: Final = 500  # tables named on the data streams' command lines; smaller ones go to data-1

Table = tuple[str, str]  # (schema, table)


def choose_streams(requested: int | None, database_bytes: int, cpus: int | None = None) -> int:
    """Data streams for a backup: `requested` when given (1 = a single-stream dump), else by size."""
    if requested is not None:
        return max(1, requested)
    cores = cpus or available_cpus()
    if database_bytes < PARALLEL_FROM or cores < 2:
        return 1  # one core compresses one stream: more streams would only share it
    return min(MAX_STREAMS, cores)


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may use: a container's CPU quota (ECS sets one), else the machine's."""
    try:
        quota, period = cgroup.read_text().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def choose_compression(pg_dump: PgTool) -> str:
    """zstd where this pg_dump has it (faster than gzip for a smaller file), else gzip level 1."""
    return "zstd:1" if supports_compression(pg_dump, "zstd") else "gzip:1"


def plan_streams(sizes: Mapping[Table, int], streams: int, max_named: int = MAX_NAMED) -> list[list[Table]]:
    """The tables in `streams` groups of about equal bytes: the largest first, each into the lightest group.

    Group 0 becomes `data-1`, named by exclusion; the other groups name their tables, at most `max_named`
    in all (past that, the smaller tables go to group 0). Groups left empty are dropped.
    """
    groups: list[list[Table]] = [[] for _ in range(max(1, streams))]
    loads = [0] * len(groups)
    named = 0
    for table, size in sorted(sizes.items(), key=lambda item: (-item[1], item[0])):
        lightest = min(range(len(groups)), key=lambda g: (loads[g], g))
        if lightest != 0 and named >= max_named:
            lightest = 0
        named += lightest != 0
        groups[lightest].append(table)
        loads[lightest] += size
    return [groups[0]] + [group for group in groups[1:] if group]


def _quoted(name: str) -> str:
    """An exact name as SQL and pg_dump's patterns read it: in double quotes, quotes doubled (no wildcard
    inside quotes)."""
    return '"' + name.replace('"', '""') + '"'


def pattern(table: Table) -> str:
    return f"{_quoted(table[0])}.{_quoted(table[1])}"


def dump_parallel(
    pg_dump: PgTool,
    source: Database,
    store: BackupStore,
    compression: str,
    snapshot: str,
    folder: str,
    groups: list[list[Table]],
    part_size: int,
    progress: Callable[[str], None],
) -> tuple[DumpFile, ...]:
    """Dump the schema and one data file per group at once; the first failure stops the others."""
    named = [pattern(t) for group in groups[1:] for t in group]
    jobs: list[tuple[str, Section, list[Table], list[str]]] = [
        # -B: no large objects here (`--no-large-objects` from pg_dump 16 on); data-1 carries them whole.
        (SCHEMA, Section.SCHEMA, [], ["--schema-only", "-B"]),
        (f"{DATA}1", Section.DATA, groups[0], ["--data-only", *[f"--exclude-table-data={p}" for p in named]]),
    ]
    for number, group in enumerate(groups[1:], start=2):
        selection = ["--data-only", "--strict-names", *[f"--table={pattern(t)}" for t in group]]
        jobs.append((f"{DATA}{number}", Section.DATA, group, selection))
    stop = threading.Event()

    def run(name: str, selection: list[str]) -> Dumped:
        command = pg_dump_command(pg_dump, source, compression, snapshot, *selection)
        dumped = stream_into_store(command, source.env, store, folder + name, part_size, stop)
        progress(f"{name}: {dumped.size / 1e6:.1f} MB")
        return dumped

    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="dump-stream") as pool:
        futures = [pool.submit(run, name, selection) for name, _, _, selection in jobs]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            stop.set()  # one failed (or we were interrupted): the others stop instead of dumping for nothing
        wait(futures)
    _raise_first(futures)
    return tuple(
        DumpFile(
            f.result().key, f.result().size, f.result().sha256, section, tuple(f"{s}.{t}" for s, t in group)
        )
        for f, (_, section, group, _) in zip(futures, jobs, strict=True)
    )


def _raise_first(futures: list[Future[Dumped]]) -> None:
    """The failure that stopped the backup, not the other streams' "stopped" that followed it."""
    errors = [error for f in futures if (error := f.exception()) is not None]
    cause = next((e for e in errors if not isinstance(e, StreamStopped)), errors[0] if errors else None)
    if cause is not None:
        raise cause
