"""Each readiness check as a CloudWatch metric, for the stack's alarms and dashboard (`--publish`).

Namespace `Standby/Readiness`, dimension App (and Check for `CheckLevel`). A check's level is 0, 1 or 2:
the stack's alarm on each fires at 2; the alarm on the score fires when no status has run for a day.
"""

from __future__ import annotations

from typing import Any, Final

from standby.names import READINESS_NAMESPACE
from standby.readiness.check import Readiness

CHECK_LEVEL: Final = "CheckLevel"  # dimensions App, Check: 0 ok, 1 warning, 2 critical
SCORE: Final = "ReadinessScore"  # 0..100
RTO_FORECAST: Final = "RtoForecastSeconds"
RESTORE_THROUGHPUT: Final = "RestoreThroughputMBs"  # the drills' median, what the forecast uses
DRILL_AGE: Final = "DrillAgeSeconds"  # since the last successful drill
BACKUP_AGE: Final = "BackupAgeSeconds"  # the data a disaster now would lose
FIGURE_METRICS: Final = {
    "rto_forecast_seconds": (RTO_FORECAST, "Seconds"),
    "restore_mb_s": (RESTORE_THROUGHPUT, "None"),
    "drill_age_seconds": (DRILL_AGE, "Seconds"),
    "backup_age_seconds": (BACKUP_AGE, "Seconds"),
}


def metric_data(readiness: Readiness) -> list[dict[str, Any]]:
    app = [{"Name": "App", "Value": readiness.app}]
    data: list[dict[str, Any]] = [
        {"MetricName": SCORE, "Dimensions": app, "Value": float(readiness.score), "Unit": "None"}
    ]
    for check in readiness.checks:
        dims = [*app, {"Name": "Check", "Value": check.name}]
        data.append(
            {"MetricName": CHECK_LEVEL, "Dimensions": dims, "Value": float(check.level), "Unit": "None"}
        )
    for figure, (metric, unit) in FIGURE_METRICS.items():
        value = readiness.figures.get(figure)
        if value is not None:
            data.append({"MetricName": metric, "Dimensions": app, "Value": float(value), "Unit": unit})
    return data


def publish(readiness: Readiness, cloudwatch: Any) -> None:
    data = metric_data(readiness)
    for start in range(0, len(data), 500):  # PutMetricData takes at most 1000 items; stay well under
        cloudwatch.put_metric_data(Namespace=READINESS_NAMESPACE, MetricData=data[start : start + 500])
