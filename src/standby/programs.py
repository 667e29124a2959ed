"""The Pulumi program of each stack role. `infra/__main__.py` picks one by the stack's `standby:role`."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pulumi
import pulumi_aws as aws

from standby.aws.backup_vault import BackupReplication
from standby.aws.dns import DnsArgs, DnsRecords, Domain, check_domains
from standby.aws.monitoring import Monitoring, MonitoringArgs
from standby.aws.standby_region import RegionArgs, StandbyRegion, app_settings
from standby.config.models import PrimaryConfig, StackConfig, StandbyConfig
from standby.heroku_primary import HerokuPrimary
from standby.names import (
    StandbyOutput,
    ai_provider_parameter,
    heroku_fence_parameter,
    manifest_parameter,
    mode_parameter,
)
from standby.primary_snapshot import PrimarySnapshot, read_primary
from standby.vocabulary import AiProvider, Mode


def primary_program(config: PrimaryConfig) -> HerokuPrimary:
    """Declare the Heroku app and export everything the standby stack mirrors.

    It reads the live mode in the standby regions first: while a standby region serves the app, Heroku is
    declared fenced (every process type at zero), so a `pulumi up` after a cutover does not wake it."""
    live = {
        region: reason
        for region in config.standby_regions
        if (reason := fenced_reason(config.app.name, aws.Provider(f"aws-{region}", region=region)))
    }
    if live:
        where = "; ".join(f"{region}: {reason}" for region, reason in live.items())
        pulumi.log.warn(
            f"Heroku's formation stays at zero, so Heroku stays fenced ({where}). Fail back with "
            "`python scripts/failback.py` to bring it back, or finish the recovery on Heroku that fenced it."
        )
    elif not config.standby_regions:
        pulumi.log.warn(
            "standby:standbyRegions is not set: this stack cannot see a cutover, and a `pulumi up` after one would "
            "scale a fenced Heroku back up. Set it to the standby stack's two regions."
        )
    primary = HerokuPrimary("primary", config, fenced=bool(live))
    for name, value in primary.outputs().items():
        pulumi.export(str(name), value)
    return primary


def run(config: StackConfig) -> None:
    if isinstance(config, PrimaryConfig):
        primary_program(config)
    else:
        standby_program(config)


def live_parameters(app: str, provider: aws.Provider) -> dict[str, str]:
    """What the runbooks last set in SSM (the live mode, the AI provider): a `pulumi up` must not undo it."""
    found = aws.ssm.get_parameters_by_path(
        path=f"/standby/{app}", opts=pulumi.InvokeOptions(provider=provider)
    )
    return dict(zip(found.names or [], found.values or [], strict=False))


def fenced_reason(app: str, provider: aws.Provider) -> str | None:
    """Why Heroku must stay fenced, as a standby region records it: a cutover fenced it, the standby is live,
    or the live mode holds something unknown (then nobody knows where the writes go: stay fenced)."""
    found = live_parameters(app, provider)
    if heroku_fence_parameter(app) in found:
        return found[heroku_fence_parameter(app)]
    value = found.get(mode_parameter(app))
    if value == Mode.ACTIVE.value:
        return f"the standby serves {app} (its live mode is active)"
    if value is not None and value not in {m.value for m in Mode}:
        return f"its live mode holds {value!r}, not a mode"
    return None


def live_mode(app: str, provider: aws.Provider) -> Mode | None:
    value = live_parameters(app, provider).get(mode_parameter(app))
    return Mode(value) if value in {m.value for m in Mode} else None


def with_live_ai_provider(primary: PrimarySnapshot, provider: aws.Provider) -> PrimarySnapshot:
    """The primary's config vars with the AI settings of the provider the app uses now."""
    live = live_parameters(primary.app, provider).get(ai_provider_parameter(primary.app))
    if primary.ai is None or live not in {p.value for p in AiProvider}:
        return primary
    settings = {**primary.plain_config_vars, **primary.ai.settings(str(live))}
    return dataclasses.replace(primary, plain_config_vars=settings)


