"""`StandbyRegion`: one region of the standby, built from the same parts in the standby and the second region.

The standby region runs everything its mode asks for. The second region keeps the replica of the backups,
a network, the services at zero and the runbook support; its database exists only when the config asks
for it (`secondRegionDatabase`) or a cutover made the region active.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from standby import sizing
from standby.aws import duties
from standby.aws.backup_schedule import BackupSchedule, ScheduleArgs
from standby.aws.backup_vault import BackupVault, VaultArgs
from standby.aws.database import DatabaseArgs, StandbyDatabase
from standby.aws.dns import Domain
from standby.aws.duties import OperatorRegion
from standby.aws.network import NetworkArgs, StandbyNetwork
from standby.aws.readiness_watch import ReadinessWatch, ReadinessWatchArgs
from standby.aws.restore_ahead import RestoreAhead, RestoreAheadArgs
from standby.aws.runbook_support import RunbookSupport, RunbookSupportArgs
from standby.aws.services import ProcessSpec, ServicesArgs, StandbyServices
from standby.config.models import StandbyConfig
from standby.names import failover_alarm, mirrored_setting, runbook_topic
from standby.primary_snapshot import PrimarySnapshot
from standby.standby_manifest import StandbyManifest
from standby.vocabulary import DnsMode, Mode


@dataclass(frozen=True)
class RegionArgs:
    role: str  # "standby" or "second"
    region: str
    mode: Mode  # the live mode of this region
    config: StandbyConfig
    primary: PrimarySnapshot
    app_settings: pulumi.Output[str]
    hosted_zone_id: pulumi.Input[str]
    domains: list[Domain]
    with_database: bool
    with_schedule: bool
    operator_role_arn: pulumi.Input[str] = ""  # the runbooks' role: the only one that signs journals
    # The standby region's backup and runbook MAC keys, which the second region replicates.
    mac_primary_key_arns: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None


def process_specs(config: StandbyConfig, primary: PrimarySnapshot) -> dict[str, ProcessSpec]:
    """Each primary process type with its Fargate size (mapped, or the explicit override) and command."""
    specs = {}
    for process_type, process in primary.formation.items():
        override = config.service_sizes.get(process_type)
        size = (
            sizing.FargateSize(override.cpu, override.memory)
            if override
            else sizing.fargate_size_for(str(process["size"]), process_type)
        )
        # Images built by Cloud Native Buildpacks (as Heroku builds them) start a Procfile type this way.
        command = config.process_commands.get(process_type, [f"/cnb/process/{process_type}"])
        specs[process_type] = ProcessSpec(int(process["quantity"]), size, command)
    return specs


class StandbyRegion(pulumi.ComponentResource):
    def __init__(self, name: str, args: RegionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("standby:aws:StandbyRegion", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        config, app = args.config, args.primary.app
        zones = aws.get_availability_zones(state="available", opts=pulumi.InvokeOptions(parent=self))
        account = aws.get_caller_identity(opts=pulumi.InvokeOptions(parent=self)).account_id
        self.vault = BackupVault(
            f"{name}-vault", VaultArgs(app, args.region, config.backup_retention_days), opts=child
        )
        # Sign backup manifests and runbook journals (standby.integrity): writing the bucket is not enough
        # to forge either. Multi-Region keys: the second region verifies with its replicas, also when the
        # standby region is down.
        primaries = args.mac_primary_key_arns or (None, None)
        self.backup_mac = _mac_key(
            f"{name}-backup-mac", f"{app} standby: MACs of backup manifests", primaries[0], self
        )
        self.runbook_mac = _mac_key(
            f"{name}-runbook-mac", f"{app} standby: MACs of runbook journals", primaries[1], self
        )
        self.network = StandbyNetwork(
            f"{name}-network", NetworkArgs(list(zones.names), config.container_port), opts=child
        )
        self.database: StandbyDatabase | None = None
        if args.with_database:
            self.database = StandbyDatabase(
                f"{name}-database",
                DatabaseArgs(
                    app=app,
                    plan=sizing.postgres_plan(args.primary.postgres_plan),
                    major_version=args.primary.postgres_version,
                    mode=args.mode,
                    subnet_ids=[s.id for s in self.network.private_subnets],
                    security_group_id=self.network.database_group.id,
                    protect=args.role == "standby",
                ),
                opts=child,
            )
        heroku_key = config.heroku_api_key.get_secret_value() if config.heroku_api_key else None
        self.services = StandbyServices(
            f"{name}-services",
            ServicesArgs(
                app=app,
                region=args.region,
                account=account,
                mode=args.mode,
                image=config.image,
                backup_image=config.backup_image,
                processes=process_specs(config, args.primary),
                container_port=config.container_port,
                health_check_path=config.health_check_path,
                app_settings=args.app_settings,
                setting_names=setting_names(config, args.primary),
                database_url_secret_arn=self.database.url_secret.arn if self.database else None,
                app_database_url_secret_arn=self.database.app_url_secret.arn if self.database else None,
                backup_bucket_arn=self.vault.bucket.arn,
                backup_key_arn=self.vault.key.arn,
                backup_mac_key_arn=self.backup_mac.arn,
                network=self.network,
                hosted_zone_id=args.hosted_zone_id,
                domains=[d.hostname for d in args.domains],
                heroku_api_key=pulumi.Output.secret(heroku_key) if heroku_key else None,
                backup_streams=config.backup_streams,
            ),
            opts=child,
        )
        if args.with_schedule:
            BackupSchedule(
                f"{name}-backups",
                ScheduleArgs(
                    app=app,
                    interval_minutes=config.backup_interval_minutes,
                    cluster_arn=self.services.cluster.arn,
                    task_definition_arn=self.services.backup_task.arn,
                    task_role_arns=[self.services.execution_role.arn, self.services.backup_role.arn],
                    subnet_ids=[s.id for s in self.network.private_subnets],
                    security_group_id=self.network.backup_group.id,
                ),
                opts=child,
            )
        self.topic = aws.sns.Topic(f"{name}-runbook-events", name=runbook_topic(app), opts=child)
        # The people alerted also hear when a runbook starts, finishes or fails: a cutover nobody ordered
        # is an alert too.
        for i, email in enumerate(config.alert_emails):
            aws.sns.TopicSubscription(
                f"{name}-runbook-email-{i}",
                topic=self.topic.arn,
                protocol="email",
                endpoint=email,
                opts=child,
            )
        self.manifest = self._manifest(args)
        self.support = RunbookSupport(
            f"{name}-runbooks",
            RunbookSupportArgs(app=app, initial_mode=args.mode.value, manifest=self.manifest),
            opts=child,
        )
        # What the operator's runbooks may do in this region, read off the manifest they run from.
        self.operator_policy = aws.iam.Policy(
            f"{name}-operator",
            name=f"{app}-standby-operator-{args.region}",
            description=f"the runbooks of {app} in {args.region}: scripts/cutover.py, failback, drill, restore",
            policy=pulumi.Output.all(
                self.manifest,
                self.vault.key.arn,
                self.services.execution_role.arn,
                self.services.app_role.arn,
            ).apply(
                lambda v: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": duties.operator(
                            [OperatorRegion(StandbyManifest.from_json(v[0]), v[1], [v[2], v[3]])], account
                        ),
                    }
                )
            ),
            opts=child,
        )
        self.restore_ahead: RestoreAhead | None = None
        if args.with_schedule and args.mode is Mode.WARM and self.database is not None:
            # Warm keeps itself current; a live (active) standby is never restored over, so no rule then.
            self.restore_ahead = RestoreAhead(
                f"{name}-restore-ahead",
                RestoreAheadArgs(
                    app=app,
                    region=args.region,
                    account=account,
                    image=config.backup_image,
                    cluster_arn=self.services.cluster.arn,
                    backup_task_family=f"{app}-backup",
                    execution_role_arn=self.services.execution_role.arn,
                    log_group=self.services.log_group,
                    backup_bucket_arn=self.vault.bucket.arn,
                    backup_key_arn=self.vault.key.arn,
                    database_url_secret_arn=self.database.url_secret.arn,
                    app_database_url_secret_arn=self.database.app_url_secret.arn,
                    lock_table_arn=self.support.lock_table.arn,
                    backup_mac_key_arn=self.backup_mac.arn,
                    subnet_ids=[s.id for s in self.network.private_subnets],
                    security_group_id=self.network.backup_group.id,
                ),
                opts=child,
            )
        # Where the backups run, the readiness checks run after each one (and daily), and publish.
        self.readiness: ReadinessWatch | None = None
        if args.with_schedule:
            self.readiness = ReadinessWatch(
                f"{name}-readiness",
                ReadinessWatchArgs(
                    app=app,
                    region=args.region,
                    account=account,
                    image=config.backup_image,
                    cluster_arn=self.services.cluster.arn,
                    backup_task_family=f"{app}-backup",
                    execution_role_arn=self.services.execution_role.arn,
                    log_group=self.services.log_group,
                    heroku_key_secret_arn=self.services.heroku_key.arn if self.services.heroku_key else None,
                    subnet_ids=[s.id for s in self.network.private_subnets],
                    # HTTPS to Heroku and AWS, PostgreSQL to the standby (which backup it holds).
                    security_group_id=self.network.backup_group.id,
                    manifest=self.manifest,
                    bucket_key_arn=self.vault.key.arn,
                    rpo_seconds=config.rpo_minutes * 60,
                    rto_seconds=config.rto_minutes * 60,
                    drill_interval_days=config.drill_interval_days,
                ),
                opts=child,
            )
        # Who may sign and verify with each MAC key, in the key's own policy: IAM policies of the account
        # cannot widen it (standby.aws.duties.mac_key_policy).
        readers = [self.restore_ahead.role.arn] if self.restore_ahead else []
        if self.readiness:
            readers.append(self.readiness.role.arn)
        replica_region = config.regions.second if args.mac_primary_key_arns is None else None
        for purpose, key, signers, verifiers in (
            ("backup", self.backup_mac, [self.services.backup_role.arn, args.operator_role_arn], readers),
            ("runbook", self.runbook_mac, [args.operator_role_arn], []),
        ):
            aws.kms.KeyPolicy(
                f"{name}-{purpose}-mac-policy",
                key_id=key.key_id,
                policy=pulumi.Output.all(account, signers, verifiers).apply(
                    lambda v: json.dumps(duties.mac_key_policy(v[0], v[1], v[2], replica_region))
                ),
                opts=child,
            )
        self.register_outputs(
            {"bucket": self.vault.bucket.id, "loadBalancer": self.services.load_balancer.dns_name}
        )

    def _manifest(self, args: RegionArgs) -> pulumi.Output[str]:
        """The standby manifest of this region, as JSON: built from its dataclass, so it parses back."""
        config, app = args.config, args.primary.app
        services = self.services
        return pulumi.Output.all(
            bucket=self.vault.bucket.id,
            database_secret=self.database.url_secret.arn if self.database else None,
            app_database_secret=self.database.app_url_secret.arn if self.database else None,
            database_instance=self.database.instance.identifier if self.database else None,
            cluster=services.cluster.name,
            backup_task=services.backup_task.arn,
            subnets=[s.id for s in self.network.private_subnets],
            task_group=self.network.service_group.id,
            lb_dns=services.load_balancer.dns_name,
            lb_zone=services.load_balancer.zone_id,
            target_group=services.target_group.arn,
            drill_target_group=services.drill_target_group.arn,
            drill_rule=services.drill_rule.arn,
            settings_secret=services.settings_secret.arn,
            primary_database_secret=services.primary_database_secret.arn,
            backup_mac_key=self.backup_mac.arn,
            runbook_mac_key=self.runbook_mac.arn,
            drill_secret=services.drill_secret.arn if services.drill_secret else None,
            topic=self.topic.arn,
            zone=args.hosted_zone_id,
        ).apply(
            lambda v: StandbyManifest(
                app=app,
                region=args.region,
                second_region=config.regions.second if args.role == "standby" else config.regions.standby,
                backup_bucket=v["bucket"],
                database_secret=v["database_secret"],
                app_database_secret=v["app_database_secret"],
                database_instance=v["database_instance"],
                sanity_sql=tuple(config.sanity_sql),
                base_mode=config.mode,
                topic_arn=v["topic"],
                cluster=v["cluster"],
                services={t: f"{app}-{t}" for t in args.primary.formation},
                backup_task_definition=v["backup_task"],
                subnets=tuple(v["subnets"]),
                task_security_group=v["task_group"],
                load_balancer_dns=v["lb_dns"],
                load_balancer_zone_id=v["lb_zone"],
                target_group_arn=v["target_group"],
                drill_target_group_arn=v["drill_target_group"],
                drill_rule_arn=v["drill_rule"],
                settings_secret=v["settings_secret"],
                primary_database_secret=v["primary_database_secret"],
                backup_mac_key=v["backup_mac_key"],
                runbook_mac_key=v["runbook_mac_key"],
                ai=args.primary.ai.model_dump(mode="json", by_alias=True) if args.primary.ai else None,
                drill_database_secret=v["drill_secret"],
                hosted_zone_id=v["zone"],
                dns_mode=config.dns,
                records=tuple(
                    {"hostname": d.hostname, "heroku_target": d.heroku_target} for d in args.domains
                ),
                failover_alarm=failover_alarm(app) if config.dns is DnsMode.FAILOVER else None,
                health_check_path=config.health_check_path,
                rpo_seconds=config.rpo_minutes * 60,
                rto_seconds=config.rto_minutes * 60,
                # What it was built from, for scripts/status.py to compare with Heroku now.
                primary_formation={
                    t: {"quantity": int(p["quantity"]), "size": str(p["size"])}
                    for t, p in args.primary.formation.items()
                },
                setting_names=tuple(setting_names(config, args.primary)),
                override_names=tuple(sorted({*config.config_overrides, *config.secret_config_overrides})),
                image=config.image,
                postgres_version=args.primary.postgres_version,
                backup_interval_seconds=config.backup_interval_minutes * 60,
                drill_interval_days=config.drill_interval_days,
            ).to_json()
        )


def _mac_key(
    name: str, description: str, primary_arn: pulumi.Input[str] | None, parent: pulumi.Resource
) -> aws.kms.Key | aws.kms.ReplicaKey:
    """A multi-Region KMS HMAC key, or (given the primary's ARN) its replica in this region."""
    kept = pulumi.ResourceOptions(parent=parent, protect=True, retain_on_delete=True)
    if primary_arn is None:
        return aws.kms.Key(
            name,
            description=description,
            key_usage="GENERATE_VERIFY_MAC",
            customer_master_key_spec="HMAC_256",
            multi_region=True,
            deletion_window_in_days=30,
            opts=kept,
        )
    return aws.kms.ReplicaKey(
        name,
        description=f"{description} (replica)",
        primary_key_arn=primary_arn,
        deletion_window_in_days=30,
        opts=kept,
    )


def setting_names(config: StandbyConfig, primary: PrimarySnapshot) -> list[str]:
    """The names of the config vars the app gets on AWS: known without reading any secret."""
    names = {n for n in primary.config_var_names if mirrored_setting(n)}
    return sorted(names | set(config.config_overrides) | set(config.secret_config_overrides))


def app_settings(config: StandbyConfig, primary: PrimarySnapshot) -> pulumi.Output[str]:
    """The config vars the app gets on AWS, as one JSON secret: the primary's, minus what must differ,
    plus the overrides."""

    def merge(secret_vars: dict[str, str]) -> str:
        merged = {**primary.plain_config_vars, **secret_vars}
        merged = {k: v for k, v in merged.items() if mirrored_setting(k)}
        merged.update(config.config_overrides)
        merged.update({k: v.get_secret_value() for k, v in config.secret_config_overrides.items()})
        return json.dumps(merged, sort_keys=True)

    return pulumi.Output.secret(primary.secret_config_vars.apply(merge))
