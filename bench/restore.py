#!/usr/bin/env python3
"""Benchmark: `scripts/restore.py`, from a one-stream and from a parallel backup, against raw
`pg_restore -j <cores>` of the same dump file, same run, over a sweep of database sizes.

    python bench/restore.py --size-gb 1 --rounds 3     # the bar: median of three at ~1 GB
    python bench/restore.py --size-gb 1 3 10 --rounds 1 # the cost curve
    python bench/restore.py --size-gb 0.1 --rounds 1    # a quick look
    python bench/restore.py --size-gb 1 --folder        # ours from a local folder, as the baseline reads

For each size: fills a database, backs it up twice into moto's S3 on loopback (one stream, and
parallel with --streams data streams, at the same compression), downloads the one-stream dump once for
the baseline, then, round after round on fresh databases, alternating:
- baseline: raw `pg_restore -j <cores>` of the local dump file;
- ours: `scripts/restore.py` of the one-stream backup (the dump downloaded and hashed, size + sha256 +
  archive checks, then one `pg_restore --jobs <cores>` into a new database, each table counted as its
  rows are in, the remaining counts and ANALYZE on <cores> connections, the switch);
- ours: `scripts/restore.py` of the parallel backup (every data file loading at once as it arrives,
  each file checked, indexes with parallel jobs, then the same).
Before each timed command the server checkpoints and the page cache is flushed.
With --folder, ours reads the backups from a local folder (a copy of the bucket) instead of moto's S3:
moto serves every byte from Python on the same two cores, which real S3 does not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import boto3
import psycopg
from harness import ROOT, Samples, fill, moto_with_bucket, timed

from standby.backup import BackupRequest, run_backup
from standby.backup_store import S3Store
from standby.local.postgres import LocalPostgres
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gb", type=float, nargs="+", default=[1.0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compress", default="gzip:1", help="pg_dump --compress of both backups")
    parser.add_argument(
        "--streams", type=int, default=os.cpu_count() or 2, help="data streams of the parallel backup"
    )
    parser.add_argument("--folder", action="store_true", help="ours from a local copy of the bucket")
    args = parser.parse_args()
    cores = os.cpu_count() or 2
    curve = []
    with (
        moto_with_bucket("bench"),
        LocalPostgres() as server,
        tempfile.TemporaryDirectory(prefix="standby-bench-") as scratch,
    ):
        for size_gb in args.size_gb:
            source = server.create_database("source")
            print(f"filling a ~{size_gb} GB database and backing it up twice ...", file=sys.stderr)
            size = fill(source, size_gb)
            backups = {}
            for name, streams in (("one", 1), ("parallel", args.streams)):
                request = BackupRequest("bench", parse_database_url(source), S3Store("bench"), find_tool("pg_dump"),
                                        compression=args.compress, streams=streams)  # fmt: skip
                backups[name] = run_backup(request)
            _drop(server, source)
            dump = Path(scratch) / "dump"
            boto3.client("s3").download_file("bench", backups["one"].dump_key, str(dump))
            store = ["--bucket", "bench"]
            if args.folder:
                store = ["--folder", str(_mirror(Path(scratch) / "store"))]
            samples, phases = _measure(server, dump, backups, Path(scratch), cores, args.rounds, store)
            dump.unlink()
            shutil.rmtree(Path(scratch) / "store", ignore_errors=True)
            curve.append((size, backups, samples, phases))
            for manifest in backups.values():  # moto keeps them in memory
                for file in manifest.dump_files():
                    boto3.client("s3").delete_object(Bucket="bench", Key=file.key)
    where = "a local folder" if args.folder else "moto's S3"
    print(f"\n--compress={args.compress}, {cores} cores, median of {args.rounds}, ours from {where}")
    print(
        f"| database | dump | raw pg_restore -j {cores} s (s/GB) | ours, one stream s (s/GB) | ratio | "
        f"ours, {args.streams} streams s (s/GB) | ratio | parallel / one stream | peak memory: one / parallel |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, backups, s, _ in curve:
        gb = size / 1e9
        raw, one, par = s.median("raw"), s.median("one"), s.median("parallel")
        print(
            f"| {gb:.2f} GB | {backups['one'].size / 1e9:.2f} GB | {raw:.1f} ({raw / gb:.1f}) | {one:.1f} ({one / gb:.1f}) | "
            f"{one / raw:.2f} | {par:.1f} ({par / gb:.1f}) | {par / raw:.2f} | {par / one:.2f} | "
            f"{s.peak('one'):.0f} / {s.peak('parallel'):.0f} MiB |"
        )
    for size, _, s, phases in curve:
        print(f"{size / 1e9:.2f} GB rounds: " + "; ".join(f"{name} {s.spread(name)}" for name in s.times))
        for name, seen in phases.items():
            medians = {k: statistics.median(r[k] for r in seen) for k in seen[0]}
            print(
                f"  phases of ours, {name} (medians): "
                + ", ".join(f"{k} {v:.1f}s" for k, v in medians.items())
            )
    return 0


def _mirror(folder: Path) -> Path:
    """The bucket's objects as files under `folder`, keyed alike: a LocalStore of the same backups."""
    s3 = boto3.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench"):
        for item in page.get("Contents", []):
            (folder / item["Key"]).parent.mkdir(parents=True, exist_ok=True)
            s3.download_file("bench", item["Key"], str(folder / item["Key"]))
    return folder


def _measure(
    server: LocalPostgres,
    dump: Path,
    backups: dict,
    scratch: Path,
    cores: int,
    rounds: int,
    store: list[str],
) -> tuple[Samples, dict[str, list[dict[str, float]]]]:
    samples, phases = Samples(), {}  # phases: each variant's report of every round
    for _ in range(rounds):
        target = server.create_database("raw")
        raw = [
            str(find_tool("pg_restore").path),
            f"--jobs={cores}",
            "--no-owner",
            "--no-acl",
            f"--dbname={target}",
            str(dump),
        ]
        samples.add("raw", timed(raw, checkpoint=server.admin_url))
        _drop(server, target)
        for name, manifest in backups.items():
            report = scratch / "report.json"
            target = server.url(f"app_{time.time_ns()}")
            samples.add(
                name,
                timed(
                    [
                        sys.executable,
                        str(ROOT / "scripts" / "restore.py"),
                        "--app",
                        "bench",
                        *store,
                        "--backup",
                        manifest.backup_id,
                        "--target-url",
                        target,
                        "--yes",
                        f"--jobs={cores}",
                        "--json",
                        str(report),
                        "--scratch",
                        str(scratch),
                    ],
                    checkpoint=server.admin_url,
                ),
            )
            phases.setdefault(name, []).append(json.loads(report.read_text())["phases"])
            _drop(server, target)
    return samples, phases


def _drop(server: LocalPostgres, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
