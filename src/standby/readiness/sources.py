"""What the readiness checks read, each read once per status run: the catalog, the drills, the live side,
Heroku (through a client made on first use: without a key, only the checks that need Heroku say so)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from standby import catalog, catalog_index, live_side
from standby.aws_errors import AWS_ERRORS, aws_failure, error_code
from standby.backup_store import BackupStore
from standby.catalog import BackupManifest, CatalogEntry
from standby.drill_history import DrillFigures, drill_history
from standby.heroku_api import HerokuClient
from standby.integrity import KmsMac
from standby.standby_manifest import StandbyManifest
from standby.standby_side import AwsStandby


@dataclass
class Sources:
    manifest: StandbyManifest
    store: BackupStore
    standby: AwsStandby
    heroku_client: Callable[[], HerokuClient]
    now: datetime
    pg_bin: Path | None = None
    figures: dict[str, float | None] = field(default_factory=dict)  # what the checks measured, published

    @property
    def app(self) -> str:
        return self.manifest.app

    @cached_property
    def heroku(self) -> HerokuClient:
        return self.heroku_client()

    @cached_property
    def catalog(self) -> list[CatalogEntry]:
        key = self.manifest.backup_mac_key
        verifier = KmsMac(key, self.manifest.region) if key else None
        return catalog_index.read_catalog(
            self.store, self.manifest.backup_prefix, self.app, self.now, verifier
        )

    @cached_property
    def complete(self) -> list[CatalogEntry]:
        """Complete backups, newest data first."""
        found = [e for e in self.catalog if e.manifest is not None]
        return sorted(
            found, key=lambda e: e.manifest.snapshot_at if e.manifest else e.started_at, reverse=True
        )

    @cached_property
    def newest(self) -> BackupManifest | None:
        """The newest backup a restore would use: complete, and its dump whole."""
        entry = catalog.first_intact(self.store, self.complete[:5], [])
        return entry.manifest if entry else None

    @cached_property
    def drills(self) -> list[DrillFigures]:
        return drill_history(self.store, self.app)

    @cached_property
    def live(self) -> str:
        """`heroku`, or the standby region that serves the app (standby.live_side)."""
        return live_side.live_place(self.manifest)

    @property
    def live_on_heroku(self) -> bool:
        return self.live == live_side.HEROKU

    @cached_property
    def db_instance(self) -> dict[str, Any] | None:
        """The standby's RDS instance as RDS describes it; None when it does not exist."""
        instance = self.manifest.database_instance
        if not instance:
            return None
        try:
            found = self.standby.client("rds").describe_db_instances(DBInstanceIdentifier=instance)
        except AWS_ERRORS as exc:
            if isinstance(exc, ClientError) and error_code(exc) == "DBInstanceNotFound":
                return None
            raise aws_failure(exc, f"describing the standby database {instance}") from None
        return dict(found["DBInstances"][0]) if found["DBInstances"] else None

    def age(self, moment: datetime) -> float:
        return round((self.now - moment).total_seconds(), 1)
