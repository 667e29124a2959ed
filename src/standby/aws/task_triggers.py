"""Starting one of the standby's tasks without anyone: after each completed backup (an EventBridge rule)
or on a schedule (EventBridge Scheduler). Restore-ahead, the status task and the backups start this way."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from standby.aws.duties import ECS_TASKS
from standby.aws.policies import allow, assume_role, document


def fargate_network(
    subnet_ids: list[pulumi.Input[str]], security_group_id: pulumi.Input[str]
) -> dict[str, Any]:
    return {"subnets": subnet_ids, "security_groups": [security_group_id], "assign_public_ip": False}


def runner_role(
    name: str,
    service: str,
    task_definition_arn: pulumi.Input[str],
    cluster_arn: pulumi.Input[str],
    task_role_arns: list[pulumi.Input[str]],
    parent: pulumi.Resource,
    policy_name: str | None = None,
) -> aws.iam.Role:
    """The role `service` assumes to start the task: run that task definition on that cluster and pass
    the task's roles, nothing more."""
    opts = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(name, assume_role_policy=assume_role(service), opts=opts)
    aws.iam.RolePolicy(
        policy_name or f"{name}-policy",
        role=role.id,
        policy=document(
            [
                allow(["ecs:RunTask"], [task_definition_arn], ArnLike={"ecs:cluster": cluster_arn}),
                allow(["iam:PassRole"], task_role_arns, StringEquals={"iam:PassedToService": ECS_TASKS}),
            ]
        ),
        opts=opts,
    )
    return role


def after_completed_backup(
    name: str,
    description: str,
    cluster_arn: pulumi.Input[str],
    backup_task_family: str,
    task_definition_arn: pulumi.Input[str],
    task_role_arns: list[pulumi.Input[str]],
    network: dict[str, Any],
    parent: pulumi.Resource,
) -> aws.cloudwatch.EventRule:
    """Run the task each time the backup task stops with exit code 0: a completed backup, its manifest
    written."""
    opts = pulumi.ResourceOptions(parent=parent)
    rule = aws.cloudwatch.EventRule(
        f"{name}-after-backup",
        description=description,
        event_pattern=pulumi.Output.from_input(cluster_arn).apply(
            lambda cluster: json.dumps(
                {
                    "source": ["aws.ecs"],
                    "detail-type": ["ECS Task State Change"],
                    "detail": {
                        "clusterArn": [cluster],
                        "group": [f"family:{backup_task_family}"],
                        "lastStatus": ["STOPPED"],
                        "containers": {"exitCode": [0]},
                    },
                }
            )
        ),
        opts=opts,
    )
    runner = runner_role(
        f"{name}-events", "events.amazonaws.com", task_definition_arn, cluster_arn, task_role_arns, parent
    )
    ecs_target: Any = {
        "task_definition_arn": task_definition_arn,
        "launch_type": "FARGATE",
        "task_count": 1,
        "network_configuration": network,
    }
    aws.cloudwatch.EventTarget(
        f"{name}-target",
        rule=rule.name,
        arn=cluster_arn,
        role_arn=runner.arn,
        ecs_target=ecs_target,
        opts=opts,
    )
    return rule


def on_schedule(
    name: str,
    schedule_name: str,
    expression: str,
    cluster_arn: pulumi.Input[str],
    task_definition_arn: pulumi.Input[str],
    runner: aws.iam.Role,
    network: dict[str, Any],
    parent: pulumi.Resource,
) -> aws.scheduler.Schedule:
    """Run the task on `expression` (`rate(15 minutes)`), retried twice when it cannot start."""
    target: Any = {
        "arn": cluster_arn,
        "role_arn": runner.arn,
        "ecs_parameters": {
            "task_definition_arn": task_definition_arn,
            "launch_type": "FARGATE",
            "network_configuration": network,
        },
        "retry_policy": {"maximum_retry_attempts": 2},
    }
    return aws.scheduler.Schedule(
        name,
        name=schedule_name,
        schedule_expression=expression,
        flexible_time_window={"mode": "OFF"},
        target=target,
        opts=pulumi.ResourceOptions(parent=parent),
    )
