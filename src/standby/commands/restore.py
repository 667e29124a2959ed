"""`scripts/restore.py`: restore a verified backup into the standby's database."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from standby import catalog_index, cli, live_side
from standby.commands.common import (
    StoreContext,
    add_jobs_argument,
    add_store_arguments,
    confirm,
    confirm_by_name,
    iso_time,
    open_store,
    say,
)
from standby.errors import ConfigError, SafetyRefusal
from standby.loader_role import Owner
from standby.pg_tools import find_tool
from standby.pg_url import Database, parse_database_url, same_database
from standby.restore import (
    KEEP_ALL,
    KEEP_PREVIOUS,
    RestoreReport,
    RestoreRequest,
    execute_restore,
    plan_restore,
    read_marker,
)
from standby.runbook.lock import DynamoDbLock, Holder, Lease, LockLost
from standby.standby_manifest import StandbyManifest, read_database_url
from standby.standby_side import AwsStandby


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="restore.py",
        description="Restore a verified backup into a new database on the target server, verify every table's "
        "row count, then switch the app's database to it. Exit 0 done, 1 failed, 2 bad usage, "
        "3 refused by a check (the database in use is untouched).",
    )
    add_store_arguments(parser)
    parser.add_argument(
        "--target-url",
        help="the database the app uses (its name is kept at the switch); default: the standby manifest's",
    )
    parser.add_argument(
        "--maintenance-db", default="postgres", help="database to connect to for CREATE/RENAME"
    )
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--backup", default="latest", help="'latest' (default) or a backup id")
    choice.add_argument(
        "--before", type=iso_time, help="the newest backup whose data is older than this ISO time"
    )
    parser.add_argument(
        "--ahead", action="store_true", help="only if newer than what the target already holds"
    )
    add_jobs_argument(parser)
    parser.add_argument("--sanity-sql", action="append", default=[], help="a query that must return true")
    parser.add_argument("--scratch", type=Path, help="folder for the downloaded dump (default: temp)")
    parser.add_argument(
        "--keep-previous",
        type=int,
        default=KEEP_PREVIOUS,
        help="previous databases kept after the switch, newest first (older ones are dropped)",
    )
    parser.add_argument(
        "--replace-live",
        action="store_true",
        help="restore over the standby's database even while it is the app's live one (a recovery)",
    )
    parser.add_argument(
        "--owner", default=f"{getpass.getuser()}@{socket.gethostname()}", help="who runs this (for the lock)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    context = open_store(args)
    standby_url = read_database_url(context.manifest, args.region) if context.manifest else None
    target_url = args.target_url or standby_url
    if target_url is None:
        raise ConfigError(["--target-url is required with --bucket or --folder: the database the app uses."])
    target_db = parse_database_url(target_url, "target database URL")
    if not target_db.dbname:
        raise ConfigError(["the target URL names no database: add it, as in postgres://host/app."])
    standby_db = parse_database_url(standby_url, "standby database URL") if standby_url else None
    # A restore into the standby's database holds the app's lock: it excludes a cutover, a failback and
    # a drill, and the live side is read under it.
    with _app_lock(context, args) if standby_db and not args.dry_run else contextlib.nullcontext() as lease:
        free, owner = None, None
        if standby_db is not None and context.manifest is not None and same_database(target_db, standby_db):
            _refuse_over_live(context.manifest, target_db, args)
            standby = AwsStandby(context.manifest)
            free, owner = standby.free_storage(), standby.app_owner()  # the app's role gets the data
        return _restore(args, context, target_db, free, _still_ours(lease), owner)


@contextlib.contextmanager
def _app_lock(context: StoreContext, args: argparse.Namespace) -> Iterator[Lease]:
    assert context.manifest is not None
    lock = DynamoDbLock(context.manifest.lock_table, context.app, context.manifest.region)
    lease = lock.acquire(Holder("restore", args.owner, uuid.uuid4().hex[:8]))
    try:
        yield lease
    finally:
        lease.release()


def _still_ours(lease: Lease | None) -> Callable[[], None]:
    """Before the switch: a restore whose lock was taken over must not switch under the new holder."""

    def check() -> None:
        lost = lease.lost if lease is not None else None
        if lost:
            raise LockLost(
                f"{lost}: the restored database is verified but was not switched in; nothing changed."
            )

    return check


def _refuse_over_live(manifest: StandbyManifest, target: Database, args: argparse.Namespace) -> None:
    """The standby's database is the app's live database once a cutover made it so: not a restore target."""
    if not live_side.is_live(manifest):
        return
    where = f"{target.redacted} is the app's live database (the standby in {manifest.region} serves {manifest.app})"
    if args.ahead:
        raise SafetyRefusal(
            f"restore-ahead stands down: {where}; restoring a backup over it would replace what the app wrote "
            "since the cutover. Nothing was changed."
        )
    if not args.replace_live:
        raise SafetyRefusal(
            f"{where}; restoring a backup over it replaces what the app wrote since that backup. Nothing was "
            "changed. To recover it from a backup on purpose, pass --replace-live (you will be asked to type "
            "the app's name)."
        )
    if not args.yes and not confirm_by_name(manifest.app, f"Replace the live database of {manifest.app}"):
        raise SafetyRefusal("the app's name was not typed: nothing was changed.")


def _restore(
    args: argparse.Namespace,
    context: StoreContext,
    target_db: Database,
    free: int | None,
    before_switch: Callable[[], None],
    owner: Owner | None,
) -> int:
    server = target_db.with_dbname(args.maintenance_db)
    now = datetime.now(UTC)
    plan = plan_restore(
        catalog_index.read_catalog(context.store, context.prefix, context.app, verifier=context.mac),
        target_db.dbname,
        choice=args.backup,
        before=args.before,
        current=read_marker(server, target_db.dbname) if args.ahead else None,
        ahead=args.ahead,
        now=now,
    )
    say(f"restore plan for {target_db.redacted}:")
    for line in plan.describe(now):
        say(f"  {line}")
    if args.dry_run or plan.skip_reason:
        if plan.skip_reason:
            _report(
                execute_restore(
                    plan, _request(args, context, server, target_db.dbname, free, before_switch, owner)
                ),
                args.json,
            )
        return cli.EXIT_OK
    if not confirm(f"Restore backup {plan.backup.backup_id} into {target_db.dbname}?", args.yes):
        say("aborted; nothing was changed.")
        return cli.EXIT_FAILED
    report = execute_restore(
        plan,
        _request(args, context, server, target_db.dbname, free, before_switch, owner),
        progress=lambda line: say(f"  {line}"),
    )
    _report(report, args.json)
    return cli.EXIT_OK


def _request(
    args: argparse.Namespace,
    context: StoreContext,
    server: Database,
    target: str,
    free: int | None,
    before_switch: Callable[[], None],
    owner: Owner | None,
) -> RestoreRequest:
    if args.scratch is not None and not args.scratch.is_dir():
        raise ConfigError([f"--scratch {args.scratch} is not a folder: create it, or leave --scratch out."])
    return RestoreRequest(
        store=context.store,
        server=server,
        target=target,
        pg_restore=find_tool("pg_restore", args.pg_bin),
        jobs=args.jobs,
        sanity_sql=tuple(args.sanity_sql) + (context.manifest.sanity_sql if context.manifest else ()),
        scratch=args.scratch,
        # A database renamed away from the live side holds the app's writes: never dropped by a restore.
        keep_previous=KEEP_ALL if args.replace_live else args.keep_previous,
        free_bytes=free,
        before_switch=before_switch,
        owner=owner,
    )


def _report(report: RestoreReport, json_path: Path | None) -> None:
    if report.skipped:
        print(f"nothing restored: {report.skipped}")
    else:
        phases = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in report.phases.items())
        print(
            f"restored backup {report.backup_id} into {report.target}: verified, switched "
            f"(previous database kept as {report.previous_database or '-'}"
            + (f"; dropped {', '.join(report.dropped)}" if report.dropped else "")
            + f"); data age {report.rpo_seconds / 60:.1f} min; "
            f"{phases}"
        )
    if json_path:
        json_path.write_text(json.dumps(report.to_json(), indent=2))
