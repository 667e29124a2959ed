"""`Monitoring`: who is told, and when: stale backups, an unhealthy primary, an unhealthy standby, a
critical readiness check, and a status task that stopped running."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

from standby.metrics import BACKUP_COMPLETED, BACKUP_SKIPPED
from standby.names import BACKUP_METRICS_NAMESPACE, READINESS_NAMESPACE
from standby.readiness.check import CHECKS, Level
from standby.readiness.publish import CHECK_LEVEL, SCORE

SILENT_HOURS: Final = 25  # the status task runs daily at least: a day and an hour without a score


@dataclass(frozen=True)
class MonitoringArgs:
    app: str
    emails: list[str]
    rpo_minutes: int
    primary_hostname: str | None  # checked over HTTPS at the health path
    health_check_path: str
    target_group_suffix: pulumi.Input[str] | None  # None: no standby tasks run (pilot-light)
    load_balancer_suffix: pulumi.Input[str] | None
    global_provider: aws.Provider  # us-east-1: where Route 53 health check metrics live
    readiness: bool = False  # the status task publishes its checks in this region (ReadinessWatch)


class Monitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("standby:aws:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.topic = aws.sns.Topic(f"{name}-alerts", name=f"{args.app}-standby-alerts", opts=child)
        for i, email in enumerate(args.emails):
            aws.sns.TopicSubscription(
                f"{name}-email-{i}", topic=self.topic.arn, protocol="email", endpoint=email, opts=child
            )
        # No datapoint in an RPO window means no backup completed: "breaching", so silence alarms too.
        self.backup_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-backup-stale",
            name=f"{args.app}-newest-backup-older-than-rpo",
            namespace=BACKUP_METRICS_NAMESPACE,
            metric_name=BACKUP_COMPLETED,
            dimensions={"App": args.app},
            statistic="Sum",
            period=args.rpo_minutes * 60,
            evaluation_periods=1,
            comparison_operator="LessThanThreshold",
            threshold=1,
            treat_missing_data="breaching",
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            alarm_description=f"no backup of {args.app} completed within the RPO ({args.rpo_minutes} min)",
            opts=child,
        )
        # A scheduled backup skipped because the previous one still ran: backups outgrew the interval.
        self.backup_overlap_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-backup-overlap",
            name=f"{args.app}-backup-longer-than-interval",
            namespace=BACKUP_METRICS_NAMESPACE,
            metric_name=BACKUP_SKIPPED,
            dimensions={"App": args.app},
            statistic="Sum",
            period=3600,
            evaluation_periods=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
            treat_missing_data="notBreaching",
            alarm_actions=[self.topic.arn],
            alarm_description=f"a scheduled backup of {args.app} was skipped: the previous one still ran, so "
            "backups take longer than their interval and the RPO target is out of reach (docs/backups.md)",
            opts=child,
        )
        if args.target_group_suffix is not None and args.load_balancer_suffix is not None:
            aws.cloudwatch.MetricAlarm(
                f"{name}-standby-unhealthy",
                name=f"{args.app}-standby-unhealthy",
                namespace="AWS/ApplicationELB",
                metric_name="HealthyHostCount",
                dimensions={
                    "TargetGroup": args.target_group_suffix,
                    "LoadBalancer": args.load_balancer_suffix,
                },
                statistic="Minimum",
                period=60,
                evaluation_periods=3,
                comparison_operator="LessThanThreshold",
                threshold=1,
                treat_missing_data="breaching",
                alarm_actions=[self.topic.arn],
                alarm_description="the standby's web service has no healthy task",
                opts=child,
            )
        if args.primary_hostname:
            self._primary_health(name, args)
        if args.readiness:
            self._readiness(name, args.app)
        self.register_outputs({"topic": self.topic.arn})

    def _readiness(self, name: str, app: str) -> None:
        # Each check alarms on its own, naming what broke; a check not published is not a finding here
        # (the silent alarm below is).
        child = pulumi.ResourceOptions(parent=self)
        for check in CHECKS:
            aws.cloudwatch.MetricAlarm(
                f"{name}-readiness-{check}",
                name=f"{app}-readiness-{check}",
                namespace=READINESS_NAMESPACE,
                metric_name=CHECK_LEVEL,
                dimensions={"App": app, "Check": check},
                statistic="Maximum",
                period=3600,
                evaluation_periods=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=int(Level.CRITICAL),
                treat_missing_data="notBreaching",
                alarm_actions=[self.topic.arn],
                ok_actions=[self.topic.arn],
                alarm_description=f"readiness check {check} of {app} is critical: run "
                f"`python scripts/status.py --app {app}` for the finding and its fix",
                opts=child,
            )
        # Every status run publishes the score: none for a day and more means nothing is checking.
        aws.cloudwatch.MetricAlarm(
            f"{name}-readiness-silent",
            name=f"{app}-readiness-silent",
            namespace=READINESS_NAMESPACE,
            metric_name=SCORE,
            dimensions={"App": app},
            statistic="SampleCount",
            period=3600,
            evaluation_periods=SILENT_HOURS,
            comparison_operator="LessThanThreshold",
            threshold=1,
            treat_missing_data="breaching",
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            alarm_description=f"no readiness status of {app} for {SILENT_HOURS} hours: the status task stopped running",
            opts=child,
        )

    def _primary_health(self, name: str, args: MonitoringArgs) -> None:
        # Route 53 publishes health check metrics in us-east-1 only: the alarm and its topic live there.
        global_opts = pulumi.ResourceOptions(parent=self, provider=args.global_provider)
        check = aws.route53.HealthCheck(
            f"{name}-primary-check",
            type="HTTPS",
            fqdn=args.primary_hostname,
            port=443,
            resource_path=args.health_check_path,
            failure_threshold=3,
            request_interval=30,
            opts=global_opts,
        )
        topic = aws.sns.Topic(f"{name}-primary-alerts", name=f"{args.app}-primary-alerts", opts=global_opts)
        for i, email in enumerate(args.emails):
            aws.sns.TopicSubscription(
                f"{name}-primary-email-{i}",
                topic=topic.arn,
                protocol="email",
                endpoint=email,
                opts=global_opts,
            )
        aws.cloudwatch.MetricAlarm(
            f"{name}-primary-unhealthy",
            name=f"{args.app}-primary-unhealthy",
            namespace="AWS/Route53",
            metric_name="HealthCheckStatus",
            dimensions={"HealthCheckId": check.id},
            statistic="Minimum",
            period=60,
            evaluation_periods=2,
            comparison_operator="LessThanThreshold",
            threshold=1,
            alarm_actions=[topic.arn],
            alarm_description=f"{args.primary_hostname}{args.health_check_path} is failing: consider a cutover",
            opts=global_opts,
        )
