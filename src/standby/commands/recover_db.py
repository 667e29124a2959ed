"""`scripts/recover_db.py`: recover the app's database on Heroku (follower, point-in-time, from-backup)."""

from __future__ import annotations

import argparse
from functools import partial

from standby import cli
from standby.commands.common import confirm_by_name, iso_time
from standby.commands.runbook_command import StandbySideFactory, add_runbook_arguments, run_runbook
from standby.runbooks.recover_db import MODES, Recovery, recovery_steps
from standby.standby_side import AwsStandby


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recover_db.py",
        description="Recover the app's database on Heroku itself, with the app fenced while its database changes "
        "and its health URL awaited after: promote the follower, go back to a point in time (compared table "
        "by table, promoted once you confirm, the old database kept), or restore one of our verified backups "
        "(after a Heroku backup of what is there). Locked, journaled, resumable; asks for the app's name "
        "unless --yes. Exit 0 done, 1 failed, 2 bad usage, 3 refused by a safety check.",
    )
    parser.add_argument("mode", choices=MODES, help="how to recover (see above)")
    add_runbook_arguments(parser)
    parser.add_argument(
        "--follower", help="follower: which one (add-on or attachment name), if there are several"
    )
    parser.add_argument(
        "--at", type=iso_time, help="point-in-time: the moment to go back to (ISO; UTC if no zone)"
    )
    parser.add_argument("--backup", help="from-backup: the backup id (`python scripts/backup.py list`)")
    parser.add_argument(
        "--formation",
        type=_formation,
        help="what to bring back afterwards (web=2,worker=1), when the app runs no dyno already; "
        "default: its formation when the run starts",
    )
    parser.add_argument(
        "--health-url",
        help="what must answer 2xx once the app is back (default: https://<first domain><health path>)",
    )
    return parser


def _formation(text: str) -> dict[str, int]:
    """An argparse type: `web=2,worker=1`."""
    counts: dict[str, int] = {}
    for part in text.split(","):
        kind, _, count = part.partition("=")
        if not kind.strip() or not count.strip().isdigit():
            raise argparse.ArgumentTypeError(f"not a formation such as web=2,worker=1: {text!r}")
        counts[kind.strip()] = int(count)
    return counts


def main(argv: list[str] | None = None, standby_side: StandbySideFactory = AwsStandby) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    needed = {"point-in-time": ("at", "--at"), "from-backup": ("backup", "--backup")}.get(args.mode)
    if needed and getattr(args, needed[0]) is None:
        parser.error(f"{args.mode} needs {needed[1]}")
    recovery = Recovery(
        args.mode, follower=args.follower, at=args.at, backup=args.backup, formation=args.formation
    )

    def confirm(question: str) -> bool:
        return bool(args.yes) or confirm_by_name(args.app, question)

    return cli.run(
        lambda: run_runbook(
            "recover_db",
            args,
            partial(recovery_steps, recovery=recovery, confirm=confirm, health_url=args.health_url),
            standby_side=standby_side,
            typed_confirmation=True,
        )
    )
