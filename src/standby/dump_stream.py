"""One `pg_dump` of an exported snapshot, streamed into the backup store as it writes, hashed on the way.

A single-stream backup is one of these; a parallel backup (`standby.parallel_dump`) runs several at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import subprocess
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import IO, Final

from standby.backup_store import S3_MAX_PARTS, S3_MIN_PART, BackupStore
from standby.errors import StandbyError
from standby.pg_tools import PgTool, PgVersion, widen_pipe
from standby.pg_url import Database

# Heroku's own machinery (event triggers that manage extensions); it does not belong in a restore.
EXCLUDED_SCHEMAS: Final = ("_heroku",)
READ_CHUNK: Final = 1024 * 1024


class StreamFailed(StandbyError):
    """pg_dump failed, or its upload did."""


class StreamStopped(StreamFailed):
    """Stopped on purpose: another stream of the same backup failed, and the backup stops as a whole."""


@dataclass(frozen=True)
class Dumped:
    key: str
    size: int
    sha256: str


def pg_dump_command(
    pg_dump: PgTool, source: Database, compression: str, snapshot: str, *selection: str
) -> list[str]:
    """pg_dump of the exported `snapshot` in the custom format; `selection` narrows it (--schema-only, ...)."""
    return [
        str(pg_dump.path),
        "--format=custom",
        f"--compress={compress_option(pg_dump.version, compression)}",
        f"--snapshot={snapshot}",
        "--no-password",
        "--lock-wait-timeout=60s",  # fail rather than queue behind a long DDL lock
        *[f"--exclude-schema={schema}" for schema in EXCLUDED_SCHEMAS],
        *selection,
        f"--dbname={source.conninfo}",
    ]


def compress_option(version: PgVersion, compression: str) -> str:
    """pg_dump before 16 takes only a gzip level: "gzip:1" becomes "1" there."""
    method, _, level = compression.partition(":")
    if version.major < 16 and method == "gzip":
        return level or "6"
    return compression


def part_size_for(requested: int, database_bytes: int) -> int:
    """Parts big enough that even a dump twice the database's size stays under S3's part limit."""
    return max(requested, S3_MIN_PART, -(-2 * database_bytes // S3_MAX_PARTS))


def stream_into_store(
    command: list[str],
    env: dict[str, str],
    store: BackupStore,
    key: str,
    part_size: int,
    stop: threading.Event | None = None,
) -> Dumped:
    """Run `command` and upload its output to `key` as it comes. Setting `stop` ends it with StreamFailed."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env}
    )
    assert process.stdout is not None and process.stderr is not None
    widen_pipe(process.stdout)
    errors = _drain(process.stderr)
    digest = hashlib.sha256()
    try:
        # Closed whatever happens: a store that gives up midway must not leave the reader thread waiting.
        with contextlib.closing(_parts(process.stdout, part_size, digest, stop)) as parts:
            size = store.write_stream(key, parts)
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        process.stdout.close()
    if process.wait() != 0:
        message = b"".join(errors).decode(errors="replace").strip() or f"exit code {process.returncode}"
        raise StreamFailed(f"pg_dump failed: {message}")
    return Dumped(key, size, digest.hexdigest())


def _parts(
    stream: IO[bytes], part_size: int, digest: hashlib._Hash, stop: threading.Event | None
) -> Generator[bytes, None, None]:
    """The stream cut into parts of `part_size`, hashed in order.

    A thread of its own reads the pipe as fast as pg_dump writes (hashing on the way), so pg_dump never
    waits while a part is written or uploaded; the queue bounds what is held to one part more.
    """
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=max(2, part_size // READ_CHUNK))

    finished = threading.Event()  # the consumer is gone: the reader must not wait on a full queue

    def hand(item: bytes | BaseException | None) -> bool:
        while not finished.is_set():
            with contextlib.suppress(queue.Full):
                chunks.put(item, timeout=0.2)
                return True
        return False

    def read() -> None:
        try:
            while chunk := stream.read(READ_CHUNK):
                digest.update(chunk)  # before it is handed on: the caller reads the digest once all is in
                if not hand(chunk):
                    return
            hand(None)
        except BaseException as exc:  # handed to the consumer (a pipe closed after a failure, say)
            hand(exc)

    threading.Thread(target=read, name="pg_dump-stdout", daemon=True).start()
    part = bytearray()
    try:
        while True:
            if stop is not None and stop.is_set():
                raise StreamStopped("stopped: another stream of this backup failed")
            try:
                chunk = chunks.get(timeout=0.5)  # a quiet pg_dump must not keep a stop from being seen
            except queue.Empty:
                continue
            if isinstance(chunk, BaseException):
                raise chunk
            if chunk is None:
                break
            part += chunk
            if len(part) >= part_size:
                yield bytes(part)
                part.clear()
        if part:
            yield bytes(part)
    finally:
        finished.set()


def _drain(stream: IO[bytes]) -> list[bytes]:
    """Read a pipe to its end in the background (so pg_dump never blocks on it); keep the tail."""
    chunks: list[bytes] = []

    def pump() -> None:
        for line in stream:
            chunks.append(line)
            del chunks[:-50]

    threading.Thread(target=pump, daemon=True, name="pg_dump-stderr").start()
    return chunks
