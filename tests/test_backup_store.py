"""One contract, two stores: S3 (moto) and a local folder must behave the same."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from standby.backup_store import MIB, BackupStore, LocalStore, S3Store


@pytest.fixture(params=["s3", "folder"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BackupStore]:
    if request.param == "folder":
        yield LocalStore(tmp_path / "store")
        return
    request.getfixturevalue("aws_env")
    bucket = f"contract-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-east-2"}
    )
    yield S3Store(bucket, "us-east-2", parallel=2)


def test_a_streamed_write_reads_back_whole(store: BackupStore) -> None:
    parts = [bytes([i]) * (5 * MIB) for i in range(3)] + [b"tail"]
    assert store.write_stream("a/b/dump", iter(parts)) == 15 * MIB + 4
    assert store.list_keys("a/") == ["a/b/dump"]


def test_an_interrupted_write_leaves_no_object(store: BackupStore) -> None:
    def failing() -> Iterator[bytes]:
        yield b"x" * (5 * MIB)
        raise OSError("pg_dump died")

    with pytest.raises(OSError, match="pg_dump died"):
        store.write_stream("a/dump", failing())
    assert store.list_keys("a/") == []


def test_json_documents_round_trip_and_missing_ones_are_none(store: BackupStore) -> None:
    store.put_json("x/manifest.json", {"b": [1, 2], "a": "é"})
    assert store.get_json("x/manifest.json") == {"b": [1, 2], "a": "é"}
    assert store.get_json("x/absent.json") is None


def test_a_compressed_document_reads_back_and_a_broken_one_is_refused(store: BackupStore) -> None:
    big = {"backups": [{"id": i, "tables": {f"public.t{t}": t for t in range(70)}} for i in range(50)]}
    store.put_json("x/index.json", big, compress=True)
    assert store.get_json("x/index.json") == big
    assert store.size("x/index.json") < len(json.dumps(big)) / 5  # compact and gzipped
    store.write_stream("x/cut.json", [b"\x1f\x8b\x08\x00" + b"cut short"])
    with pytest.raises(ValueError, match="does not decompress"):
        store.get_json("x/cut.json")


def test_listing_is_by_prefix(store: BackupStore) -> None:
    for key in ("p/1/dump", "p/1/manifest.json", "p/2/dump", "q/1/dump"):
        store.put_json(key, {})
    assert sorted(store.list_keys("p/")) == ["p/1/dump", "p/1/manifest.json", "p/2/dump"]
    assert store.list_keys("nothing/") == []


def test_an_empty_stream_is_an_empty_object(store: BackupStore) -> None:
    assert store.write_stream("e/dump", iter([])) == 0
    assert store.list_keys("e/") == ["e/dump"]


def test_read_stream_gives_the_objects_bytes_in_order(store: BackupStore) -> None:
    body = b"".join(bytes([i % 251]) * 1000 for i in range(12_000))  # 12 MB: several chunks
    store.write_stream("f/dump", iter([body[: 6 * MIB], body[6 * MIB :]]))
    assert b"".join(store.read_stream("f/dump")) == body
