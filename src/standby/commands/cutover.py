"""`scripts/cutover.py`: move the app from Heroku to the AWS standby (README, "The disaster flow")."""

from __future__ import annotations

import argparse

from standby import cli
from standby.catalog import BackupChoice
from standby.commands.common import iso_time
from standby.commands.runbook_command import StandbySideFactory, add_runbook_arguments, run_runbook
from standby.commands.switch_ai import add_ai_arguments
from standby.runbook.engine import Step
from standby.runbook.environment import RunbookEnv
from standby.runbooks.ai_switch import ai_switch_steps
from standby.runbooks.cutover import cutover_steps
from standby.standby_side import AwsStandby
from standby.vocabulary import AiProvider


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cutover.py",
        description="Cut the app over from Heroku to the AWS standby: fence Heroku, final backup, scale the "
        "standby, restore, verify, switch DNS. Locked, journaled, resumable. Exit 0 done, 1 failed, 2 bad "
        "usage, 3 refused by a safety check.",
    )
    add_runbook_arguments(parser)
    parser.add_argument("--primary-unreachable", action="store_true",
                        help="Heroku does not answer and you accept the split-brain risk")  # fmt: skip
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--backup", default="latest", help="restore this backup id instead of the newest whole one"
    )
    choice.add_argument(
        "--before", type=iso_time, help="the newest whole backup whose data is older than this ISO time"
    )
    add_ai_arguments(parser, required=False)
    return parser


def main(argv: list[str] | None = None, standby_side: StandbySideFactory = AwsStandby) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(
        lambda: run_runbook("cutover", args, lambda env: _steps(env, args), standby_side=standby_side)
    )


def _steps(env: RunbookEnv, args: argparse.Namespace) -> list[Step]:
    steps = cutover_steps(env, args.primary_unreachable, BackupChoice(args.backup, args.before))
    if args.ai_provider:
        # Right after the standby goes active: its redeployment overlaps the restore.
        at = next(i for i, step in enumerate(steps) if step.name == "scale_standby") + 1
        steps[at:at] = ai_switch_steps(env, AiProvider(args.ai_provider), args.probe_timeout)
    return steps
