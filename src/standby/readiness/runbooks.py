"""The control path at rest: nobody holds the app's lock, and no runbook stopped halfway."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from standby.readiness.check import Check, critical, human, ok, warning
from standby.readiness.sources import Sources
from standby.runbook.journal import Journal, JournalStore
from standby.runbook.lock import DynamoDbLock

# An unfinished one of these leaves the app between two states (fenced, half moved, half promoted).
CHANGES_THE_APP: Final = ("cutover", "failback", "recover_db", "rollback")
LEAVES_LEFTOVERS: Final = ("drill", "switch_ai")


def runbooks(src: Sources, journal_dir: Path) -> Check:
    # Read without the runbook key, which only the operator may use: journals are written under a prefix
    # only the operator may write, and nothing here acts on what they say; the runbooks verify them.
    journals = JournalStore(journal_dir, src.store)
    open_runs: list[Journal] = [
        j for name in (*CHANGES_THE_APP, *LEAVES_LEFTOVERS)
        if (j := journals.load(src.app, name)) is not None and not j.finished
    ]  # fmt: skip
    held = DynamoDbLock(src.manifest.lock_table, src.app, src.manifest.region).holder()
    said = []
    if held:
        alive = int(held.get("expires_at", 0)) >= time.time()
        since = datetime.fromtimestamp(int(held.get("acquired_at", 0)), UTC)
        about = (
            f"{held.get('runbook', 'a run')} of {held.get('who', 'someone')} holds the lock since "
            f"{since:%Y-%m-%d %H:%M} UTC ({human(src.age(since))}; "
            f"{'its lease is renewed' if alive else 'its lease ran out: the run died'})"
        )
        # Restore-ahead takes the lock after every backup, when this check runs too: that is the standby
        # working, not a runbook under way.
        # ...unless it holds it for longer than two backup intervals: a restore that hangs blocks a cutover.
        fresh = src.age(since) <= 2 * src.manifest.backup_interval_seconds
        if alive and fresh and held.get("runbook") == "restore" and not open_runs:
            return ok("runbooks", f"{about}: a restore is under way; no runbook is unfinished")
        said.append(about)
    said += [f"{j.runbook} run {j.run_id} stopped after {len(j.steps)} steps, unfinished" for j in open_runs]
    fenced = src.standby.primary_fenced_note() if src.live_on_heroku else None
    if fenced is not None:
        # Heroku serves the app, yet a runbook recorded it fenced: `pulumi up -s primary` keeps it at zero.
        return critical(
            "runbooks",
            "; ".join([*said, f"Heroku is the live side but is recorded fenced ({fenced})"]),
            "finish the runbook that fenced it (--resume), or, if Heroku is to serve, fail back "
            "(`scripts/failback.py`), which lifts the fence and the record together.",
        )
    if any(j.runbook in CHANGES_THE_APP for j in open_runs):
        return critical(
            "runbooks",
            "; ".join(said) + ": the app may be between two states",
            "finish it: rerun the same script with --resume (or --restart after checking what it did); "
            "docs/runbooks.md says what each step leaves behind.",
        )
    if said:
        return warning(
            "runbooks",
            "; ".join(said),
            "wait for the run to finish; a dead one's lock is taken with --take-over, its journal finished with --resume.",
        )
    return ok("runbooks", "the lock is free and no runbook is unfinished")
