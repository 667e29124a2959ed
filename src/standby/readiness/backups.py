"""The data path: how old the newest backup is, whether the second region holds it, whether warm mode
restored it ahead."""

from __future__ import annotations

from typing import Final

from standby.backup_store import S3Store
from standby.catalog import BackupManifest, dump_problem
from standby.pg_url import parse_database_url
from standby.readiness.check import Check, critical, human, ok, warning
from standby.readiness.sources import Sources
from standby.restore import read_marker
from standby.standby_manifest import load_manifest
from standby.vocabulary import Mode

# S3 Replication Time Control replicates 99.99 % of objects within 15 minutes: a newer backup not there
# yet is replication at work, not a fault.
REPLICATION_GRACE: Final = 15 * 60


def backup_age(src: Sources) -> Check:
    rpo = src.manifest.rpo_seconds
    newest = src.newest
    if newest is None:
        failed = [e for e in src.catalog if e.failure]
        why = f" The newest failure: {failed[-1].failure.get('error')}." if failed else ""
        return critical(
            "backup-age",
            f"no complete, whole backup of {src.app}: a restore has nothing to restore.{why}",
            f"take one now (`python scripts/backup.py --app {src.app}`) and read the backup task's logs.",
        )
    age = src.age(newest.snapshot_at)
    src.figures["backup_age_seconds"] = age
    said = f"newest backup {newest.backup_id} holds data {human(age)} old (RPO {human(rpo)})"
    if age <= rpo:
        return ok("backup-age", said, age)
    failed = [e for e in src.catalog if e.failure and e.started_at > newest.started_at]
    why = f"; {len(failed)} failed since, the newest: {failed[-1].failure.get('error')}" if failed else ""
    fix = (
        "the schedule is late or failing: read the backup task's logs and the failure records "
        f"(`python scripts/backup.py list --app {src.app}`); `python scripts/backup.py` takes one now."
    )
    level = warning if age <= 2 * rpo else critical
    return level("backup-age", f"{said}: a disaster now loses more than the RPO{why}", fix, age)


def backup_replica(src: Sources) -> Check:
    second = src.manifest.second_region
    if not second:
        return warning(
            "backup-replica",
            "the standby has no second region: losing the standby region loses every backup",
            "set standby:regions.second and run `pulumi up -s standby`.",
        )
    newest = src.newest
    if newest is None:
        return critical("backup-replica", "no backup to replicate", "see backup-age.")
    replica = S3Store(load_manifest(src.app, second).backup_bucket, second)
    newer: list[BackupManifest] = []  # complete backups newer than the newest replicated one
    for entry in src.complete[:5]:
        manifest = entry.manifest
        assert manifest is not None
        if not _replicated(replica, manifest):
            newer.append(manifest)
            continue
        behind = src.age(manifest.snapshot_at) if newer else 0.0
        if not newer:
            return ok("backup-replica", f"{second} holds the newest backup {newest.backup_id}")
        said = f"{second} holds {manifest.backup_id} ({human(behind)} old), not the {len(newer)} newer"
        late = [m for m in newer if src.age(m.finished_at) > REPLICATION_GRACE]
        if not late:
            return ok("backup-replica", f"{said}: replication is under way", behind)
        return warning(
            "backup-replica",
            f"{said}: {', '.join(m.backup_id for m in late)} finished over {human(REPLICATION_GRACE)} ago",
            "check the bucket's replication status (`aws s3api head-object ... ReplicationStatus`) and its role.",
            behind,
        )
    return critical(
        "backup-replica",
        f"{second} holds none of the {len(newer)} newest backups: losing {src.manifest.region} loses the data",
        "check the replication rule of the backup bucket and its role (`pulumi up -s standby` declares them).",
    )


def _replicated(replica: S3Store, manifest: BackupManifest) -> bool:
    """The replica holds the manifest and the whole dump (listed, never read)."""
    base = manifest.dump_key.rsplit("/", 1)[0]
    return replica.size(f"{base}/manifest.json") is not None and dump_problem(replica, manifest) is None


def restore_ahead(src: Sources) -> Check:
    if src.manifest.base_mode is not Mode.WARM or not src.live_on_heroku:
        return ok("restore-ahead", "not in warm mode, or the standby is live: nothing is restored ahead")
    # The app's role reads the comment the restore left on its database; status needs no master password.
    url = src.standby.app_database_url()
    if not url:
        return warning(
            "restore-ahead",
            "the manifest names no app database URL (an older stack): which backup the standby holds is unknown",
            "run `pulumi up -s standby`.",
        )
    server = parse_database_url(url, "app database URL")
    marker = read_marker(server, server.dbname)
    newest = src.newest
    if marker is None:
        return critical(
            "restore-ahead",
            f"the standby database {server.dbname} holds no restored backup: a cutover restores everything",
            f"run `python scripts/restore.py --app {src.app} --ahead --yes`, then read the restore-ahead task's logs.",
        )
    age = src.age(marker.snapshot_at)
    src.figures["restore_ahead_age_seconds"] = age
    said = f"the standby holds backup {marker.backup_id} (data {human(age)} old, restored {human(src.age(marker.restored_at))} ago)"
    if (
        newest is None
        or marker.backup_id == newest.backup_id
        or age <= 2 * src.manifest.backup_interval_seconds
    ):
        return ok("restore-ahead", said, age)
    return warning(
        "restore-ahead",
        f"{said}; the newest is {newest.backup_id}: a cutover restores more than one backup's worth",
        "read the restore-ahead task's logs (it stands down while a runbook holds the lock).",
        age,
    )
