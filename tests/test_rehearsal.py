"""The local rehearsal, as the README's first command runs it (`./dev rehearsal`: `scripts/rehearse.py`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.servers import ROOT, run_script

pytestmark = pytest.mark.slow  # each test runs a whole rehearsal in a process of its own


def _check(report: dict[str, Any], scenario: str) -> None:
    assert report["verified"] is True
    assert report["rto_seconds"] > 0
    assert report["facts"]["dns_target"].endswith(
        "us-west-2.elb.amazonaws.com" if scenario == "region-down" else "us-east-2.elb.amazonaws.com"
    )
    steps = {s["name"]: s["outcome"] for s in report["steps"]}
    if scenario == "graceful":
        assert report["rpo_seconds"] < 1.0  # fenced, then a final backup: nothing lost
        assert report["counts_equal"] is True
        assert steps["fence_primary"] == "done" and steps["final_backup"] == "done"
    else:
        assert report["rpo_seconds"] >= 1.0  # the rows written after the last backup are lost, and measured
        assert report["counts_equal"] is False
        assert steps["fence_primary"] == "already done"  # Heroku did not answer
    assert steps["wait_healthy"] in ("done", "already done")


@pytest.mark.parametrize("scenario", ["graceful", "heroku-down", "region-down"])
def test_the_rehearsal_cuts_over_with_verified_data_and_measured_rto_and_rpo(
    scenario: str, tmp_path: Path
) -> None:
    # A process of its own each time: the rehearsal starts its own moto, whose state is process-wide.
    report_path = tmp_path / "report.json"
    # The graceful one also switches the AI provider on the way: the data is verified all the same.
    ai = ["--ai-provider", "anthropic"] if scenario == "graceful" else []
    result = run_script(
        "rehearse.py", "--scenario", scenario, "--rentals", "2000",
        "--json", str(report_path), "--report", str(tmp_path / "rehearsal.md"), *ai,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    _check(report, scenario)
    steps = {s["name"]: s["outcome"] for s in report["steps"]}
    assert steps["verify_data"] == "done"
    if ai:
        assert steps["wait_live"] == "done" and report["facts"]["ai_to"] == "anthropic"
    assert "timeline" in (tmp_path / "rehearsal.md").read_text()
    assert (tmp_path / "rehearsal.svg").read_text().startswith("<svg")
    assert "not exercised here" in result.stdout


@pytest.mark.parametrize(
    ("scenario", "recovery", "now"),
    [
        ("bad-release", None, "release now v3, running v1's slug"),
        ("data-loss", "point-in-time", "DATABASE now"),
    ],
)
def test_the_rehearsal_recovers_on_heroku_and_times_it(
    scenario: str, recovery: str | None, now: str, tmp_path: Path
) -> None:
    report_path = tmp_path / "report.json"
    result = run_script(
        "rehearse.py", "--scenario", scenario, "--rentals", "2000", *(["--recovery", recovery] if recovery else []),
        "--json", str(report_path), "--report", str(tmp_path / "rehearsal.md"),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert report["verified"] is True and report["rto_seconds"] > 0 and report["outcome"] == "succeeded"
    assert (
        report["counts_equal"] is True
    )  # every row the careless DELETE removed is back; a rollback kept them
    assert report["now"].startswith(now) and now in (tmp_path / "rehearsal.md").read_text()
    steps = {s["name"]: s["outcome"] for s in report["steps"]}
    if scenario == "bad-release":
        assert steps["roll_back"] == "done" and steps["wait_release"] in ("done", "already done")
    else:
        assert steps["promote"] == "done" and report["rpo_seconds"] > 0  # what went back in time is lost
    assert "not exercised here" in result.stdout


def test_interrupting_the_rehearsal_leaves_no_process_or_folder_behind(tmp_path: Path) -> None:
    # A short folder: PostgreSQL's Unix socket path must fit in 107 bytes.
    scratch = Path(tempfile.mkdtemp(prefix="drill-", dir="/tmp"))
    env = {**os.environ, "TMPDIR": str(scratch)}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "rehearse.py"), "--rentals", "2000", "--keep",
         "--report", str(tmp_path / "rehearsal.md")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in process.stdout:  # wait until everything is up and the cutover ran
        seen.append(line)
        if "the scheduled backup runs" in line or time.monotonic() > deadline:
            break  # everything is up: PostgreSQL, moto, the fake Heroku API, the web app
    assert any("the scheduled backup runs" in line for line in seen), "".join(seen)
    children = [p.pid for p in psutil.Process(process.pid).children(recursive=True)]
    # Keep reading what it says: a full pipe would block the rehearsal (and its children) mid-write.
    rest: list[str] = []
    reader = threading.Thread(target=lambda: rest.extend(process.stdout or []), daemon=True)
    reader.start()

    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the rehearsal did not stop within 60 s of Ctrl-C; it said:\n" + "".join(rest[-40:]))
    reader.join(timeout=10)

    assert [
        p for p in children if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ] == []
    assert list(scratch.iterdir()) == []
    postgres = [
        p for p in psutil.process_iter(["cmdline"]) if str(scratch) in " ".join(p.info["cmdline"] or [])
    ]
    assert postgres == []
    scratch.rmdir()
