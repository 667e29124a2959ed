"""One backup of an app at a time: the schedule never overlaps itself, and says so with the numbers.

`backup.py run` takes a lease in the app's lock table under the backups' own item (`<app>/backup`; the
runbooks' item is the app's name, which the backup task's role cannot touch). A run that finds a live
backup holding it is skipped (exit 3) and says how long that backup has been running against the
schedule's interval. A backup that takes longer than the interval is reported when it ends: at this size
every other scheduled run is skipped, and the RPO target is out of reach.

The runbooks' own backups (the cutover's final backup, the failback's dump) do not take the lease: they
must run whatever the schedule does, and a concurrent scheduled backup only adds an older backup.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from standby.errors import SafetyRefusal, StandbyError
from standby.names import backup_lock_key
from standby.readiness.check import human
from standby.runbook.lock import DynamoDbLock, Holder, LockHeld
from standby.standby_manifest import StandbyManifest


class BackupStillRunning(SafetyRefusal):
    """The previous backup still runs: this run is skipped rather than overlap it."""


@contextmanager
def one_backup_at_a_time(manifest: StandbyManifest, say: Callable[[str], None]) -> Iterator[None]:
    """Hold the backups' lease while the block runs. A lease that cannot be taken at all (the table
    unreachable) does not stop the backup: a backup matters more than the overlap it would prevent."""
    lock = DynamoDbLock(manifest.lock_table, backup_lock_key(manifest.app), manifest.region)
    lease = None
    try:
        lease = lock.acquire(Holder("backup", who="backup.py", attempt=secrets.token_hex(4)))
    except LockHeld:
        raise BackupStillRunning(_still_running(_holder(lock), manifest)) from None
    except (StandbyError, ClientError, BotoCoreError) as exc:
        say(
            f"warning: backing up without the backups' lease, so a run could overlap this one: {_one_line(exc)}"
        )
    try:
        yield
    finally:
        if lease is not None:
            if lease.lost:
                say(
                    f"warning: the backups' lease was lost during this backup ({lease.lost}); a run may have overlapped it"
                )
            try:
                lease.release()
            except (StandbyError, ClientError, BotoCoreError) as exc:  # it runs out by itself
                say(f"warning: the backups' lease was not released (it expires by itself): {_one_line(exc)}")


def _holder(lock: DynamoDbLock) -> dict[str, str]:
    try:
        return lock.holder() or {}
    except (ClientError, BotoCoreError):
        return {}


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _still_running(held: dict[str, str], manifest: StandbyManifest) -> str:
    started = int(held.get("acquired_at", time.time()))
    running = time.time() - started
    interval = manifest.backup_interval_seconds
    at = datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds")
    text = (
        f"the backup started at {at} (process {held.get('pid', '?')} on {held.get('host', '?')}) is still "
        f"running after {human(running)}: this run is skipped, so backups never overlap."
    )
    if running > interval:
        text += " " + over_interval(running, manifest)
    return text


def over_interval(seconds: float, manifest: StandbyManifest) -> str:
    """What a backup longer than the schedule's interval means for the RPO, with the numbers."""
    interval = max(manifest.backup_interval_seconds, 1)
    cadence = interval * (1 + int(seconds // interval))
    return (
        f"A backup takes {human(seconds)}, longer than the {human(interval)} between scheduled runs: one "
        f"completes only every {human(cadence)} or so, and the newest backup's data can be "
        f"{human(cadence + seconds)} old, against an RPO of {human(manifest.rpo_seconds)}: out of reach at "
        "this size. Set backupIntervalMinutes and rpoMinutes to what a backup takes (parallel and follower "
        "backups, which would shorten it, are not built yet: README, Limits)."
    )