def standby_program(config: StandbyConfig) -> dict[str, StandbyRegion]:
    """Mirror the primary into the standby region and the second region, and point DNS where it belongs."""
    reference = pulumi.StackReference("primary", stack_name=config.primary_stack)
    primary = read_primary(reference, config.primary_stack)
    domains = [Domain(d["hostname"], d["dnsTarget"]) for d in primary.domains]
    check_domains([d.hostname for d in domains], config.hosted_zone)
    providers = {
        role: aws.Provider(f"aws-{role}", region=region)
        for role, region in (("standby", config.regions.standby), ("second", config.regions.second))
    }
    global_provider = aws.Provider("aws-global", region="us-east-1")
    zone = aws.route53.get_zone(
        name=config.hosted_zone, opts=pulumi.InvokeOptions(provider=providers["standby"])
    )
    modes = {
        "standby": live_mode(primary.app, providers["standby"]) or config.mode,
        "second": live_mode(primary.app, providers["second"]) or Mode.PILOT_LIGHT,
    }
    settings = app_settings(config, with_live_ai_provider(primary, providers["standby"]))
    serving = "second" if modes["second"] is Mode.ACTIVE else "standby"
    operator = operator_role(primary.app, config.operators, providers["standby"])
    regions: dict[str, StandbyRegion] = {}
    for role in ("standby", "second"):  # the standby region first: the second replicates its MAC key
        regions[role] = StandbyRegion(
            f"{role}-region",
            RegionArgs(
                role=role,
                region=config.regions.standby if role == "standby" else config.regions.second,
                mode=modes[role],
                config=config,
                primary=primary,
                app_settings=settings,
                hosted_zone_id=zone.zone_id,
                domains=domains,
                with_database=role == "standby"
                or config.second_region_database
                or modes[role] is Mode.ACTIVE,
                # The backups run where the app is live or will be: the standby region, unless a cutover
                # made the second region live (the chain goes on there).
                with_schedule=role == serving and config.heroku_api_key is not None,
                operator_role_arn=operator.arn,
                mac_primary_key_arns=(regions["standby"].backup_mac.arn, regions["standby"].runbook_mac.arn)
                if role == "second"
                else None,
            ),
            opts=pulumi.ResourceOptions(provider=providers[role]),
        )
    if config.heroku_api_key is None:
        pulumi.log.warn(
            "standby:herokuApiKey is not set: no scheduled backups will run. Set it with "
            "`pulumi config set --secret standby:herokuApiKey <key>`."
        )
    BackupReplication(
        "backup-replication",
        regions["standby"].vault,
        regions["second"].vault,
        opts=pulumi.ResourceOptions(provider=providers["standby"]),
    )
    # The status task lists the other region's replica, whose bucket exists only now.
    for role, region in regions.items():
        if region.readiness is not None:
            region.readiness.allow_reading(
                regions["second" if role == "standby" else "standby"].vault.bucket.id
            )
    balancer = regions[serving].services.load_balancer
    DnsRecords(
        "dns",
        DnsArgs(
            app=primary.app,
            zone_id=zone.zone_id,
            domains=domains,
            dns_mode=config.dns,
            mode=Mode.ACTIVE if Mode.ACTIVE in modes.values() else modes["standby"],
            load_balancer_dns=balancer.dns_name,
            load_balancer_zone_id=balancer.zone_id,
            region=config.regions.standby,
        ),
        opts=pulumi.ResourceOptions(provider=providers["standby"]),
    )
    standby = regions["standby"]
    services = standby.services
    Monitoring(
        "monitoring",
        MonitoringArgs(
            app=primary.app,
            emails=list(config.alert_emails),
            rpo_minutes=config.rpo_minutes,
            primary_hostname=domains[0].hostname if domains else None,
            health_check_path=config.health_check_path,
            target_group_suffix=services.target_group.arn_suffix
            if modes["standby"] is not Mode.PILOT_LIGHT
            else None,
            load_balancer_suffix=services.load_balancer.arn_suffix
            if modes["standby"] is not Mode.PILOT_LIGHT
            else None,
            global_provider=global_provider,
            # Alarms act on a topic of their own region: they watch the checks published here.
            readiness=standby.readiness is not None,
        ),
        opts=pulumi.ResourceOptions(provider=providers["standby"]),
    )
    attach_operator(operator, regions, providers["standby"])
    pulumi.export(str(StandbyOutput.OPERATOR_ROLE), operator.arn)
    pulumi.export(str(StandbyOutput.MODE), modes["standby"].value)
    pulumi.export(str(StandbyOutput.BACKUP_BUCKET), standby.vault.bucket.id)
    pulumi.export(str(StandbyOutput.REPLICA_BUCKET), regions["second"].vault.bucket.id)
    pulumi.export(str(StandbyOutput.LOAD_BALANCER), services.load_balancer.dns_name)
    pulumi.export(
        str(StandbyOutput.DATABASE_ENDPOINT), standby.database.instance.address if standby.database else None
    )
    pulumi.export(str(StandbyOutput.MANIFEST_PARAMETERS), [manifest_parameter(primary.app)])
    return regions


def operator_role(app: str, operators: list[str], provider: aws.Provider) -> aws.iam.Role:
    """The role the runbooks run as: the one that may move production (standby.aws.duties.operator).
    Its policies are attached once the regions exist (`attach_operator`); the MAC keys name it first."""
    account = aws.get_caller_identity(opts=pulumi.InvokeOptions(provider=provider)).account_id
    trusted: dict[str, Any] = {"Effect": "Allow", "Principal": {"AWS": operators or [f"arn:aws:iam::{account}:root"]},
                               "Action": "sts:AssumeRole"}  # fmt: skip
    if not operators:
        trusted["Condition"] = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
    return aws.iam.Role(
        "operator",
        name=f"{app}-standby-operator",
        description=f"runs the standby runbooks of {app}",
        assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [trusted]}),
        max_session_duration=4 * 3600,  # a cutover, a failback and their waits fit in one session
        opts=pulumi.ResourceOptions(provider=provider),
    )


def attach_operator(role: aws.iam.Role, regions: dict[str, StandbyRegion], provider: aws.Provider) -> None:
    for name, region in regions.items():
        aws.iam.RolePolicyAttachment(
            f"operator-{name}",
            role=role.name,
            policy_arn=region.operator_policy.arn,
            opts=pulumi.ResourceOptions(provider=provider),
        )
