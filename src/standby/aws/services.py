"""`StandbyServices`: the app on ECS Fargate behind an HTTPS load balancer, one service per process type,
and the backup task the schedule runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from standby.aws import duties
from standby.aws.duties import BackupPlace
from standby.aws.network import StandbyNetwork
from standby.aws.policies import allow, assume_role, document
from standby.names import DRILL_CLOSED, DRILL_HEADER
from standby.security_rules import BACKUP_WRITER
from standby.sizing import FargateSize, desired_count
from standby.vocabulary import Mode

WEB: Final = "web"
EXECUTION_POLICY: Final = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
LOG_RETENTION_DAYS: Final = 30


@dataclass(frozen=True)
class ProcessSpec:
    quantity: int
    size: FargateSize
    command: list[str]


@dataclass(frozen=True)
class ServicesArgs:
    app: str
    region: str
    account: pulumi.Input[str]  # the AWS account id, for ARNs the policies name
    mode: Mode
    image: str
    backup_image: str
    processes: dict[str, ProcessSpec]
    container_port: int
    health_check_path: str
    app_settings: pulumi.Input[str]  # JSON of every config var the app gets, a secret
    setting_names: list[str]  # its keys, which are not secret
    database_url_secret_arn: pulumi.Input[str] | None  # the master user's; None: no database here yet
    app_database_url_secret_arn: pulumi.Input[str] | None  # the application role's: what the tasks get
    backup_bucket_arn: pulumi.Input[str]
    backup_key_arn: pulumi.Input[str]
    backup_mac_key_arn: pulumi.Input[str]
    network: StandbyNetwork
    hosted_zone_id: pulumi.Input[str]
    domains: list[str]
    heroku_api_key: pulumi.Input[str] | None = None
    backup_streams: int | None = None  # `backup.py run --streams`; None: chosen by the database's size
    tags: dict[str, str] = field(default_factory=dict)


class StandbyServices(pulumi.ComponentResource):
    def __init__(self, name: str, args: ServicesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("standby:aws:StandbyServices", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = aws.ecr.Repository(
            f"{name}-images",
            name=f"{args.app}-standby",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS"}],
            opts=child,
        )
        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            name=f"{args.app}-standby",
            settings=[{"name": "containerInsights", "value": "enabled"}],
            opts=child,
        )
        logs = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=f"/standby/{args.app}", retention_in_days=LOG_RETENTION_DAYS, opts=child
        )
        self.log_group = logs.name
        self.settings_secret = aws.secretsmanager.Secret(
            f"{name}-settings",
            name=f"standby/{args.app}/config-vars",
            description=f"{args.app}'s config vars as the standby runs them",
            opts=child,
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-settings-value",
            secret_id=self.settings_secret.id,
            secret_string=pulumi.Output.secret(args.app_settings),
            opts=child,
        )
        secrets: list[pulumi.Input[str]] = [self.settings_secret.arn]
        self.drill_secret: aws.secretsmanager.Secret | None = None
        if args.app_database_url_secret_arn is not None:
            secrets.append(args.app_database_url_secret_arn)  # the tasks never see the master user's
            # A drill's web task reads its scratch DATABASE_URL from here; the drill writes the value.
            self.drill_secret = aws.secretsmanager.Secret(
                f"{name}-drill-database-url",
                name=f"standby/{args.app}/drill-database-url",
                description="DATABASE_URL of a drill's scratch database; written by scripts/drill.py",
                recovery_window_in_days=0,
                opts=child,
            )
            secrets.append(self.drill_secret.arn)
        # Heroku's DATABASE_URL as the newest backup used it: the backup task writes it, the cutover reads it
        # when Heroku's API is dark (to fence the database and take the final backup).
        self.primary_database_secret = aws.secretsmanager.Secret(
            f"{name}-heroku-database-url",
            name=f"standby/{args.app}/heroku-database-url",
            description=f"{args.app}'s Heroku DATABASE_URL as the newest backup used it; written by the backup task",
            opts=child,
        )
        # The backup and status tasks get HEROKU_API_KEY from here (the execution role reads it).
        self.heroku_key: aws.secretsmanager.Secret | None = None
        if args.heroku_api_key is not None:
            self.heroku_key = aws.secretsmanager.Secret(
                f"{name}-heroku-key", name=f"standby/{args.app}/heroku-api-key", opts=child
            )
            aws.secretsmanager.SecretVersion(
                f"{name}-heroku-key-value",
                secret_id=self.heroku_key.id,
                secret_string=pulumi.Output.secret(args.heroku_api_key),
                opts=child,
            )
            secrets.append(self.heroku_key.arn)
        self.execution_role = aws.iam.Role(
            f"{name}-execution", assume_role_policy=assume_role("ecs-tasks.amazonaws.com"), opts=child
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-execution-base", role=self.execution_role.name, policy_arn=EXECUTION_POLICY, opts=child
        )
        aws.iam.RolePolicy(
            f"{name}-execution-secrets",
            role=self.execution_role.id,
            policy=document([allow(["secretsmanager:GetSecretValue"], secrets)]),
            opts=child,
        )
        self.app_role = aws.iam.Role(
            f"{name}-app", assume_role_policy=assume_role("ecs-tasks.amazonaws.com"), opts=child
        )

        self.load_balancer, self.target_group, self.drill_target_group = self._load_balancer(
            name, args, child
        )
        self.task_definitions: dict[str, aws.ecs.TaskDefinition] = {}
        self.services: dict[str, aws.ecs.Service] = {}
        for process_type, spec in args.processes.items():
            self.task_definitions[process_type] = self._task_definition(
                name, args, process_type, spec, logs.name, self.settings_secret.arn
            )
            self.services[process_type] = self._service(name, args, process_type, spec)

        self.backup_role = aws.iam.Role(
            f"{name}-backup", assume_role_policy=assume_role("ecs-tasks.amazonaws.com"), opts=child
        )
        aws.iam.RolePolicy(
            f"{name}-backup-policy",
            name=BACKUP_WRITER,  # the duty: the security rules look it up by this name
            role=self.backup_role.id,
            policy=document(
                duties.backup_writer(
                    BackupPlace.of(args),
                    primary_database_secret=self.primary_database_secret.arn,
                    standby_database_secret=args.app_database_url_secret_arn,  # the app's role, not master
                )
            ),
            opts=child,
        )
        backup_secrets = (
            [{"name": "HEROKU_API_KEY", "valueFrom": self.heroku_key.arn}] if self.heroku_key else []
        )
        self.backup_task = aws.ecs.TaskDefinition(
            f"{name}-backup-task",
            family=f"{args.app}-backup",
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            # Two cores: a large database is dumped in two compressed streams at once (docs/backups.md).
            cpu="2048",
            memory="4096",
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.backup_role.arn,
            container_definitions=pulumi.Output.json_dumps(
                [
                    {
                        "name": "backup",
                        "image": args.backup_image,
                        "essential": True,
                        "command": [
                            "--app",
                            args.app,
                            *(["--streams", str(args.backup_streams)] if args.backup_streams else []),
                        ],
                        "environment": [
                            {"name": "STANDBY_APP", "value": args.app},
                            {"name": "AWS_REGION", "value": args.region},
                        ],
                        "secrets": backup_secrets,
                        "logConfiguration": _logs(logs.name, args.region, "backup"),
                    }
                ]
            ),
            opts=child,
        )
        self.register_outputs({"cluster": self.cluster.name, "loadBalancer": self.load_balancer.dns_name})

    def _load_balancer(
        self, name: str, args: ServicesArgs, child: pulumi.ResourceOptions
    ) -> tuple[aws.lb.LoadBalancer, aws.lb.TargetGroup, aws.lb.TargetGroup]:
        network = args.network
        balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            security_groups=[network.load_balancer_group.id],
            subnets=[s.id for s in network.public_subnets],
            drop_invalid_header_fields=True,
            opts=child,
        )
        target_group, drill_group = (
            aws.lb.TargetGroup(
                f"{name}-{kind}",
                port=args.container_port,
                protocol="HTTP",
                target_type="ip",
                vpc_id=network.vpc.id,
                deregistration_delay=30 if kind == "web" else 5,
                health_check={
                    "path": args.health_check_path,
                    "matcher": "200-399",
                    "interval": 15 if kind == "web" else 10,
                    "healthy_threshold": 2,
                },
                opts=child,
            )
            for kind in ("web", "drill")
        )
        certificate = aws.acm.Certificate(
            f"{name}-certificate",
            domain_name=args.domains[0],
            subject_alternative_names=args.domains[1:],
            validation_method="DNS",
            opts=child,
        )
        records = [
            aws.route53.Record(
                f"{name}-certificate-{i}",
                zone_id=args.hosted_zone_id,
                name=_validation(certificate, i, "resource_record_name"),
                type=_validation(certificate, i, "resource_record_type"),
                records=[_validation(certificate, i, "resource_record_value")],
                ttl=60,
                allow_overwrite=True,
                opts=child,
            )
            for i in range(len(args.domains))
        ]
        validated = aws.acm.CertificateValidation(
            f"{name}-certificate-validated",
            certificate_arn=certificate.arn,
            validation_record_fqdns=[r.fqdn for r in records],
            opts=child,
        )
        https = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=balancer.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
            certificate_arn=validated.certificate_arn,
            default_actions=[{"type": "forward", "target_group_arn": target_group.arn}],
            opts=child,
        )
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=balancer.arn,
            port=80,
            protocol="HTTP",
            default_actions=[
                {
                    "type": "redirect",
                    "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"},
                }
            ],
            opts=child,
        )
        # The drill's task is health-checked by this load balancer like the service's, but only requests
        # carrying the drill header with the drill's own random value reach it (scripts/drill.py sets it,
        # and a value nobody holds when it ends); the drill target group is empty between drills.
        closed = random.RandomPassword(f"{name}-drill-closed", length=32, special=False, opts=child)
        self.drill_rule = aws.lb.ListenerRule(
            f"{name}-drill",
            listener_arn=https.arn,
            priority=1,
            # Secret as a whole: state and previews never show a value that opens the drill's route.
            conditions=pulumi.Output.secret(
                [
                    {
                        "http_header": {
                            "http_header_name": DRILL_HEADER,
                            "values": [pulumi.Output.concat(DRILL_CLOSED, closed.result)],
                        }
                    }
                ]
            ),
            actions=[{"type": "forward", "target_group_arn": drill_group.arn}],
            # The drills own the value: `pulumi up` must not put back one a drill replaced.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["conditions"]),
        )
        return balancer, target_group, drill_group

    def _task_definition(
        self,
        name: str,
        args: ServicesArgs,
        process_type: str,
        spec: ProcessSpec,
        log_group: pulumi.Input[str],
        settings_arn: pulumi.Input[str],
    ) -> aws.ecs.TaskDefinition:
        # Every config var is injected from the one settings secret (`arn:...:KEY::` picks a key), and
        # DATABASE_URL from the database's own secret: values never appear in the task definition.
        container: dict[str, Any] = {
            "name": process_type,
            "image": args.image,
            "essential": True,
            "entryPoint": spec.command,
            "environment": [{"name": "PORT", "value": str(args.container_port)}, {"name": "DYNO", "value": f"{process_type}.1"}],
            "secrets": pulumi.Output.all(settings_arn, args.app_database_url_secret_arn).apply(
                lambda v: [{"name": key, "valueFrom": f"{v[0]}:{key}::"} for key in args.setting_names]
                + ([{"name": "DATABASE_URL", "valueFrom": v[1]}] if v[1] else [])
            ),
            "logConfiguration": _logs(log_group, args.region, process_type),
        }  # fmt: skip
        if process_type == WEB:
            container["portMappings"] = [{"containerPort": args.container_port, "protocol": "tcp"}]
        return aws.ecs.TaskDefinition(
            f"{name}-{process_type}-task",
            family=f"{args.app}-{process_type}",
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(spec.size.cpu),
            memory=str(spec.size.memory_mib),
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.app_role.arn,
            container_definitions=pulumi.Output.json_dumps([container]),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _service(
        self, name: str, args: ServicesArgs, process_type: str, spec: ProcessSpec
    ) -> aws.ecs.Service:
        web = process_type == WEB
        return aws.ecs.Service(
            f"{name}-{process_type}",
            name=f"{args.app}-{process_type}",
            cluster=self.cluster.arn,
            task_definition=self.task_definitions[process_type].arn,
            desired_count=desired_count(args.mode, spec.quantity),
            launch_type="FARGATE",
            network_configuration={
                "subnets": [s.id for s in args.network.private_subnets],
                "security_groups": [args.network.service_group.id],
                "assign_public_ip": False,
            },
            load_balancers=(
                [
                    {
                        "target_group_arn": self.target_group.arn,
                        "container_name": WEB,
                        "container_port": args.container_port,
                    }
                ]
                if web
                else []
            ),
            health_check_grace_period_seconds=60 if web else None,
            deployment_circuit_breaker={"enable": True, "rollback": True},
            opts=pulumi.ResourceOptions(parent=self),
        )


def _logs(group: pulumi.Input[str], region: str, prefix: str) -> dict[str, Any]:
    return {
        "logDriver": "awslogs",
        "options": {"awslogs-group": group, "awslogs-region": region, "awslogs-stream-prefix": prefix},
    }


def _validation(certificate: aws.acm.Certificate, index: int, field: str) -> pulumi.Output[str]:
    """One field of the certificate's DNS validation record for its `index`-th domain."""
    return certificate.domain_validation_options.apply(lambda options: str(getattr(options[index], field)))
