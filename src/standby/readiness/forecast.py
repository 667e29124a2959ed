"""The RTO forecast (how long a cutover of today's newest backup would take, from measured figures) and
how recently a drill proved the restore."""

from __future__ import annotations

import statistics
from typing import Final

from standby.catalog import CLOCK_SKEW
from standby.drill_history import FORECAST_FROM, forecast_restore_seconds
from standby.readiness.check import Check, critical, human, ok, warning
from standby.readiness.sources import Sources
from standby.runbook.journal import JournalStore

# Stated defaults, used only until drills and a cutover measured this standby: a restore at 50 MB/s of
# dump (an RDS db.m6g.large from S3, pg_restore -j 2), three minutes to verify and turn healthy, two to
# fence Heroku and move the names.
DEFAULT_RESTORE_MB_S: Final = 50.0
DEFAULT_TO_HEALTHY: Final = 180.0
DEFAULT_CONTROL: Final = 120.0
WARN_AT: Final = 0.8  # a forecast above this share of the RTO leaves no room for a bad day
DATA_STEPS: Final = ("final_backup", "restore", "verify_data", "wait_healthy")


def rto_forecast(src: Sources, journals: JournalStore) -> Check:
    rto = src.manifest.rto_seconds
    newest = src.newest
    if newest is None:
        return critical("rto-forecast", "no backup to forecast a cutover from", "see backup-age.")
    history = src.drills
    measured = forecast_restore_seconds(history, newest.size)
    restore = measured if measured is not None else newest.size / 1e6 / DEFAULT_RESTORE_MB_S
    rate = newest.size / 1e6 / restore if restore > 0 else DEFAULT_RESTORE_MB_S
    after = [f.time_to_healthy_seconds - f.restore_seconds for f in history[-FORECAST_FROM:]]
    to_healthy = statistics.median(after) if after else DEFAULT_TO_HEALTHY
    final_backup = (newest.finished_at - newest.started_at).total_seconds()
    cutover = journals.load(src.app, "cutover")
    control_steps = [
        max(0.0, r.seconds) for r in (cutover.steps if cutover and cutover.outcome == "succeeded" else [])
        if r.name not in DATA_STEPS and r.seconds is not None
    ]  # fmt: skip
    control = sum(control_steps) if control_steps else DEFAULT_CONTROL
    total = round(final_backup + restore + to_healthy + control, 1)
    src.figures.update(rto_forecast_seconds=total, restore_mb_s=round(rate, 2))
    parts = (
        f"final backup {human(final_backup)} (the newest took that), restore of {newest.size / 1e9:.2f} GB "
        f"{human(restore)} at {rate:.1f} MB/s ({'drills' if measured is not None else 'stated default'}), "
        f"verify and healthy {human(to_healthy)} ({'drills' if after else 'stated default'}), fence and DNS "
        f"{human(control)} ({'last cutover' if control_steps else 'stated default'})"
    )
    said = f"a cutover now takes about {human(total)} against an RTO of {human(rto)}: {parts}"
    if total > rto:
        return critical(
            "rto-forecast",
            said,
            "keep the standby warm (restore-ahead), give its database more IOPS or a larger class, or raise the RTO "
            "the plan promises; a drill measures the restore again.",
            total,
        )
    if total > WARN_AT * rto:
        return warning(
            "rto-forecast", said + ": little room for a bad day", "as for a forecast above the RTO.", total
        )
    return ok("rto-forecast", said, total)


def drill(src: Sources) -> Check:
    interval = src.manifest.drill_interval_days * 86400
    if not src.drills:
        return critical(
            "drill",
            f"{src.app} was never drilled: nothing has shown that its backups restore and its app starts on AWS",
            f"run `python scripts/drill.py --app {src.app}` (it leaves the live standby alone).",
        )
    # A drill dated ahead of this clock (beyond skew) would stay "recent" for ever: it does not count.
    past = [d for d in src.drills if d.finished <= src.now + CLOCK_SKEW]
    if not past:
        return critical(
            "drill",
            f"every drill record of {src.app} is dated in the future: none proves anything",
            "look at who wrote drills/<app>/ in the bucket, then run `python scripts/drill.py`.",
        )
    last = max(past, key=lambda d: d.finished)
    age = src.age(last.finished)
    src.figures["drill_age_seconds"] = age
    said = (
        f"the last drill ({last.run_id}) finished {human(age)} ago: restored {last.dump_bytes / 1e9:.2f} GB at "
        f"{last.throughput_mb_s} MB/s, healthy in {human(last.time_to_healthy_seconds)}"
    )
    if age > interval:
        return warning(
            "drill",
            f"{said}; drills are due every {src.manifest.drill_interval_days} days",
            f"run `python scripts/drill.py --app {src.app}`.",
            age,
        )
    return ok("drill", said, age)
