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
from standby.aws.policies import allow, assume_role, document
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
        # After each completed backup (its manifest written), as restore-ahead is started.
        self.rule = aws.cloudwatch.EventRule(
            f"{name}-after-backup",
            description=f"check the readiness of {args.app}'s standby after each completed backup",
            event_pattern=pulumi.Output.from_input(args.cluster_arn).apply(
                lambda cluster: json.dumps(
                    {
                        "source": ["aws.ecs"],
                        "detail-type": ["ECS Task State Change"],
                        "detail": {
                            "clusterArn": [cluster],
                            "group": [f"family:{args.backup_task_family}"],
                            "lastStatus": ["STOPPED"],
                            "containers": {"exitCode": [0]},
                        },
                    }
                )
            ),
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-target",
            rule=self.rule.name,
            arn=args.cluster_arn,
            role_arn=self._runner(f"{name}-events", "events.amazonaws.com").arn,
            ecs_target={
                "task_definition_arn": self.task.arn,
                "launch_type": "FARGATE",
                "task_count": 1,
                "network_configuration": {
                    "subnets": args.subnet_ids,
                    "security_groups": [args.security_group_id],
                    "assign_public_ip": False,
                },
            },
            opts=child,
        )
        self.schedule = aws.scheduler.Schedule(
            f"{name}-daily",
            name=f"{args.app}-standby-status-daily",
            schedule_expression=DAILY,
            flexible_time_window={"mode": "OFF"},
            target={
                "arn": args.cluster_arn,
                "role_arn": self._runner(f"{name}-scheduler", "scheduler.amazonaws.com").arn,
                "ecs_parameters": {
                    "task_definition_arn": self.task.arn,
                    "launch_type": "FARGATE",
                    "network_configuration": {
                        "subnets": args.subnet_ids,
                        "security_groups": [args.security_group_id],
                        "assign_public_ip": False,
                    },
                },
                "retry_policy": {"maximum_retry_attempts": 2},
            },
            opts=child,
        )
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=f"{args.app}-standby-readiness",
            dashboard_body=json.dumps(dashboard_body(args)),
            opts=child,
        )
        self.register_outputs({"task": self.task.arn, "dashboard": self.dashboard.dashboard_name})

    def _runner(self, name: str, service: str) -> aws.iam.Role:
        """A role `service` assumes to start the status task: run this task definition on this cluster and
        pass its two roles, nothing more."""
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(name, assume_role_policy=assume_role(service), opts=child)
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=document(
                [
                    allow(["ecs:RunTask"], [self.task.arn], ArnLike={"ecs:cluster": self._args.cluster_arn}),
                    allow(
                        ["iam:PassRole"],
                        [self._args.execution_role_arn, self.role.arn],
                        StringEquals={"iam:PassedToService": duties.ECS_TASKS},
                    ),
                ]
            ),
            opts=child,
        )
        return role

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
