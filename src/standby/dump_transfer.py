"""Bring a dump from the store to this machine while a restore already reads it.

`DumpTransfer` copies the store's stream into a local file (or, for a folder store, reads the file in
place) and hashes it on the way; `feed()` hands the file to a process's stdin as it grows. The restore
therefore loads data while the dump is still downloading, and knows whether the dump matches its
manifest the moment the last byte lands.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

from standby.backup_store import BackupStore, StoreError
from standby.errors import StandbyError

FEED_CHUNK: Final = 1024 * 1024


class DumpTransfer:
    def __init__(self, store: BackupStore, key: str, folder: Path) -> None:
        self._store = store
        self._key = key
        local = store.local_path(key)
        self.path = local or folder / key.rsplit("/", 1)[-1]
        self._copy = local is None
        self._available = 0
        self._done = False
        self._cancelled = threading.Event()
        self._error: Exception | None = None
        self._cond = threading.Condition()
        self.sha256 = ""
        self.size = 0
        self.finished_at = 0.0  # time.perf_counter() when the last byte was in
        self._thread = threading.Thread(target=self._run, name=f"transfer-{self.path.name}", daemon=True)

    def start(self) -> DumpTransfer:
        if self._copy:
            self.path.touch()  # readers may open it before the first byte lands
        self._thread.start()
        return self

    def _run(self) -> None:
        digest = hashlib.sha256()
        try:
            out: IO[bytes] | None = self.path.open("wb") if self._copy else None
            try:
                for chunk in self._store.read_stream(self._key):
                    if self._cancelled.is_set():
                        raise StoreError(f"reading {self._key} was cancelled")
                    digest.update(chunk)
                    if out is not None:
                        out.write(chunk)
                        out.flush()  # readers follow the file through the page cache
                    with self._cond:
                        self._available += len(chunk)
                        self._cond.notify_all()
            finally:
                if out is not None:
                    out.close()
            with self._cond:
                self.sha256, self.size, self._done = digest.hexdigest(), self._available, True
                self.finished_at = time.perf_counter()
                self._cond.notify_all()
        except Exception as exc:  # handed to whoever waits, as a store error or the disk's own
            error = (
                exc
                if isinstance(exc, StandbyError | OSError)
                else StoreError(f"reading {self._key} failed: {exc}")
            )
            with self._cond:
                self._error, self._done = error, True
                self._cond.notify_all()

    def cancel(self) -> None:
        """Stop downloading (the restore was refused): the next chunk ends the transfer."""
        self._cancelled.set()

    def wait_for(self, offset: int) -> int:
        """Block until more than `offset` bytes are there, or the transfer ended; return what is there."""
        with self._cond:
            self._cond.wait_for(lambda: self._available > offset or self._done)
            if self._error is not None:
                raise self._error
            return self._available

    def wait(self) -> None:
        """Block until the whole dump is there (and hashed)."""
        self.wait_for(1 << 62)

    @property
    def done(self) -> bool:
        with self._cond:
            return self._done

    def chunks(self) -> Iterator[bytes]:
        """The dump's bytes in order, as they arrive."""
        offset = 0
        with self.path.open("rb") as stream:
            while True:
                available = self.wait_for(offset)
                if available <= offset:
                    return  # done, and everything was read
                while offset < available:
                    chunk = stream.read(min(FEED_CHUNK, available - offset))
                    if not chunk:
                        break
                    offset += len(chunk)
                    yield chunk

    def feed(self, sink: IO[bytes]) -> threading.Thread:
        """Write the dump, as it arrives, into `sink` (a process's stdin), then close it."""

        def pump() -> None:
            # Either side may stop first: the reader (its exit status says why) or the transfer (the
            # restore learns why from wait()). The pump itself has nothing to add; it just closes the pipe.
            with contextlib.suppress(OSError, StandbyError):
                for chunk in self.chunks():
                    sink.write(chunk)
            with contextlib.suppress(OSError):
                sink.close()

        thread = threading.Thread(target=pump, name="dump-feed", daemon=True)
        thread.start()
        return thread
