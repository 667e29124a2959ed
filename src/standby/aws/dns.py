"""`DnsRecords`: the app's domains in Route 53, pointing at Heroku until a cutover points them at AWS.

Two ways to switch (README, "The disaster flow"): `record` keeps one CNAME per domain that a cutover replaces in one
change batch; `failover` keeps PRIMARY (Heroku) and SECONDARY (the load balancer) records whose health
check follows a CloudWatch alarm the runbooks drive, so the switch needs no Route 53 control plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

from standby.errors import ConfigError
from standby.names import FAILOVER_METRIC, METRICS_NAMESPACE, failover_alarm
from standby.vocabulary import DnsMode, Mode

TTL: Final = 60  # seconds: how long resolvers may keep pointing at a dead Heroku after the switch


@dataclass(frozen=True)
class Domain:
    hostname: str
    heroku_target: str


def check_domains(hostnames: list[str], zone: str) -> None:
    """Refuse apex domains and domains outside the hosted zone, with what to do instead."""
    problems = []
    for hostname in hostnames:
        if hostname == zone:
            problems.append(
                f"{hostname} is the zone apex: Route 53 cannot alias an apex to Heroku's DNS target, so the "
                f"standby cannot take it over. Serve the app on a subdomain (www.{zone}) and redirect the apex."
            )
        elif not hostname.endswith(f".{zone}"):
            problems.append(f"{hostname} is not in the hosted zone {zone} (standby:hostedZone).")
    if problems:
        raise ConfigError(problems, "the primary's domains")


@dataclass(frozen=True)
class DnsArgs:
    app: str
    zone_id: pulumi.Input[str]
    domains: list[Domain]
    dns_mode: DnsMode
    mode: Mode
    load_balancer_dns: pulumi.Input[str]
    load_balancer_zone_id: pulumi.Input[str]
    region: str


class DnsRecords(pulumi.ComponentResource):
    def __init__(self, name: str, args: DnsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("standby:aws:DnsRecords", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        alias: aws.route53.RecordAliasArgsDict = {
            "name": args.load_balancer_dns,
            "zone_id": args.load_balancer_zone_id,
            "evaluate_target_health": True,
        }
        self.failover_alarm: aws.cloudwatch.MetricAlarm | None = None
        if args.dns_mode is DnsMode.RECORD:
            for domain in args.domains:
                # After a cutover the live mode is `active`: keep pointing at AWS, or `pulumi up` would undo it.
                if args.mode is Mode.ACTIVE:
                    aws.route53.Record(
                        f"{name}-{domain.hostname}", zone_id=args.zone_id, name=domain.hostname, type="A",
                        aliases=[alias], allow_overwrite=True, opts=child,
                    )  # fmt: skip
                else:
                    aws.route53.Record(
                        f"{name}-{domain.hostname}", zone_id=args.zone_id, name=domain.hostname, type="CNAME",
                        ttl=TTL, records=[domain.heroku_target], allow_overwrite=True, opts=child,
                    )  # fmt: skip
            self.register_outputs({})
            return

        # "ignore": without new data the alarm keeps its state, so one datapoint from a runbook flips it
        # for good (until the failback publishes 1).
        self.failover_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-primary-in-service",
            name=failover_alarm(args.app),
            namespace=METRICS_NAMESPACE,
            metric_name=FAILOVER_METRIC,
            dimensions={"App": args.app},
            statistic="Minimum",
            period=60,
            evaluation_periods=1,
            comparison_operator="LessThanThreshold",
            threshold=1,
            treat_missing_data="ignore",
            alarm_description="drives Route 53 failover: in ALARM, traffic goes to the AWS standby",
            opts=child,
        )
        health = aws.route53.HealthCheck(
            f"{name}-primary-health",
            type="CLOUDWATCH_METRIC",
            cloudwatch_alarm_name=self.failover_alarm.name,
            cloudwatch_alarm_region=args.region,
            insufficient_data_health_status="Healthy",
            opts=child,
        )
        for domain in args.domains:
            aws.route53.Record(
                f"{name}-{domain.hostname}-primary", zone_id=args.zone_id, name=domain.hostname, type="CNAME",
                ttl=TTL, records=[domain.heroku_target], set_identifier="heroku",
                failover_routing_policies=[{"type": "PRIMARY"}], health_check_id=health.id, opts=child,
            )  # fmt: skip
            # Failover partners must share a record type: the secondary is a CNAME to the load balancer too.
            aws.route53.Record(
                f"{name}-{domain.hostname}-secondary", zone_id=args.zone_id, name=domain.hostname, type="CNAME",
                ttl=TTL, records=[args.load_balancer_dns], set_identifier="aws",
                failover_routing_policies=[{"type": "SECONDARY"}], opts=child,
            )  # fmt: skip
        self.register_outputs({})
