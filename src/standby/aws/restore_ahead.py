"""`RestoreAhead`: in warm mode, each backup that completes is restored into the standby right away.

EventBridge sees the backup task stop with exit code 0 and starts the restore task
(`scripts/restore.py --ahead --yes`), so a cutover finds the newest backup already restored. The task
takes the app's lock and reads the live mode under it: it stands down while a runbook runs or the standby
is live. The stack declares it only while the region's live mode is warm, so a `pulumi up` after a cutover
removes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from standby.aws import duties
from standby.aws.duties import BackupPlace
from standby.aws.policies import assume_role, document
from standby.aws.task_triggers import after_completed_backup, fargate_network


@dataclass(frozen=True)
class RestoreAheadArgs:
    app: str
    region: str
    account: pulumi.Input[str]
    image: str  # the backup image: it carries scripts/restore.py and pg_restore
    cluster_arn: pulumi.Input[str]
    backup_task_family: str
    execution_role_arn: pulumi.Input[str]
    log_group: pulumi.Input[str]
    backup_bucket_arn: pulumi.Input[str]
    backup_key_arn: pulumi.Input[str]
    database_url_secret_arn: pulumi.Input[str]
    app_database_url_secret_arn: pulumi.Input[str]  # the restored data goes to the app's role
    lock_table_arn: pulumi.Input[str]
    backup_mac_key_arn: pulumi.Input[str]
    subnet_ids: list[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]


class RestoreAhead(pulumi.ComponentResource):
    def __init__(self, name: str, args: RestoreAheadArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("standby:aws:RestoreAhead", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Reads backups and the database's URL, holds the app's lock; writes no backup and no journal.
        self.role = aws.iam.Role(
            f"{name}-role", assume_role_policy=assume_role("ecs-tasks.amazonaws.com"), opts=child
        )
        aws.iam.RolePolicy(
            f"{name}-policy",
            name="restore-reader",  # the duty: the security rules look it up by this name
            role=self.role.id,
            policy=document(
                duties.restore_reader(
                    BackupPlace.of(args),
                    database_secrets=[args.database_url_secret_arn, args.app_database_url_secret_arn],
                    lock_table_arn=args.lock_table_arn,
                )
            ),
            opts=child,
        )
        self.task = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=f"{args.app}-restore-ahead",
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu="2048",
            memory="4096",
            execution_role_arn=args.execution_role_arn,
            task_role_arn=self.role.arn,
            container_definitions=pulumi.Output.json_dumps(
                [
                    {
                        "name": "restore-ahead",
                        "image": args.image,
                        "essential": True,
                        "entryPoint": ["python", "scripts/restore.py"],
                        "command": ["--app", args.app, "--ahead", "--yes"],
                        "environment": [{"name": "AWS_REGION", "value": args.region}],
                        "logConfiguration": {
                            "logDriver": "awslogs",
                            "options": {
                                "awslogs-group": args.log_group,
                                "awslogs-region": args.region,
                                "awslogs-stream-prefix": "restore-ahead",
                            },
                        },
                    }
                ]
            ),
            opts=child,
        )
        self.rule = after_completed_backup(
            name,
            f"restore each completed backup of {args.app} into the warm standby",
            args.cluster_arn,
            args.backup_task_family,
            self.task.arn,
            [args.execution_role_arn, self.role.arn],
            fargate_network(args.subnet_ids, args.security_group_id),
            self,
        )
        self.register_outputs({"task": self.task.arn})
