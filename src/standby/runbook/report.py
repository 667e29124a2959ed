"""The report a run leaves: Markdown for people, JSON for automation (`verified`, `rto_seconds`,
`rpo_seconds`, `steps`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from standby.runbook.journal import Journal
from standby.runbook.timeline import timeline_svg


def report_json(journal: Journal) -> dict[str, Any]:
    starts = [s.started for s in journal.steps]
    ends = [s.ended for s in journal.steps if s.ended is not None]
    facts = journal.facts
    return {
        "app": journal.app,
        "runbook": journal.runbook,
        "run_id": journal.run_id,
        "outcome": journal.outcome,
        "verified": bool(facts.get("verified", False)),
        # A runbook may measure its own RTO (a drill: up to the healthy task, not its teardown).
        "rto_seconds": facts["rto_seconds"]
        if "rto_seconds" in facts
        else (round(max(ends) - min(starts), 3) if starts and ends else None),
        "rpo_seconds": facts.get("rpo_seconds"),
        "steps": [
            {
                "name": s.name,
                "start": _iso(s.started),
                "end": _iso(s.ended) if s.ended is not None else None,
                "seconds": round(s.seconds, 3) if s.seconds is not None else None,
                "outcome": s.outcome,
                "detail": s.detail,
            }
            for s in journal.steps
        ],
        "facts": facts,
    }


def report_markdown(journal: Journal, timeline: str | None = None) -> str:
    doc = report_json(journal)
    rpo = doc["rpo_seconds"]
    lines = [
        f"# {journal.runbook} of {journal.app}: {journal.outcome}",
        "",
        *([f"![timeline]({timeline})", ""] if timeline else []),
        f"- run: {journal.run_id}",
        f"- RTO achieved: {doc['rto_seconds']} s"
        if doc["rto_seconds"] is not None
        else "- RTO: not measured",
        f"- RPO achieved (age of the data): {rpo} s" if rpo is not None else "- RPO: not measured",
        f"- data verified: {'yes' if doc['verified'] else 'no'}",
        "",
        "| step | outcome | seconds |",
        "|---|---|---|",
        *[
            f"| {s['name']} | {s['outcome']} | {s['seconds'] if s['seconds'] is not None else '-'} |"
            for s in doc["steps"]
        ],
        "",
        "Measured and decided on the way:",
        "",
        *[f"- {name}: {value}" for name, value in journal.facts.items() if _printable(value)],
    ]
    return "\n".join(lines) + "\n"


def write_reports(journal: Journal, markdown: Path, json_path: Path | None) -> None:
    """The Markdown report, the timeline picture beside it (same name, .svg) and, if asked, the JSON."""
    svg = markdown.with_suffix(".svg")
    svg.write_text(timeline_svg(report_json(journal)))
    markdown.write_text(report_markdown(journal, svg.name))
    if json_path is not None:
        json_path.write_text(json.dumps(report_json(journal), indent=2))


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def _printable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None
