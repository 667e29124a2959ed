"""`scripts/failback.py`: move the app back from the AWS standby to Heroku."""

from __future__ import annotations

import argparse

from standby import cli
from standby.commands.runbook_command import StandbySideFactory, add_runbook_arguments, run_runbook
from standby.runbooks.failback import failback_steps
from standby.standby_side import AwsStandby


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="failback.py",
        description="Fail back to Heroku: stop the standby's services, back up its database, restore it into "
        "Heroku Postgres, verify, bring the dynos back, switch DNS back. Locked, journaled, resumable. "
        "Exit 0 done, 1 failed, 2 bad usage, 3 refused by a safety check.",
    )
    add_runbook_arguments(parser)
    return parser


def main(argv: list[str] | None = None, standby_side: StandbySideFactory = AwsStandby) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(lambda: run_runbook("failback", args, failback_steps, standby_side=standby_side))
