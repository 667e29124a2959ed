"""A follower that really follows: a hot standby of a LocalPostgres server, by physical streaming
replication, which is what a Heroku follower is. A copy that does not stream cannot show lag, nor how old
a follower's data is; this one can be paused (`pg_wal_replay_pause()`) to fall behind on purpose.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

import psycopg

from standby.local.postgres import LocalPostgres


class StreamingFollower:
    """A standby of every database of `leader`, on its own socket; stopped and deleted on exit."""

    def __init__(self, leader: LocalPostgres) -> None:
        self._leader = leader
        self._folder = Path(tempfile.mkdtemp(prefix="standby-follower-"))
        self._data = self._folder / "data"
        self._user = leader.system_user  # the wheel runs its server as another user under root

    def __enter__(self) -> StreamingFollower:
        leader_socket = parse_qs(urlsplit(self._leader.admin_url).query)["host"][0]
        if self._user is not None:
            shutil.chown(self._folder, self._user)
        self._run(
            "pg_basebackup",
            "-D",
            str(self._data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "-h",
            leader_socket,
            "-U",
            "postgres",
        )
        self._run("pg_ctl", "-D", str(self._data), "-l", str(self._folder / "log"), "-w",
                  "-o", '-h ""', "-o", f"-k {self._folder}", "start")  # fmt: skip
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self._folder, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        tool = self._leader.bin_dir / program
        subprocess.run([str(tool), *args], check=True, capture_output=True, timeout=60, user=self._user)

    def url(self, dbname: str) -> str:
        """The follower's copy of `dbname`: read-only, as current as its replay."""
        return f"postgresql://postgres:@/{dbname}?host={self._folder}"

    def pause(self) -> None:
        """Stop replaying: the follower falls behind with every commit on the leader."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")

    def resume(self) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
