"""`scripts/backup.py`: back up the app's database now, or list the backups."""

from __future__ import annotations

import argparse
import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

from standby import catalog_index, cli, heroku_postgres, live_side
from standby.backup import BackupRequest, check_compression, check_streams, run_backup, update_index
from standby.backup_lease import BackupStillRunning, one_backup_at_a_time, over_interval
from standby.backup_source import DEFAULT_MAX_LAG, Follower
from standby.catalog import BackupManifest
from standby.commands.common import StoreContext, add_store_arguments, open_store, say
from standby.errors import ConfigError, StandbyError
from standby.heroku_api import HerokuClient
from standby.metrics import publish_backup_metrics, publish_backup_skipped
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url
from standby.retention import KEEP_NEWEST, apply_retention
from standby.standby_manifest import read_database_url
from standby.standby_side import AwsStandby


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backup.py",
        description="Take a consistent, verified backup of the app's Postgres into the backup bucket "
        "(`run`, the default), or list the backups (`list`). Exit 0 done, 1 failed, 2 bad usage.",
    )
    parser.add_argument("action", nargs="?", choices=["run", "list"], default="run")
    add_store_arguments(parser)
    parser.add_argument(
        "--source-url",
        help="back up this database instead of the live one (Heroku's DATABASE_URL, fetched from its API; "
        "the standby's once a cutover made it live)",
    )
    parser.add_argument(
        "--compress",
        help="pg_dump --compress value (default: gzip:1 for one stream; zstd:1 for several, where pg_dump has it)",
    )
    parser.add_argument(
        "--streams",
        default="auto",
        help="data streams dumped at once from the same snapshot: 1 for one dump file, N for a parallel "
        "backup, auto (the default) for parallel from 8 GiB",
    )
    parser.add_argument(
        "--follower-max-lag",
        type=float,
        default=DEFAULT_MAX_LAG,
        help="back Heroku's primary up from its follower when the follower reaches the primary's present "
        "within this many seconds (default %(default)s); 0 always reads the primary",
    )
    parser.add_argument("--no-metrics", action="store_true", help="do not publish CloudWatch metrics")
    parser.add_argument(
        "--keep-newest",
        type=int,
        default=KEEP_NEWEST,
        help="complete backups that never expire, whatever their age (older ones expire by the bucket's rule)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    context = open_store(args)
    if args.action == "list":
        return _list(context, args.json)
    compression = check_compression(args.compress) if args.compress else None
    streams = check_streams(args.streams)
    source = _live_source(context, args.source_url)
    if source is None:
        return cli.EXIT_OK
    source_url, side = source
    follower = (
        _heroku_follower(context.app, source_url, args.follower_max_lag)
        if side == "heroku" and not args.source_url and args.follower_max_lag > 0
        else None
    )
    request = BackupRequest(
        app=context.app,
        source=parse_database_url(source_url, "source database URL"),
        store=context.store,
        pg_dump=find_tool("pg_dump", args.pg_bin),
        prefix=context.prefix,
        compression=compression,
        streams=streams,
        source_side=side,
        follower=follower,
        signer=context.mac,
        index=False,  # rewritten below, once the lease is released
    )
    publish = not args.no_metrics and not args.folder
    # The standby's scheduled backups take turns; a store named alone has no lock table to take turns in.
    turn = one_backup_at_a_time(context.manifest, say) if context.manifest else contextlib.nullcontext()
    try:
        with turn:
            say(f"backing up {request.source.redacted} ({context.app}, {side}) to {context.store.describe()}")
            result = run_backup(request, progress=lambda line: say(f"  {line}"))
    except BackupStillRunning:
        if publish:
            publish_backup_skipped(context.app, region=args.region)
        raise
    update_index(request, progress=lambda line: say(f"  {line}"))
    if publish:
        publish_backup_metrics(result, region=args.region)
    took = (result.finished_at - result.started_at).total_seconds()
    if context.manifest is not None and took > context.manifest.backup_interval_seconds:
        say(f"  warning: {over_interval(took, context.manifest)}")
    if side == "heroku" and context.manifest is not None:
        try:  # kept for the worst day: with Heroku's API dark the cutover still fences this database
            AwsStandby(context.manifest).remember_primary_database_url(source_url)
        except StandbyError as exc:
            say(
                f"  warning: Heroku's DATABASE_URL not kept for a cutover with its API dark: {' '.join(str(exc).split())}"
            )
    try:  # the backup is done and counted; retention that fails now is tried again after the next one
        redundant = apply_retention(context.store, context.prefix, context.app, args.keep_newest, context.mac)
        if redundant:
            say(
                f"  {len(redundant)} older backup(s) may now expire; the newest {args.keep_newest} whole ones never do"
            )
    except StandbyError as exc:
        say(f"  warning: retention not applied this time: {' '.join(str(exc).split())}")
    _report(result, args.json)
    return cli.EXIT_OK


def _live_source(context: StoreContext, source_url: str | None) -> tuple[str, str] | None:
    """The database the app writes to now, and its side: Heroku's, or the standby's once it is live.

    None when the app is live in the other standby region: its own schedule backs it up there.
    """
    if source_url:
        return source_url, "url"
    manifest = context.manifest
    if manifest is not None:
        place = live_side.live_place(manifest)
        if place == manifest.region:
            # After a cutover the app writes here: the chain of backups goes on from this database, read
            # as the app's role (owner of the data), never with the master user's credential.
            url = AwsStandby(manifest).app_database_url() or read_database_url(manifest, manifest.region)
            return url, f"standby:{place}"
        if place != live_side.HEROKU:
            print(f"not backing up: {context.app} is live in {place}; the schedule there backs it up.")
            return None
    return _heroku_database_url(context.app), "heroku"


def _heroku_follower(app: str, primary_url: str, max_lag: float) -> Follower | None:
    """The follower of the app's primary, when it has one (`heroku pg:info` says whom each follows)."""
    client = HerokuClient.from_env()
    try:
        for database in heroku_postgres.app_databases(client, app):
            if database.is_primary or not database.url_var:
                continue
            about = heroku_postgres.info(client, database)
            url = client.config_vars(app).get(database.url_var) if about.following else None
            if url and heroku_postgres.same_database(about.following_url, primary_url):
                return Follower(parse_database_url(url, f"{database.url_var}"), database.name, max_lag)
    except StandbyError as exc:  # the primary is still there to read
        say(f"  followers not looked up ({' '.join(str(exc).split())}): backing up the primary")
    return None


def _heroku_database_url(app: str) -> str:
    # Fetched on every run: Heroku rotates DATABASE_URL's credentials.
    url = HerokuClient.from_env().config_vars(app).get("DATABASE_URL")
    if not url:
        raise ConfigError([f"the Heroku app {app} has no DATABASE_URL config var. Pass --source-url."])
    return url


def _report(manifest: BackupManifest, json_path: Path | None) -> None:
    took = (manifest.finished_at - manifest.started_at).total_seconds()
    print(
        f"backup {manifest.backup_id} complete: {len(manifest.tables)} tables, "
        f"{sum(manifest.tables.values())} rows, {manifest.size / 1e6:.1f} MB in {len(manifest.dump_files())} "
        f"file(s), sha256 {manifest.sha256[:12]}..., "
        f"{took:.1f} s"
    )
    if json_path:
        json_path.write_text(json.dumps(manifest.to_json(), indent=2))


def _list(context: StoreContext, json_path: Path | None) -> int:
    now = datetime.now(UTC)
    entries = list(
        reversed(catalog_index.read_catalog(context.store, context.prefix, context.app, verifier=context.mac))
    )
    print(f"{'BACKUP':<24} {'STATE':<11} {'AGE':>6} {'SIZE':>10} {'FILES':>5}  NOTE")
    for e in entries:
        size = f"{e.manifest.size / 1e6:.1f} MB" if e.manifest else "-"
        files = str(len(e.manifest.dump_files())) if e.manifest else "-"
        note = str(e.failure.get("error", "")) if e.failure else ""
        print(f"{e.backup_id:<24} {e.state.value:<11} {_age(e.age(now)):>6} {size:>10} {files:>5}  {note}")
    if not entries:
        print(f"(no backups of {context.app} in {context.store.describe()})")
    if json_path:
        rows = [
            {
                "backup_id": e.backup_id,
                "state": e.state.value,
                "age_seconds": round(e.age(now)),
                "size": e.manifest.size if e.manifest else None,
                "tables": len(e.manifest.tables) if e.manifest else None,
                "files": len(e.manifest.dump_files()) if e.manifest else None,
                "error": e.failure.get("error") if e.failure else None,
            }
            for e in entries
        ]
        json_path.write_text(json.dumps(rows, indent=2))
    return cli.EXIT_OK


def _age(age: float) -> str:
    seconds = round(age)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h" if seconds < 172800 else f"{seconds // 86400}d"
