"""What the runbook commands share: their flags, their set-up from the standby manifest, their report."""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from standby import cli
from standby.backup_store import S3Store
from standby.commands.common import add_jobs_argument, confirm, confirm_by_name, say
from standby.errors import ConfigError
from standby.primary_side import HerokuSide
from standby.runbook.engine import Runbook, RunContext, RunOptions, Step, StepFailed
from standby.runbook.environment import RunbookEnv
from standby.runbook.journal import Journal, JournalStore
from standby.runbook.lock import DynamoDbLock
from standby.runbook.report import report_json, write_reports
from standby.standby_manifest import StandbyManifest, load_manifest
from standby.standby_side import AwsStandby

# Builds the standby side from the manifest: production's AwsStandby; the rehearsal and the tests hand in
# LocalStandby (local/standby_side.py).
StandbySideFactory = Callable[[StandbyManifest], AwsStandby]


def add_runbook_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app", default=os.environ.get("STANDBY_APP"), help="Heroku app name ($STANDBY_APP)")
    parser.add_argument(
        "--region", default=os.environ.get("AWS_REGION"), help="the standby region to work in"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an unfinished run; done steps are skipped"
    )
    parser.add_argument("--restart", action="store_true", help="discard an unfinished run's journal")
    parser.add_argument(
        "--take-over", action="store_true", help="take the app's lock from a run that died holding it"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--owner", default=f"{getpass.getuser()}@{socket.gethostname()}", help="who runs this"
    )
    parser.add_argument(
        "--journal-dir", type=Path, default=Path(".standby"), help="local copy of the journal"
    )
    parser.add_argument("--report", type=Path, help="Markdown report path (default: in --journal-dir)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON")
    parser.add_argument(
        "--pg-bin", type=Path, help="folder of pg_dump and pg_restore ($STANDBY_PG_BIN, PATH)"
    )
    add_jobs_argument(parser)
    parser.add_argument(
        "--health-timeout", type=float, default=300.0, help="seconds to wait for healthy services"
    )


def run_runbook(
    name: str,
    args: argparse.Namespace,
    steps: Callable[[RunbookEnv], list[Step]],
    cleanup: Callable[[RunbookEnv], list[Step]] | None = None,
    standby_side: StandbySideFactory = AwsStandby,
    typed_confirmation: bool = False,  # the app's name typed, not y: for what changes production on Heroku
) -> int:
    if not args.app:
        raise ConfigError(["--app is required (or set STANDBY_APP)."])
    if args.journal_dir.exists() and not args.journal_dir.is_dir():
        raise ConfigError([f"--journal-dir {args.journal_dir} is a file, not a folder: name a folder."])
    manifest = load_manifest(args.app, args.region)
    store = S3Store(manifest.backup_bucket, manifest.region)
    env = RunbookEnv(
        manifest=manifest,
        store=store,
        primary=HerokuSide(manifest.app),
        standby=standby_side(manifest),
        pg_bin=args.pg_bin,
        health_timeout=args.health_timeout,
        jobs=args.jobs,
    )

    def notify(subject: str, message: str) -> None:
        if manifest.topic_arn:
            env.standby.client("sns").publish(
                TopicArn=manifest.topic_arn, Subject=subject[:100], Message=message
            )

    runbook = Runbook(
        name,
        manifest.app,
        steps(env),
        JournalStore(args.journal_dir, store, env.runbook_mac),
        DynamoDbLock(manifest.lock_table, manifest.app, manifest.region),
        notify,
        cleanup(env) if cleanup else [],
    )
    options = RunOptions(
        dry_run=args.dry_run,
        yes=args.yes,
        resume=args.resume,
        restart=args.restart,
        owner=args.owner,
        take_over=args.take_over,
    )
    try:
        ask = (
            (lambda q: confirm_by_name(manifest.app, q.rstrip("?")))
            if typed_confirmation
            else (lambda q: confirm(q, False))
        )
        journal = runbook.run(RunContext(say=say), options, confirm=ask)
    except StepFailed:
        failed = runbook.journals.load(manifest.app, name)
        if failed is not None:
            _write(name, failed, args)
        raise
    if journal is None:
        return cli.EXIT_OK if args.dry_run else cli.EXIT_FAILED
    _write(name, journal, args)
    doc = report_json(journal)
    proofs = (
        [f"data verified: {'yes' if doc['verified'] else 'NO'}"]
        if name not in ("switch_ai", "rollback")
        else []
    )
    if "new_release" in journal.facts:
        proofs.append(f"v{journal.facts['from_release']['version']} -> v{journal.facts['new_release']['version']} "
                      f"(running v{journal.facts['to_release']['version']}'s slug), healthy: {'yes' if doc['verified'] else 'NO'}")  # fmt: skip
    if "target_db" in journal.facts:
        lag = journal.facts.get("lag_at_promotion")
        proofs.append(
            f"DATABASE is {journal.facts['target_db']['name']}"
            + (f" (it was behind by {lag})" if lag else "")
        )
    elif "backup_id" in journal.facts and name == "recover_db":
        proofs.append(
            f"DATABASE holds backup {journal.facts['backup_id']}, Heroku's own of before: {journal.facts.get('heroku_backup')}"
        )
    if "ai_live" in journal.facts:
        proofs.append(f"AI settings live: {'yes' if journal.facts['ai_live'] else 'NO'}")
    if journal.facts.get("dns_target"):
        proofs.append(f"DNS -> {journal.facts['dns_target']}")
    rpo = "n/a" if doc["rpo_seconds"] is None else f"{doc['rpo_seconds']} s"
    print(f"{name} of {manifest.app} done: RTO {doc['rto_seconds']} s, RPO {rpo}, " + ", ".join(proofs))
    return cli.EXIT_OK


def _write(name: str, journal: Journal, args: argparse.Namespace) -> None:
    args.journal_dir.mkdir(parents=True, exist_ok=True)
    report = args.report or args.journal_dir / f"{name}-{journal.run_id}.md"
    write_reports(journal, report, args.json)
    print(f"report: {report}" + (f" and {args.json}" if args.json else ""), file=sys.stderr)
