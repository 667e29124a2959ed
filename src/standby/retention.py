"""Retention in code: the newest complete backups are never deleted, whatever their age.

S3's lifecycle rule can only count days, and days alone can delete the last good backup (backups stopped
for a month: every one of them is old). So the rule (BackupVault) expires only objects tagged expirable,
and this tags a backup's objects once it is no longer among the newest `keep` complete ones; failed
backups are tagged at once; a backup without a manifest is tagged only after a day (it may be running).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from standby import catalog, catalog_index
from standby.backup_store import BackupStore

KEEP_NEWEST: Final = 4  # an hour of 15-minute backups, whatever happens to the schedule
RUNNING_GRACE: Final = timedelta(days=1)  # an incomplete backup younger than this may be still running


def apply_retention(
    store: BackupStore,
    prefix: str,
    app: str,
    keep: int = KEEP_NEWEST,
    verifier: catalog.Verifier | None = None,
) -> list[str]:
    """Mark every backup the newest `keep` complete ones make redundant; returns their ids. A forged
    manifest (refused by `verifier`) keeps nothing: it counts as failed."""
    now = datetime.now(UTC)
    entries = catalog_index.read_catalog(store, prefix, app, now, verifier)
    # The newest complete backups whose dumps are whole: a manifest over a missing dump keeps nothing safe.
    complete = [
        e
        for e in catalog.NEWEST.candidates(entries)
        if e.manifest and not catalog.dump_problem(store, e.manifest)
    ]
    kept = {e.backup_id for e in complete[:keep]}
    if len(kept) < keep:
        # Fewer whole backups than we keep: no complete backup may go, they are all we have.
        kept |= {e.backup_id for e in catalog.NEWEST.candidates(entries)}
    expirable = [
        e
        for e in entries
        if e.backup_id not in kept
        and (e.state is not catalog.BackupState.INCOMPLETE or now - e.started_at > RUNNING_GRACE)
    ]
    base = catalog.backup_prefix(prefix, app)
    keys = store.list_keys(base)
    for entry in expirable:
        store.mark_expirable(k for k in keys if k.startswith(f"{base}{entry.backup_id}/"))
    return [e.backup_id for e in expirable]
