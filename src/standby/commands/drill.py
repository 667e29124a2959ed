"""`scripts/drill.py`: drill the disaster against the standby, without touching production."""

from __future__ import annotations

import argparse

from standby import cli
from standby.commands.runbook_command import StandbySideFactory, add_runbook_arguments, run_runbook
from standby.runbooks.drill import drill_cleanup, drill_steps
from standby.standby_side import AwsStandby


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drill.py",
        description="Drill the disaster. Against the standby: restore the newest backup into a scratch "
        "database, verify it, start one web task on it, check its health, record the figures, tear it all "
        "down; no DNS change. (To rehearse on this machine, with no cloud: scripts/rehearse.py.) "
        "Exit 0 done, 1 failed, 2 bad usage, 3 refused.",
    )
    add_runbook_arguments(parser)
    return parser


def main(argv: list[str] | None = None, standby_side: StandbySideFactory = AwsStandby) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(
        lambda: run_runbook("drill", args, drill_steps, cleanup=drill_cleanup, standby_side=standby_side)
    )
