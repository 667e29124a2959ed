"""`ReadinessWatch`: the readiness checks run by themselves, after each backup and daily (issue 17).

Readiness that someone must remember to check is found wanting on the day of the disaster. Here it is
pushed: the status task (`scripts/status.py --publish`, in the backup image) runs after each backup task stops with
exit code 0 and once a day, and publishes every check's level, the score and the figures in
`Standby/Readiness`. `Monitoring` alarms on them; the dashboard shows them next to the backups' own
signals. The task reads only (`standby.aws.duties.readiness_reader`): it never repairs what it finds.

Declared in the region that runs the backups. Its policy names the other region's replica bucket, which
is declared after this region: the program grants it once both exist (`allow_reading`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi_aws as aws

from standby import metrics
from standby.aws import duties
from standby.aws.policies import assume_role
from standby.aws.task_triggers import after_completed_backup, fargate_network, on_schedule, runner_role
from standby.names import BACKUP_METRICS_NAMESPACE, READINESS_NAMESPACE
from standby.readiness import publish
from standby.readiness.check import CHECKS, Level
from standby.security_rules import READINESS_READER
from standby.standby_manifest import StandbyManifest

DAILY: Final = "rate(1 day)"  # the checks also run when no backup does: a stopped schedule is a finding


@dataclass(frozen=True)
class ReadinessWatchArgs:
    app: str
    region: str
    account: str
    image: str  # the backup image: it carries scripts/status.py and pg_restore
    cluster_arn: pulumi.Input[str]
    backup_task_family: str
    execution_role_arn: pulumi.Input[str]
    log_group: pulumi.Input[str]
    heroku_key_secret_arn: pulumi.Input[str] | None  # the backup task's; None: the Heroku checks say so
    subnet_ids: list[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    manifest: pulumi.Input[str]  # this region's standby manifest (JSON): what the checks and the duty read
    bucket_key_arn: pulumi.Input[str]
    rpo_seconds: int
    rto_seconds: int
    drill_interval_days: int


class ReadinessWatch(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: ReadinessWatchArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("standby:aws:ReadinessWatch", name, None, opts)
        self._name, self._args = name, args
        child = pulumi.ResourceOptions(parent=self)
        self.role = aws.iam.Role(f"{name}-role", assume_role_policy=assume_role(duties.ECS_TASKS), opts=child)
        secrets = (
            [{"name": "HEROKU_API_KEY", "valueFrom": args.heroku_key_secret_arn}]
            if args.heroku_key_secret_arn is not None
            else []
        )
        self.task = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=f"{args.app}-status",
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu="512",
            memory="1024",
            execution_role_arn=args.execution_role_arn,
            task_role_arn=self.role.arn,
            container_definitions=pulumi.Output.json_dumps(
                [
                    {
                        "name": "status",
                        "image": args.image,
                        "essential": True,
                        # The image's entry point is the backup: replace it, as restore-ahead does.
                        "entryPoint": ["python", "scripts/status.py"],
                        "command": ["--app", args.app, "--region", args.region, "--publish"],
                        "environment": [{"name": "AWS_REGION", "value": args.region}],
                        "secrets": secrets,
                        "logConfiguration": {
                            "logDriver": "awslogs",
                            "options": {
                                "awslogs-group": args.log_group,
                                "awslogs-region": args.region,
                                "awslogs-stream-prefix": "status",
                            },
                        },
                    }
                ]
            ),
            opts=child,
        )
        network = fargate_network(args.subnet_ids, args.security_group_id)
        task_roles = [args.execution_role_arn, self.role.arn]
        self.rule = after_completed_backup(
            name,
            f"check the readiness of {args.app}'s standby after each completed backup",
            args.cluster_arn,
            args.backup_task_family,
            self.task.arn,
            task_roles,
            network,
            self,
        )
        scheduler = runner_role(
            f"{name}-scheduler", "scheduler.amazonaws.com", self.task.arn, args.cluster_arn, task_roles, self
        )
        self.schedule = on_schedule(
            f"{name}-daily", f"{args.app}-standby-status-daily", DAILY, args.cluster_arn, self.task.arn,
            scheduler, network, self,
        )  # fmt: skip
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=f"{args.app}-standby-readiness",
            dashboard_body=json.dumps(dashboard_body(args)),
            opts=child,
        )
        self.register_outputs({"task": self.task.arn, "dashboard": self.dashboard.dashboard_name})

    def allow_reading(self, replica_bucket: pulumi.Input[str] | None) -> aws.iam.RolePolicy:
        """The task role's one inline policy, once the other region's replica bucket is declared."""
        args = self._args
        return aws.iam.RolePolicy(
            f"{self._name}-policy",
            name=READINESS_READER,  # the duty: the security rules look it up by this name
            role=self.role.id,
            policy=pulumi.Output.all(args.manifest, args.bucket_key_arn, replica_bucket).apply(
                lambda v: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": duties.readiness_reader(
                            StandbyManifest.from_json(v[0]), args.account, v[1], v[2]
                        ),
                    }
                )
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )


def dashboard_body(args: ReadinessWatchArgs) -> dict[str, Any]:
    """The dashboard: what a disaster now would cost (backup age, RTO forecast), what the forecast rests
    on (restore throughput, drills), the score and every check's level. Static: it names metrics only."""
    app = ["App", args.app]

    def readiness(metric: str, *extra: Any) -> list[Any]:
        return [READINESS_NAMESPACE, metric, *app, *extra]

    def line(value: float, label: str) -> dict[str, Any]:
        return {"value": value, "label": label}

    widgets = [
        ("Backup age (s)", [[BACKUP_METRICS_NAMESPACE, metrics.BACKUP_AGE, *app, {"label": "as each backup landed"}],
                            readiness(publish.BACKUP_AGE, {"label": "at each status"})],
         [line(args.rpo_seconds, "RPO")]),
        ("Restore throughput (MB/s)", [readiness(publish.RESTORE_THROUGHPUT)], []),
        ("Drills", [readiness(publish.DRILL_AGE, {"label": "since the last good drill (s)"}),
                    readiness(publish.CHECK_LEVEL, "Check", "drill", {"label": "drill check level", "yAxis": "right"})],
         [line(args.drill_interval_days * 86400, "drill due")]),
        ("RTO forecast (s)", [readiness(publish.RTO_FORECAST)], [line(args.rto_seconds, "RTO target")]),
        ("Readiness score", [readiness(publish.SCORE)], [line(100, "ready")]),
        ("Check levels (1 warning, 2 critical)",
         [readiness(publish.CHECK_LEVEL, "Check", check, {"label": check}) for check in CHECKS],
         [line(int(Level.WARNING), "warning"), line(int(Level.CRITICAL), "critical")]),
    ]  # fmt: skip
    return {
        "widgets": [
            {
                "type": "metric",
                "x": 12 * (i % 2),
                "y": 6 * (i // 2),
                "width": 12,
                "height": 6,
                "properties": {
                    "title": title,
                    "region": args.region,
                    "view": "timeSeries",
                    "stat": "Maximum",
                    "period": 3600,
                    "metrics": series,
                    "annotations": {"horizontal": lines},
                },
            }
            for i, (title, series, lines) in enumerate(widgets)
        ]
    }
