"""`scripts/rollback.py`: roll a faulty release back on Heroku."""

from __future__ import annotations

import argparse
from functools import partial

from standby import cli
from standby.commands.runbook_command import StandbySideFactory, add_runbook_arguments, run_runbook
from standby.runbooks.rollback import Target, rollback_steps
from standby.standby_side import AwsStandby


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollback.py",
        description="Roll the app back on Heroku to the previous good release (or --to vNN): a new release of "
        "its slug and config, then wait until it succeeded and the app's health URL answers. Warns when "
        "migrations ran since the target. Locked, journaled, resumable; asks for the app's name unless "
        "--yes. Exit 0 done, 1 failed, 2 bad usage, 3 refused by a safety check.",
    )
    add_runbook_arguments(parser)
    parser.add_argument("--to", help="the release to roll back to (v41); default: the previous good one")
    parser.add_argument(
        "--health-url",
        help="what must answer 2xx after the rollback (default: https://<first domain><health path>)",
    )
    return parser


def main(argv: list[str] | None = None, standby_side: StandbySideFactory = AwsStandby) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(
        lambda: run_runbook(
            "rollback",
            args,
            partial(rollback_steps, target=Target.parse(args.to), health_url=args.health_url),
            standby_side=standby_side,
            typed_confirmation=True,
        )
    )
