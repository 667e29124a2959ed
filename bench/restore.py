#!/usr/bin/env python3
"""Benchmark: `scripts/restore.py` against raw `pg_restore` of the same dump file, same run.

    python bench/restore.py                 # a dump of >= 1 GB (the issue's bar)
    python bench/restore.py --size-gb 0.1   # a quick look

Fills a database, backs it up into moto's S3 on loopback, downloads the dump once for the baselines,
then times on fresh databases:
- raw `pg_restore -j <cores>` of the local file, and raw single-job `pg_restore`;
- ours: `scripts/restore.py` (the dump streamed from S3 and hashed while its data loads into a new
  database, size and sha256 check, indexes with parallel jobs, every table's row count with ANALYZE
  beside it, the switch).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import boto3
import psycopg
from harness import ROOT, fill, moto_with_bucket, timed

from standby.backup import BackupRequest, run_backup
from standby.backup_store import S3Store
from standby.local.postgres import LocalPostgres
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size-gb", type=float, default=1.3, help="database size; ~0.8 of it becomes the dump"
    )
    parser.add_argument("--compress", default="0", help="pg_dump --compress of the backup (0: none)")
    args = parser.parse_args()
    cores = os.cpu_count() or 2
    pg_restore = find_tool("pg_restore")
    with (
        moto_with_bucket("bench"),
        LocalPostgres() as server,
        tempfile.TemporaryDirectory(prefix="standby-bench-") as scratch,
    ):
        source = server.create_database("source")
        print(f"filling a ~{args.size_gb} GB database and backing it up ...", file=sys.stderr)
        fill(source, args.size_gb)
        manifest = run_backup(
            BackupRequest(
                "bench",
                parse_database_url(source),
                S3Store("bench"),
                find_tool("pg_dump"),
                compression=args.compress,
            )
        )
        dump = Path(scratch) / "dump"
        boto3.client("s3").download_file("bench", manifest.dump_key, str(dump))

        def raw(jobs: int) -> float:
            target = server.create_database("raw")
            elapsed, _ = timed(
                [
                    str(pg_restore.path),
                    f"--jobs={jobs}",
                    "--no-owner",
                    "--no-acl",
                    f"--dbname={target}",
                    str(dump),
                ]
            )
            _drop(server, target)
            return elapsed

        raw_parallel = raw(cores)
        report_path = Path(scratch) / "report.json"
        target = server.url(f"app_{time.time_ns()}")
        ours, _ = timed(
            [sys.executable, str(ROOT / "scripts" / "restore.py"), "--app", "bench", "--bucket", "bench",
             "--target-url", target, "--yes", f"--jobs={cores}", "--json", str(report_path),
             "--scratch", scratch],
        )  # fmt: skip
        phases = __import__("json").loads(report_path.read_text())["phases"]
        _drop(server, target)
        raw_single = raw(1)

    print(
        f"\ndump {manifest.size / 1e9:.2f} GB (pg_dump --compress={args.compress}), {len(manifest.tables)} tables; {cores} cores"
    )
    print(f"raw pg_restore -j {cores} (local file)           : {raw_parallel:7.2f} s")
    print(f"raw pg_restore, one job (local file)        : {raw_single:7.2f} s")
    print(f"scripts/restore.py -j {cores} (S3 + checks + switch): {ours:7.2f} s")
    print("  phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in phases.items()))
    print(f"ratio ours / raw pg_restore -j {cores}            : {ours / raw_parallel:.2f}  (target <= 1.10)")
    print(f"ratio ours / raw single-job pg_restore       : {ours / raw_single:.2f}")
    return 0


def _drop(server: LocalPostgres, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
