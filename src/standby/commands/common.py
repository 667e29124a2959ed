"""Arguments and set-up shared by the commands that work on the backup store."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from standby.backup_store import BackupStore, LocalStore, S3Store
from standby.errors import ConfigError
from standby.integrity import KmsMac
from standby.names import BACKUP_PREFIX
from standby.parallel_dump import available_cpus
from standby.standby_manifest import StandbyManifest, load_manifest


def add_jobs_argument(parser: argparse.ArgumentParser) -> None:
    """`--jobs`: pg_restore's parallel jobs, by default the cores this process may use (a container's quota)."""
    parser.add_argument(
        "--jobs",
        type=_jobs,
        default=available_cpus(),
        help="pg_restore parallel jobs (default: the cores this process may use)",
    )


def _jobs(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise argparse.ArgumentTypeError(f"must be a whole number of jobs from 1 to 64, got {value!r}")
    return int(value)


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app", default=os.environ.get("STANDBY_APP"), help="Heroku app name ($STANDBY_APP)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--bucket", help="S3 bucket of the backups (default: the one in the standby manifest)")
    where.add_argument("--folder", type=Path, help="a local folder instead of S3 (drills, laptops)")
    parser.add_argument("--prefix", help="key prefix inside the bucket (default: backups)")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION"), help="AWS region ($AWS_REGION)")
    parser.add_argument(
        "--pg-bin", type=Path, help="folder of the PostgreSQL programs ($STANDBY_PG_BIN, PATH)"
    )
    parser.add_argument("--json", type=Path, help="also write the result as JSON to this path")


@dataclass(frozen=True)
class StoreContext:
    app: str
    store: BackupStore
    prefix: str
    manifest: StandbyManifest | None

    @property
    def mac(self) -> KmsMac | None:
        """The standby's backup key, when its manifest names one: backups are signed and verified with it.
        A store named by --bucket or --folder alone has no key: its manifests are read unverified."""
        key = self.manifest.backup_mac_key if self.manifest else None
        return KmsMac(key, self.manifest.region) if key and self.manifest else None


def open_store(args: argparse.Namespace) -> StoreContext:
    """The store the arguments name; without --bucket or --folder, the standby manifest's bucket."""
    if not args.app:
        raise ConfigError(["--app is required (or set STANDBY_APP): the Heroku app the backups belong to."])
    manifest = None if (args.bucket or args.folder) else load_manifest(args.app, args.region)
    store: BackupStore
    if args.folder:
        store = LocalStore(args.folder)
    else:
        store = S3Store(args.bucket or (manifest.backup_bucket if manifest else ""), args.region)
    prefix = args.prefix or (manifest.backup_prefix if manifest else BACKUP_PREFIX)
    return StoreContext(args.app, store, prefix, manifest)


def iso_time(text: str) -> datetime:
    """An argparse type: an ISO time; one without a timezone is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time such as 2026-11-22T10:15:00Z: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask on the terminal; without one, only --yes may answer."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise ConfigError([f"{question} needs confirmation, and there is no terminal to ask on: add --yes."])
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def confirm_by_name(name: str, action: str) -> bool:
    """For what cannot be undone: the operator types `name` (the app's), not just y."""
    if not sys.stdin.isatty():
        raise ConfigError(
            [f"{action} needs the app's name typed, and there is no terminal to ask on: add --yes."]
        )
    return input(f"{action}? Type {name} to go on: ").strip() == name


def say(line: str) -> None:
    """Progress goes to stderr, so stdout stays the command's result."""
    print(line, file=sys.stderr, flush=True)
