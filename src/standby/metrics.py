"""Backup signals in CloudWatch: the standby's alarms watch these (and fire when they stop coming)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from standby import aws_clients
from standby.catalog import BackupManifest
from standby.names import BACKUP_METRICS_NAMESPACE

BACKUP_AGE: Final = "BackupAgeSeconds"  # how old the data of the newest backup was when it landed
BACKUP_SIZE: Final = "BackupSizeBytes"
BACKUP_COMPLETED: Final = "BackupCompleted"  # 1 per backup: no datapoint in an RPO window means no backup
BACKUP_DURATION: Final = "BackupDurationSeconds"  # start to manifest: above the interval, runs get skipped
BACKUP_SKIPPED: Final = "BackupSkipped"  # 1 per scheduled run skipped because the previous one still ran


def publish_backup_metrics(
    manifest: BackupManifest, namespace: str = BACKUP_METRICS_NAMESPACE, region: str | None = None
) -> None:
    dimensions = [{"Name": "App", "Value": manifest.app}]
    age = (datetime.now(UTC) - manifest.snapshot_at).total_seconds()
    took = (manifest.finished_at - manifest.started_at).total_seconds()
    aws_clients.client("cloudwatch", region).put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": BACKUP_AGE, "Dimensions": dimensions, "Value": age, "Unit": "Seconds"},
            {
                "MetricName": BACKUP_SIZE,
                "Dimensions": dimensions,
                "Value": float(manifest.size),
                "Unit": "Bytes",
            },
            {"MetricName": BACKUP_COMPLETED, "Dimensions": dimensions, "Value": 1.0, "Unit": "Count"},
            {"MetricName": BACKUP_DURATION, "Dimensions": dimensions, "Value": took, "Unit": "Seconds"},
        ],
    )


def publish_backup_skipped(
    app: str, namespace: str = BACKUP_METRICS_NAMESPACE, region: str | None = None
) -> None:
    aws_clients.client("cloudwatch", region).put_metric_data(
        Namespace=namespace,
        MetricData=[{"MetricName": BACKUP_SKIPPED, "Dimensions": [{"Name": "App", "Value": app}], "Value": 1.0,
                     "Unit": "Count"}],
    )  # fmt: skip
