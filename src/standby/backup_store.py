"""Where backups are kept: an S3 bucket, or a local folder. Both honour one small contract.

The contract (tested by one suite against both): a streamed write is all-or-nothing (an interrupted
write leaves no object), JSON documents round-trip, listing returns every key under a prefix, and
reading a missing key returns None.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
import threading
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from standby import aws_clients
from standby.errors import StandbyError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB: Final = 1024 * 1024
S3_MIN_PART: Final = 5 * MIB
S3_MAX_PARTS: Final = 10_000
STREAM_CHUNK: Final = 4 * MIB


# The tag the bucket's lifecycle rule expires by (BackupVault); objects without it never expire.
EXPIRABLE: Final = ("standby-retention", "expirable")


class StoreError(StandbyError):
    """The backup store refused or failed a request."""


class BackupStore(Protocol):
    def describe(self) -> str: ...
    def write_stream(self, key: str, parts: Iterable[bytes]) -> int:
        """Write the concatenation of `parts` (each but the last >= 5 MiB) to `key`; return its size."""
        ...

    def read_stream(self, key: str) -> Iterator[bytes]:
        """The object's bytes, in order, in chunks."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The object as a file on this machine, when the store is a folder (no copy needed)."""
        ...

    def put_json(self, key: str, document: Any, compress: bool = False) -> None:
        """Write a JSON document; `compress`: compact and gzipped (get_json reads either)."""
        ...

    def get_json(self, key: str) -> Any | None: ...
    def list_keys(self, prefix: str, start_after: str = "") -> list[str]:
        """Every key under `prefix`, in order; with `start_after`, only the keys after it."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no such object."""
        ...

    def mark_expirable(self, keys: Iterable[str]) -> int:
        """Let the bucket's lifecycle rule expire these objects (the retention in code decides which)."""
        ...


