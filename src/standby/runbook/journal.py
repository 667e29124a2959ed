"""The journal of a runbook run: each step's start, end and outcome, saved locally and in the store.

The local copy survives a lost network; the copy in the standby region's bucket survives a lost laptop.
Both hold names, times and measured facts only; never a secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from standby.backup_store import BackupStore
from standby.errors import ConfigError, SafetyRefusal
from standby.integrity import FIELD as MAC_FIELD
from standby.integrity import Mac


@dataclass
class StepRecord:
    name: str
    started: float
    ended: float | None = None
    outcome: str = "started"  # started, done, already done, failed
    detail: str = ""

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


@dataclass
class Journal:
    app: str
    runbook: str
    run_id: str
    started_at: str
    steps: list[StepRecord] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    fact_owners: dict[str, str] = field(default_factory=dict)  # fact -> the step that first wrote it
    finished: bool = False
    outcome: str = "running"

    @classmethod
    def new(cls, app: str, runbook: str, run_id: str) -> Journal:
        return cls(app, runbook, run_id, datetime.now(UTC).isoformat())

    def record(self, name: str) -> StepRecord | None:
        return next((r for r in self.steps if r.name == name), None)

    def start(self, name: str, at: float) -> None:
        record = self.record(name)
        if record is None:
            self.steps.append(StepRecord(name, at))
        else:  # a resumed step: started again
            record.started, record.ended, record.outcome, record.detail = at, None, "started", ""

    def end(self, name: str, at: float, outcome: str, detail: str, facts: dict[str, Any]) -> None:
        record = self.record(name)
        assert record is not None
        record.ended, record.outcome, record.detail = at, outcome, detail
        self.facts = dict(facts)

    def finish(self, outcome: str, facts: dict[str, Any]) -> None:
        self.finished, self.outcome, self.facts = True, outcome, dict(facts)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Journal:
        steps = [StepRecord(**s) for s in doc.get("steps", [])]
        return cls(**{**{k: v for k, v in doc.items() if k != MAC_FIELD}, "steps": steps})


@dataclass(frozen=True)
class JournalStore:
    """Where journals live: `<folder>/<app>-<runbook>.json` and, if given, the store's `runbooks/...`.

    With a `mac` (the runbook key of the standby manifest), both copies are signed when saved and checked
    when loaded: a journal written with the bucket's rights alone is refused, never resumed from."""

    folder: Path
    store: BackupStore | None = None
    mac: Mac | None = None

    def _local(self, app: str, runbook: str) -> Path:
        return self.folder / f"{app}-{runbook}.json"

    @staticmethod
    def _key(app: str, runbook: str) -> str:
        return f"runbooks/{app}/{runbook}/current.json"

    def save(self, journal: Journal) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        local = self._local(journal.app, journal.runbook)
        document = self.mac.sign(journal.to_json()) if self.mac else journal.to_json()
        temporary = local.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=2))
        temporary.replace(local)  # atomic: a crash never leaves half a journal
        if self.store is not None:
            self.store.put_json(self._key(journal.app, journal.runbook), document)

    def load(self, app: str, runbook: str) -> Journal | None:
        """The newest journal of this runbook: local copy, or the store's if newer or the only one."""
        candidates = []
        local = self._local(app, runbook)
        if local.is_file():
            candidates.append(_journal(lambda: json.loads(local.read_bytes()), str(local), self.mac))
        if self.store is not None:
            store, key = self.store, self._key(app, runbook)
            remote = _journal(lambda: store.get_json(key), f"{store.describe()}/{key}", self.mac)
            if remote is not None:
                candidates.append(remote)
        return max(candidates, key=lambda j: (j.started_at, len(j.steps)), default=None)


def _journal(read: Callable[[], Any], where: str, mac: Mac | None) -> Any:
    """The journal `read` returns (None when there is none), or a ConfigError saying which copy is damaged."""
    try:
        doc = read()
        if doc is None:
            return None
        if not isinstance(doc, dict):
            raise TypeError("not a JSON object")
        forged = mac.problem(doc) if mac is not None else None
        if forged:
            raise SafetyRefusal(
                f"the runbook journal {where} cannot be trusted: {forged}. Nothing was done. A journal "
                "written with the bucket's rights alone could make --resume skip the fence: find out who wrote "
                "it (S3 server access logs, CloudTrail), move it aside, check what the last real run did, then "
                "run again with --restart."
            )
        return Journal.from_json(doc)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(
            [
                f"the runbook journal {where} is damaged ({type(exc).__name__}). Move it aside and run again: "
                "with --resume if the other copy (local or in the bucket) is whole, else check what the last run "
                "did before --restart."
            ]
        ) from None
