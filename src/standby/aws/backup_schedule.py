"""`BackupSchedule`: EventBridge Scheduler runs the backup task every `backupIntervalMinutes`."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from standby.aws.policies import allow, assume_role, document


@dataclass(frozen=True)
class ScheduleArgs:
    app: str
    interval_minutes: int
    cluster_arn: pulumi.Input[str]
    task_definition_arn: pulumi.Input[str]
    task_role_arns: list[pulumi.Input[str]]  # the roles the task runs with; the scheduler passes them
    subnet_ids: list[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]


class BackupSchedule(pulumi.ComponentResource):
    def __init__(self, name: str, args: ScheduleArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("standby:aws:BackupSchedule", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.role = aws.iam.Role(
            f"{name}-role", assume_role_policy=assume_role("scheduler.amazonaws.com"), opts=child
        )
        # Exactly what starting the task takes: run this task definition on this cluster, pass its roles.
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=self.role.id,
            policy=document(
                [
                    allow(
                        ["ecs:RunTask"], [args.task_definition_arn], ArnLike={"ecs:cluster": args.cluster_arn}
                    ),
                    allow(
                        ["iam:PassRole"],
                        args.task_role_arns,
                        StringEquals={"iam:PassedToService": "ecs-tasks.amazonaws.com"},
                    ),
                ]
            ),
            opts=child,
        )
        self.schedule = aws.scheduler.Schedule(
            f"{name}-schedule",
            name=f"{args.app}-standby-backup",
            schedule_expression=f"rate({args.interval_minutes} minutes)",
            flexible_time_window={"mode": "OFF"},
            target={
                "arn": args.cluster_arn,
                "role_arn": self.role.arn,
                "ecs_parameters": {
                    "task_definition_arn": args.task_definition_arn,
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
        self.register_outputs({})
