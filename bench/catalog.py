#!/usr/bin/env python3
"""Benchmark: what reading the backup catalog costs as the history grows (issue 18's first bottleneck).

    python bench/catalog.py                     # 10, 1,000 and 5,000 backups
    python bench/catalog.py --backups 10 200    # a quick look

Starts moto's S3 and KMS on loopback, writes N signed backups (a small dump and a manifest signed with a
KMS HMAC key, as the backup task writes them), then times `read_catalog` with the manifests verified, as
every runbook reads it, and counts its requests (S3 and KMS). A cutover reads the catalog five times or
more; the last column is five reads. moto answers in about a millisecond; S3 in tens: the request count
is what grows the RTO.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from harness import moto_with_bucket

from standby.backup_store import S3Store
from standby.catalog import BackupManifest, backup_prefix, new_backup_id, read_catalog
from standby.integrity import KmsMac

BUCKET = "bench-catalog"
APP = "acme"
READS_PER_CUTOVER = 5
REGION = "us-east-2"


def write_backups(store: S3Store, mac: KmsMac, count: int) -> None:
    start = datetime.now(UTC) - timedelta(minutes=15 * count)

    def one(i: int) -> None:
        at = start + timedelta(minutes=15 * i)
        backup_id = new_backup_id(at)
        base = backup_prefix("backups", APP, backup_id)
        store.client.put_object(Bucket=store.bucket, Key=f"{base}dump", Body=b"x" * 64)
        manifest = BackupManifest(
            backup_id=backup_id, app=APP, dump_key=f"{base}dump", size=64, sha256="0" * 64,
            server_version="17.5", pg_dump_version="17.5", started_at=at, snapshot_at=at,
            finished_at=at + timedelta(seconds=30), tables={"public.orders": 1000}, source="u@h:5432/d",
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backups", type=int, nargs="+", default=[10, 1000, 5000])
    args = parser.parse_args()
    print(f"{'backups':>8} {'requests/read':>14} {'S3 GET':>7} {'S3 LIST':>8} {'KMS':>5} {'s/read':>7} "
          f"{'s/cutover (x5)':>15}")  # fmt: skip
    for count in args.backups:
        bucket = f"{BUCKET}-{count}"  # moto keeps its state for the process: one bucket per size
        with moto_with_bucket(bucket):
            key = boto3.client("kms", region_name=REGION).create_key(
                KeyUsage="GENERATE_VERIFY_MAC", KeySpec="HMAC_256"
            )
            mac = KmsMac(key["KeyMetadata"]["Arn"])
            store = S3Store(bucket, REGION)
            write_backups(store, mac, count)
            requests = counted([store.client, mac.client])
            started = time.perf_counter()
            catalog = read_catalog(store, "backups", APP, verifier=mac)
            seconds = time.perf_counter() - started
            assert len(catalog) == count, (len(catalog), count)
            total = sum(requests.values())
            print(f"{count:>8} {total:>14} {requests['GetObject']:>7} {requests['ListObjectsV2']:>8} "
                  f"{requests['VerifyMac']:>5} {seconds:>7.2f} {seconds * READS_PER_CUTOVER:>15.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