class S3Store:
    """A bucket. boto3 honours AWS_ENDPOINT_URL, so the same code reaches moto or MinIO."""

    def __init__(self, bucket: str, region: str | None = None, *, parallel: int = 4) -> None:
        self.bucket = bucket
        self.parallel = parallel
        # A parallel backup uploads up to four streams through this one client, `parallel` parts each.
        self.client: S3Client = aws_clients.client(
            "s3",
            region,
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=4 * parallel + 4,
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}"

    def write_stream(self, key: str, parts: Iterable[bytes]) -> int:
        """A multipart upload with up to `parallel` parts in flight; aborted on any failure."""
        upload_id = self._call("create_multipart_upload", Bucket=self.bucket, Key=key)["UploadId"]
        slots = threading.BoundedSemaphore(self.parallel)  # bounds memory: parts in flight + one being read
        futures: list[Future[dict[str, Any]]] = []
        size = 0
        try:
            with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="s3-part") as pool:
                for number, body in enumerate(parts, start=1):
                    if number > S3_MAX_PARTS:
                        raise StoreError(f"more than {S3_MAX_PARTS} parts: use a larger part size.")
                    slots.acquire()
                    size += len(body)
                    future = pool.submit(self._upload_part, key, upload_id, number, body)
                    future.add_done_callback(lambda _: slots.release())
                    futures.append(future)
                    _raise_first_failure(futures)
                completed = [f.result() for f in futures]
            if not completed:  # an empty stream is still an object
                completed = [self._upload_part(key, upload_id, 1, b"")]
            self._call(
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": completed},
            )
        except BaseException:
            # If even the abort fails, the bucket's lifecycle rule cleans up abandoned uploads.
            with contextlib.suppress(BotoCoreError, ClientError):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise
        return size

    def _upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        answer = self._call(
            "upload_part", Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        for checksum in (
            "ChecksumCRC32",
            "ChecksumCRC32C",
            "ChecksumCRC64NVME",
            "ChecksumSHA1",
            "ChecksumSHA256",
        ):
            if checksum in answer:
                part[checksum] = answer[checksum]
        return part

    def read_stream(self, key: str) -> Iterator[bytes]:
        """One streaming GET: the restore consumes the dump in order as it arrives."""
        answer = self._call("get_object", Bucket=self.bucket, Key=key)
        try:
            yield from answer["Body"].iter_chunks(STREAM_CHUNK)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise StoreError(f"reading s3://{self.bucket}/{key} failed midway: {exc}") from None

    def local_path(self, key: str) -> Path | None:
        return None

    def put_json(self, key: str, document: Any, compress: bool = False) -> None:
        encoding = {"ContentEncoding": "gzip"} if compress else {}
        self._call("put_object", Bucket=self.bucket, Key=key, Body=_encode(document, compress),
                   ContentType="application/json", **encoding)  # fmt: skip

    def get_json(self, key: str) -> Any | None:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StoreError(f"cannot read s3://{self.bucket}/{key}: {exc}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot read s3://{self.bucket}/{key}: {exc}") from None
        return _decode(answer["Body"].read())

    def mark_expirable(self, keys: Iterable[str]) -> int:
        marked = 0
        for key in keys:
            tags = self._call("get_object_tagging", Bucket=self.bucket, Key=key)["TagSet"]
            if {"Key": EXPIRABLE[0], "Value": EXPIRABLE[1]} in tags:
                continue
            kept = [t for t in tags if t["Key"] != EXPIRABLE[0]]
            tagging = {"TagSet": [*kept, {"Key": EXPIRABLE[0], "Value": EXPIRABLE[1]}]}
            self._call("put_object_tagging", Bucket=self.bucket, Key=key, Tagging=tagging)
            marked += 1
        return marked

    def size(self, key: str) -> int | None:
        # Listed, not HEADed: a HEAD needs s3:GetObject, which the backup writer (checking which backups
        # are whole for retention) must not have on dumps.
        try:
            answer = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot look at s3://{self.bucket}/{key}: {exc}") from None
        found = [item for item in answer.get("Contents", []) if item["Key"] == key]
        return int(found[0]["Size"]) if found else None

    def list_keys(self, prefix: str, start_after: str = "") -> list[str]:
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, StartAfter=start_after
            ):
                keys += [item["Key"] for item in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot list s3://{self.bucket}/{prefix}: {exc}") from None
        return keys

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(
                f"S3 {operation} on s3://{self.bucket}/{kwargs.get('Key', '')} failed: {exc}"
            ) from None


class LocalStore:
    """A folder. Writes go to a temporary file renamed into place, so readers never see half a dump."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return f"file://{self.root}"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StoreError(f"key {key!r} escapes the store folder.")
        return path

    def write_stream(self, key: str, parts: Iterable[bytes]) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as out:
                for body in parts:
                    out.write(body)
                    size += len(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return size

    def read_stream(self, key: str) -> Iterator[bytes]:
        path = self.local_path(key)
        if path is None:
            raise StoreError(f"no object {key} in {self.describe()}.")
        with path.open("rb") as stream:
            while chunk := stream.read(STREAM_CHUNK):
                yield chunk

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def put_json(self, key: str, document: Any, compress: bool = False) -> None:
        self.write_stream(key, [_encode(document, compress)])

    def get_json(self, key: str) -> Any | None:
        path = self._path(key)
        return _decode(path.read_bytes()) if path.is_file() else None

    def mark_expirable(self, keys: Iterable[str]) -> int:
        return 0  # a folder has no lifecycle rule: nothing there expires by itself

    def size(self, key: str) -> int | None:
        path = self.local_path(key)
        return path.stat().st_size if path is not None else None

    def list_keys(self, prefix: str, start_after: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(
            k for k in keys if k.startswith(prefix) and k > start_after and not Path(k).name.startswith(".")
        )


def _encode(document: Any, compress: bool) -> bytes:
    if compress:  # large documents (the catalog index): a tenth of the bytes to store and to fetch
        return gzip.compress(json.dumps(document, sort_keys=True, separators=(",", ":")).encode(), mtime=0)
    return json.dumps(document, indent=2, sort_keys=True).encode()


def _decode(body: bytes) -> Any:
    """A JSON document, gzipped or not (JSON never starts with gzip's magic bytes)."""
    if body[:2] == b"\x1f\x8b":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"a gzipped document that does not decompress: {exc}") from None
    return json.loads(body)


def _raise_first_failure(futures: list[Future[dict[str, Any]]]) -> None:
    for future in futures:
        if future.done() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]


def open_store(
    bucket: str | None = None, folder: Path | None = None, region: str | None = None
) -> BackupStore:
    if folder is not None:
        return LocalStore(folder)
    if bucket:
        return S3Store(bucket, region)
    raise StandbyError("no backup store: pass --bucket NAME (or --folder PATH), or a standby manifest.")
