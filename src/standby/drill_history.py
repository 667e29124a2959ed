"""Each drill's figures, kept in the standby bucket beside the backups, so later commands can forecast
how long a restore (and so a cutover) of today's backup will take.

One JSON document per drill at `drills/<app>/<run_id>.json`; names, sizes and times only.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Final

from standby import catalog, catalog_index
from standby.backup_store import BackupStore

PREFIX: Final = "drills"
FORECAST_FROM: Final = 5  # the median of this many newest drills: one slow day does not skew it


@dataclass(frozen=True)
class DrillFigures:
    app: str
    run_id: str
    finished_at: str  # ISO 8601, UTC
    backup_id: str
    dump_bytes: int
    restore_seconds: float
    time_to_healthy_seconds: float  # restore + verify + one web task healthy: the drill's RTO
    backup_age_seconds: float  # the data a disaster at the drill's start would have lost

    @property
    def throughput_mb_s(self) -> float:
        return round(self.dump_bytes / 1e6 / self.restore_seconds, 2) if self.restore_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "throughput_mb_s": self.throughput_mb_s}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DrillFigures | None:
        """The figures, or None for a document from another version or a broken one: it forecasts nothing."""
        try:
            figures = cls(**{name: doc[name] for name in cls.__dataclass_fields__})
            numbers = (figures.dump_bytes, figures.restore_seconds, figures.time_to_healthy_seconds,
                       figures.backup_age_seconds)  # fmt: skip
            finished = datetime.fromisoformat(figures.finished_at)
        except (KeyError, TypeError, ValueError):
            return None
        if finished.tzinfo is None or not all(isinstance(n, int | float) and n >= 0 for n in numbers):
            return None
        return figures

    @property
    def finished(self) -> datetime:
        return datetime.fromisoformat(self.finished_at)


def key(app: str, run_id: str) -> str:
    return f"{PREFIX}/{app}/{run_id}.json"


def record_drill(store: BackupStore, figures: DrillFigures) -> str:
    where = key(figures.app, figures.run_id)
    store.put_json(where, figures.to_json())
    return where


def drill_history(store: BackupStore, app: str) -> list[DrillFigures]:
    """Every recorded drill of `app`, oldest first (run ids start with their UTC time)."""
    found = []
    for name in sorted(store.list_keys(f"{PREFIX}/{app}/")):
        doc = store.get_json(name)
        figures = DrillFigures.from_json(doc) if isinstance(doc, dict) else None
        if figures is not None:
            found.append(figures)
    return found


def forecast_restore_seconds(history: list[DrillFigures], dump_bytes: int) -> float | None:
    """The restore time of a dump of `dump_bytes`, at the median throughput of the newest drills."""
    rates = [f.dump_bytes / f.restore_seconds for f in history[-FORECAST_FROM:] if f.restore_seconds > 0]
    if not rates:
        return None
    return round(dump_bytes / statistics.median(rates), 1)


def forecast_note(store: BackupStore, backup_prefix: str, app: str) -> str:
    """ " (forecast from earlier drills: N s)" for the newest backup, or "" before the first drill."""
    newest = catalog.newest_complete(catalog_index.read_catalog(store, backup_prefix, app))
    if newest is None or newest.manifest is None:
        return ""
    seconds = forecast_restore_seconds(drill_history(store, app), newest.manifest.size)
    return f" (forecast from earlier drills: {seconds} s)" if seconds is not None else ""
