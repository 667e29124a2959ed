"""What the benchmarks share: a database worth measuring, moto's S3 on loopback, and a timer that
also records the peak memory of every program in a command's process tree."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from standby.local.moto_server import moto_server  # noqa: E402

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
"""


def fill(url: str, size_gb: float) -> int:
    """About `size_gb` GB on disk, indexes included (1.0 measured 1.0-1.1 GB); returns the exact size."""
    events = int(4_400_000 * size_gb)
    scale = {"customers": max(1000, events // 50), "orders": max(1000, events // 5), "events": events}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FILL.format(**scale).encode())
        # A database at rest, as autovacuum keeps one: without this, autovacuum would vacuum the new rows
        # in the middle of the first rounds, under whichever variant runs then.
        conn.execute("VACUUM (ANALYZE)")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


def timed(
    command: list[str], env: dict[str, str] | None = None, checkpoint: str | None = None
) -> tuple[float, dict[str, int]]:
    """Wall time of a command, and the peak RSS of each program in its process tree (the largest of
    each name), and of the whole tree at once ("total": several pg_dumps of a parallel backup add up).

    The server at `checkpoint` (a URL) writes out its dirty buffers and the page cache is flushed first:
    gigabytes the previous command left dirty would otherwise be written out during this one, by
    whichever variant happened to run next."""
    if checkpoint:
        with psycopg.connect(checkpoint, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    os.sync()
    start = time.perf_counter()
    process = subprocess.Popen(
        command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peaks: dict[str, int] = {}
    done = threading.Event()

    def watch() -> None:
        root = psutil.Process(process.pid)
        while not done.is_set():
            total = 0
            try:
                for proc in [root, *root.children(recursive=True)]:
                    name = next((p for p in ("pg_dump", "pg_restore") if p in proc.name()), "main")
                    rss = proc.memory_info().rss
                    peaks[name] = max(peaks.get(name, 0), rss)
                    total += rss
            except psutil.Error:
                pass
            peaks["total"] = max(peaks.get("total", 0), total)
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


class Samples:
    """Each variant's times and peak memory over the rounds; the rounds alternate the variants, so the
    machine's drift falls on all of them alike."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.memory: dict[str, dict[str, int]] = {}

    def add(self, name: str, result: tuple[float, dict[str, int]]) -> None:
        self.times.setdefault(name, []).append(result[0])
        seen = self.memory.setdefault(name, {})
        for key, rss in result[1].items():
            seen[key] = max(seen.get(key, 0), rss)

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    def spread(self, name: str) -> str:
        return ", ".join(f"{t:.1f}" for t in self.times[name])

    def peak(self, name: str, key: str = "total") -> float:
        return self.memory[name].get(key, 0) / (1024 * 1024)


@contextmanager
def moto_with_bucket(bucket: str) -> Iterator[dict[str, str]]:
    """moto's S3 on loopback (standby.local.moto_server) with `bucket` in it."""
    with moto_server("us-east-2") as env:
        boto3.client("s3").create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-east-2"}
        )
        yield env
