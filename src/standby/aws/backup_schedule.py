"""`BackupSchedule`: EventBridge Scheduler runs the backup task every `backupIntervalMinutes`."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from standby.aws.task_triggers import fargate_network, on_schedule, runner_role


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
        # Exactly what starting the task takes: run this task definition on this cluster, pass its roles.
        self.role = runner_role(
            f"{name}-role", "scheduler.amazonaws.com", args.task_definition_arn, args.cluster_arn,
            args.task_role_arns, self, policy_name=f"{name}-policy",
        )  # fmt: skip
        self.schedule = on_schedule(
            f"{name}-schedule", f"{args.app}-standby-backup", f"rate({args.interval_minutes} minutes)",
            args.cluster_arn, args.task_definition_arn, self.role,
            fargate_network(args.subnet_ids, args.security_group_id), self,
        )  # fmt: skip
        self.register_outputs({})
