#!/usr/bin/env python3
"""Benchmark: what reading the backup catalog costs as the history grows, with and without its index.

    python bench/catalog.py                     # 10, 1,000 and 5,000 backups
    python bench/catalog.py --backups 10 200    # a quick look

Starts moto's S3 and KMS on loopback and writes N signed backups (a small dump and a manifest signed with
a KMS HMAC key, as the backup task writes them). Then, counting every request (S3 and KMS):

- the scan: every folder read and every manifest verified (`catalog.scan_catalog`, the baseline);
- the writer: the index built once from every manifest, then rewritten after one more backup, as each
  backup rewrites it (`catalog_index.write_index`);
- the reader: `read_catalog` as every runbook calls it, five times (a cutover reads it five times or more).

moto answers in about a millisecond; S3 and KMS in tens: the request count is what grows the RTO.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import boto3
from harness import moto_with_bucket

from standby.backup_store import S3Store
from standby.catalog import BackupManifest, backup_prefix, new_backup_id, scan_catalog
from standby.catalog_index import INDEX, load_catalog, write_index
from standby.integrity import KmsMac

BUCKET = "bench-catalog"
APP = "acme"
READS_PER_CUTOVER = 5
TABLES = 70  # as many as the sample app (pagila): the index holds every manifest whole
REGION = "us-east-2"
T = TypeVar("T")


def write_backups(store: S3Store, mac: KmsMac, count: int, newest: bool = False) -> None:
    """`count` backups 15 minutes apart, ending an hour ago (or, `newest`, ending now)."""
    start = datetime.now(UTC) - timedelta(minutes=15 * count + (0 if newest else 60))

    def one(i: int) -> None:
        at = start + timedelta(minutes=15 * i)
        backup_id = new_backup_id(at)
        base = backup_prefix("backups", APP, backup_id)
        store.client.put_object(Bucket=store.bucket, Key=f"{base}dump", Body=b"x" * 64)
        manifest = BackupManifest(
            backup_id=backup_id, app=APP, dump_key=f"{base}dump", size=64, sha256="0" * 64,
            server_version="17.5", pg_dump_version="17.5", started_at=at, snapshot_at=at,
            finished_at=at + timedelta(seconds=30), tables={f"public.table_{t:02d}": 1000 + t for t in range(TABLES)}, source="u@h:5432/d",
        )  # fmt: skip
        store.put_json(f"{base}manifest.json", mac.sign(manifest.to_json()))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


def counted(clients: list[Any]) -> Counter[str]:
    """Counts every request the clients send, by operation."""
    requests: Counter[str] = Counter()
    for client in clients:
        client.meta.events.register("before-call", lambda model, **_: requests.update([model.name]))
    return requests


def measured(clients: list[Any], action: Callable[[], T]) -> tuple[T, int, float]:
    """What `action` returns, the requests it sent and its seconds."""
    requests = counted(clients)
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    for client in clients:
        client.meta.events.unregister("before-call")
    return result, sum(requests.values()), seconds


def one_history(count: int) -> str:
    bucket = f"{BUCKET}-{count}"  # moto keeps its state for the process: one bucket per size
    with moto_with_bucket(bucket):
        key = boto3.client("kms", region_name=REGION).create_key(
            KeyUsage="GENERATE_VERIFY_MAC", KeySpec="HMAC_256"
        )
        mac = KmsMac(key["KeyMetadata"]["Arn"])
        store = S3Store(bucket, REGION)
        clients = [store.client, mac.client]
        write_backups(store, mac, count)
        scanned, scan_requests, scan_seconds = measured(
            clients, lambda: scan_catalog(store, "backups", APP, verifier=mac)
        )
        assert len(scanned) == count, (len(scanned), count)
        _, _, build_seconds = measured(clients, lambda: write_index(store, "backups", APP, mac))
        write_backups(store, mac, 1, newest=True)
        _, rewrite_requests, rewrite_seconds = measured(
            clients, lambda: write_index(store, "backups", APP, mac)
        )
        size = store.client.head_object(Bucket=bucket, Key=f"backups/{APP}/{INDEX}")["ContentLength"]
        reads = []
        for _ in range(READS_PER_CUTOVER):
            read, requests, seconds = measured(
                clients, lambda: load_catalog(store, "backups", APP, verifier=mac)
            )
            assert read.indexed and len(read.entries) == count + 1, (read.note, len(read.entries))
            reads.append((requests, seconds))
    total = sum(s for _, s in reads)
    return (f"{count:>8} | {scan_requests:>8} {scan_seconds:>6.2f} | {build_seconds:>7.1f} {rewrite_requests:>11} "
            f"{rewrite_seconds:>5.2f} {size / 1024:>8.0f} | {reads[0][0]:>8} {total / len(reads):>7.3f} "
            f"{sum(r for r, _ in reads):>11} {total:>5.2f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backups", type=int, nargs="+", default=[10, 1000, 5000])
    args = parser.parse_args()
    print(f"{'backups':>8} | {'scan req':>8} {'s':>6} | {'build s':>7} {'rewrite req':>11} {'s':>5} "
          f"{'index KB':>8} | {'read req':>8} {'s/read':>7} {'cutover req':>11} {'s':>5}")  # fmt: skip
    for count in args.backups:
        print(one_history(count))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
