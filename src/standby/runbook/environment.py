"""What every runbook's steps work with, built once per run from the standby manifest.

The manifest and the backup store, the two sides (the primary on Heroku, the standby on AWS), and the
PostgreSQL programs, found when a step first needs one: the AI switch and the drill's teardown run on a
laptop without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Final

from standby.backup_store import BackupStore
from standby.catalog import CatalogEntry
from standby.catalog_index import read_catalog
from standby.integrity import KmsMac
from standby.pg_tools import PgTool, find_tool
from standby.primary_side import HerokuSide
from standby.runbook.engine import RunContext
from standby.standby_manifest import StandbyManifest
from standby.standby_side import AwsStandby

HEALTH_TIMEOUT: Final = 300.0  # seconds for the standby's web tasks to turn healthy
MAINTENANCE_DB: Final = "postgres"  # where databases are created, renamed and dropped from


@dataclass
class RunbookEnv:
    manifest: StandbyManifest
    store: BackupStore
    primary: HerokuSide
    standby: AwsStandby
    pg_bin: Path | None = None  # where pg_dump and pg_restore are; None: $STANDBY_PG_BIN, PATH, bundled
    health_timeout: float = HEALTH_TIMEOUT
    jobs: int = 2

    @property
    def app(self) -> str:
        return self.manifest.app

    @cached_property
    def backup_mac(self) -> KmsMac | None:
        """Signs the backups the runbooks take and verifies every manifest they read."""
        key = self.manifest.backup_mac_key
        return KmsMac(key, self.manifest.region) if key else None

    @cached_property
    def runbook_mac(self) -> KmsMac | None:
        """Signs the journals the runbooks write and verifies the ones they resume from."""
        key = self.manifest.runbook_mac_key
        return KmsMac(key, self.manifest.region) if key else None

    def catalog(self) -> list[CatalogEntry]:
        """The app's backups, each manifest verified (a forged or unsigned one counts as failed)."""
        return read_catalog(self.store, self.manifest.backup_prefix, self.app, verifier=self.backup_mac)

    @cached_property
    def pg_dump(self) -> PgTool:
        return find_tool("pg_dump", self.pg_bin)

    @cached_property
    def pg_restore(self) -> PgTool:
        return find_tool("pg_restore", self.pg_bin)


class EnvStep:
    """A step that works with the runbook's environment; `verify` checks nothing more unless overridden."""

    name = ""

    def __init__(self, env: RunbookEnv) -> None:
        self.env = env

    def verify(self, ctx: RunContext) -> None:
        return None
