"""`scripts/status.py`: am I protected right now? Every readiness check, the score, the RTO forecast.

Exit codes: 0 all ok, 1 a warning, 3 anything critical (2: bad usage, as every command).
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from standby import cli
from standby.backup_store import S3Store
from standby.commands.runbook_command import StandbySideFactory
from standby.errors import ConfigError
from standby.heroku_api import HerokuClient
from standby.readiness.assess import assess
from standby.readiness.check import Level, Readiness, human
from standby.readiness.publish import publish
from standby.readiness.sources import Sources
from standby.standby_manifest import load_manifest
from standby.standby_side import AwsStandby


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="status.py", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--app", default=os.environ.get("STANDBY_APP"), help="Heroku app name ($STANDBY_APP)")
    p.add_argument("--region", default=os.environ.get("AWS_REGION"), help="the standby region ($AWS_REGION)")
    p.add_argument("--json", type=Path, help="also write the checks, the score and the figures as JSON")
    p.add_argument("--publish", action="store_true", help="publish each check as a CloudWatch metric")
    p.add_argument("--pg-bin", type=Path, help="folder of pg_restore ($STANDBY_PG_BIN, PATH)")
    p.add_argument(
        "--journal-dir", type=Path, default=Path(".standby"), help="local copies of the runbook journals"
    )
    return p


def main(argv: list[str] | None = None, standby_side: StandbySideFactory = AwsStandby) -> int:
    args = parser().parse_args(argv)
    return cli.run(lambda: _status(args, standby_side))


def _status(args: argparse.Namespace, standby_side: StandbySideFactory) -> int:
    if not args.app:
        raise ConfigError(["--app is required (or set STANDBY_APP)."])
    manifest = load_manifest(args.app, args.region)
    standby = standby_side(manifest)
    sources = Sources(
        manifest=manifest,
        store=S3Store(manifest.backup_bucket, manifest.region),
        standby=standby,
        heroku_client=HerokuClient.from_env,
        now=datetime.now(UTC),
        pg_bin=args.pg_bin,
    )
    readiness = assess(sources, args.journal_dir)
    print(render(readiness))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(readiness.to_json(), indent=2))
    if args.publish:
        publish(readiness, standby.client("cloudwatch"))
    return readiness.exit_code


def render(readiness: Readiness) -> str:
    lines = [
        f"standby status of {readiness.app} at {readiness.checked_at}: readiness {readiness.score}/100, "
        f"{readiness.level.word}"
    ]
    for check in readiness.checks:
        word = check.level.word if check.level is Level.OK else check.level.word.upper()
        lines.append(f"  {word:<9} {check.name:<17} {check.summary}")
        if check.fix:
            lines.append(f"  {'':<9} {'':<17} fix: {check.fix}")
    forecast = readiness.figures.get("rto_forecast_seconds")
    if forecast is not None:
        lines.append(f"RTO forecast: {human(forecast)}")
    costs = [f"{c.name} -{c.cost}" for c in readiness.checks if c.cost]
    if costs:
        lines.append(f"points lost: {', '.join(costs)}")
    return "\n".join(lines)
