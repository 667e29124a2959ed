"""`scripts/backup.py`: back up the app's database now, or list the backups."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from standby import catalog, cli
from standby.backup import DEFAULT_COMPRESSION, BackupRequest, run_backup
from standby.backup_store import BackupStore, LocalStore, S3Store
from standby.catalog import BackupManifest, CatalogEntry, ManifestError
from standby.errors import ConfigError
from standby.heroku_api import HerokuClient
from standby.metrics import publish_backup_metrics
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url
from standby.standby_manifest import StandbyManifest, load_manifest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backup.py",
        description="Take a consistent, verified backup of the app's Postgres into the backup bucket "
        "(`run`, the default), or list the backups (`list`). Exit 0 done, 1 failed, 2 bad usage.",
    )
    parser.add_argument("action", nargs="?", choices=["run", "list"], default="run")
    parser.add_argument("--app", default=os.environ.get("STANDBY_APP"), help="Heroku app name ($STANDBY_APP)")
    parser.add_argument(
        "--source-url",
        help="back up this database instead of the app's current DATABASE_URL (fetched from the Heroku API)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--bucket", help="S3 bucket (default: the one in the standby manifest)")
    where.add_argument("--folder", type=Path, help="a local folder instead of S3 (drills, laptops)")
    parser.add_argument("--prefix", help="key prefix inside the bucket (default: backups)")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION"), help="AWS region ($AWS_REGION)")
    parser.add_argument("--pg-bin", type=Path, help="folder holding pg_dump (default: $STANDBY_PG_BIN, PATH)")
    parser.add_argument("--compress", default=DEFAULT_COMPRESSION, help="pg_dump --compress value")
    parser.add_argument("--no-metrics", action="store_true", help="do not publish CloudWatch metrics")
    parser.add_argument("--json", type=Path, help="also write the result as JSON to this path")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    if not args.app:
        raise ConfigError(
            ["--app is required (or set STANDBY_APP): the Heroku app whose database to back up."]
        )
    manifest = None if (args.bucket or args.folder) else load_manifest(args.app, args.region)
    store = _store(args, manifest)
    prefix = args.prefix or (manifest.backup_prefix if manifest else "backups")
    if args.action == "list":
        return _list(store, prefix, args)

    source_url = args.source_url or _heroku_database_url(args.app)
    request = BackupRequest(
        app=args.app,
        source=parse_database_url(source_url, "source database URL"),
        store=store,
        pg_dump=find_tool("pg_dump", args.pg_bin),
        prefix=prefix,
        compression=args.compress,
    )
    print(f"backing up {request.source.redacted} ({args.app}) to {store.describe()}", file=sys.stderr)
    result = run_backup(request, progress=lambda line: print(f"  {line}", file=sys.stderr))
    if not args.no_metrics and not args.folder:
        publish_backup_metrics(result, manifest.metrics_namespace if manifest else "Standby", args.region)
    _report(result, args.json)
    return cli.EXIT_OK


def _store(args: argparse.Namespace, manifest: StandbyManifest | None) -> BackupStore:
    if args.folder:
        return LocalStore(args.folder)
    return S3Store(args.bucket or (manifest.backup_bucket if manifest else ""), args.region)


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
        f"{sum(manifest.tables.values())} rows, {manifest.size / 1e6:.1f} MB, sha256 {manifest.sha256[:12]}..., "
        f"{took:.1f} s"
    )
    if json_path:
        json_path.write_text(json.dumps(manifest.to_json(), indent=2))


def load_catalog(store: BackupStore, prefix: str, app: str) -> list[CatalogEntry]:
    """Read the catalog of `app`'s backups: keys, manifests and failure records."""
    base = catalog.backup_prefix(prefix, app)
    keys = [k.removeprefix(base) for k in store.list_keys(base)]
    manifests: dict[str, BackupManifest] = {}
    failures: dict[str, dict[str, object]] = {}
    for key in keys:
        backup_id, _, name = key.partition("/")
        if name == catalog.MANIFEST:
            try:
                manifests[backup_id] = BackupManifest.from_json(store.get_json(base + key))
            except ManifestError as exc:
                failures[backup_id] = {"phase": "reading the manifest", "error": str(exc)}
        elif name == catalog.FAILURE:
            failures[backup_id] = dict(store.get_json(base + key) or {})
    return catalog.build_catalog(keys, manifests, failures)


def _list(store: BackupStore, prefix: str, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    entries = list(reversed(load_catalog(store, prefix, args.app)))
    print(f"{'BACKUP':<24} {'STATE':<11} {'AGE':>6} {'SIZE':>10}  NOTE")
    for e in entries:
        size = f"{e.manifest.size / 1e6:.1f} MB" if e.manifest else "-"
        note = str(e.failure.get("error", "")) if e.failure else ""
        print(f"{e.backup_id:<24} {e.state.value:<11} {_age(e.age(now)):>6} {size:>10}  {note}")
    if not entries:
        print(f"(no backups of {args.app} in {store.describe()})")
    if args.json:
        rows = [
            {
                "backup_id": e.backup_id,
                "state": e.state.value,
                "age_seconds": round(e.age(now)),
                "size": e.manifest.size if e.manifest else None,
                "tables": len(e.manifest.tables) if e.manifest else None,
                "error": e.failure.get("error") if e.failure else None,
            }
            for e in entries
        ]
        args.json.write_text(json.dumps(rows, indent=2))
    return cli.EXIT_OK


def _age(age: float) -> str:
    seconds = round(age)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h" if seconds < 172800 else f"{seconds // 86400}d"
