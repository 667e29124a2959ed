"""The standby side of every runbook: the AWS standby as its manifest names it.

The live mode, the services' desired and running counts, scaling, the web service's health as its load
balancer sees it, the app's names (through `DnsSwitch`), the database URL and the app's settings. This is
production code; the local rehearsal and the tests use `LocalStandby` (`local/standby_side.py`), which
replaces only what moto cannot do (see there).
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Final

from botocore.exceptions import ClientError

from standby import aws_clients
from standby.aws_errors import AWS_ERRORS, aws_failure, error_code
from standby.dns_switch import DnsSwitch
from standby.errors import ConfigError, InfrastructureError, StandbyError
from standby.live_side import region_mode
from standby.loader_role import Owner
from standby.names import heroku_fence_parameter
from standby.pg_url import Database, parse_database_url
from standby.runbook.engine import RunContext
from standby.standby_manifest import StandbyManifest, read_database_url
from standby.vocabulary import Mode

FREE_STORAGE_WINDOW: Final = timedelta(minutes=15)  # RDS publishes FreeStorageSpace every minute


class AwsStandby:
    name = "the AWS standby"

    def __init__(self, manifest: StandbyManifest) -> None:
        self.manifest = manifest
        self.dns = DnsSwitch(manifest, self.client)

    @cache  # noqa: B019 - one client per service for the life of the run; the side lives as long
    def client(self, service: str) -> Any:
        return aws_clients.client(service, self.manifest.region)

    # --- the live mode ---------------------------------------------------------------------------------

    def mode(self) -> Mode:
        """The live mode, which every runbook and both Pulumi programs read (a cutover makes it active)."""
        mode = region_mode(self.manifest.app, self.manifest.region, self.client("ssm"))
        if mode is None:
            raise ConfigError(
                [f"there is no live mode {self.manifest.mode_parameter} in {self.manifest.region}: run "
                 "`pulumi up -s standby`, which creates it."]
            )  # fmt: skip
        return mode

    def set_mode(self, mode: Mode) -> None:
        self.client("ssm").put_parameter(
            Name=self.manifest.mode_parameter, Value=mode.value, Type="String", Overwrite=True
        )

    def record_primary_fenced(self, note: str) -> None:
        """Before Heroku is fenced: from here `pulumi up -s primary` keeps it at zero (names.heroku_fence_parameter)."""
        self.client("ssm").put_parameter(
            Name=heroku_fence_parameter(self.manifest.app), Value=note, Type="String", Overwrite=True
        )

    def primary_fenced_note(self) -> str | None:
        """What the runbook that fenced Heroku recorded, or None while Heroku is not recorded fenced."""
        ssm = self.client("ssm")
        try:
            return str(
                ssm.get_parameter(Name=heroku_fence_parameter(self.manifest.app))["Parameter"]["Value"]
            )
        except ssm.exceptions.ParameterNotFound:
            return None

    def clear_primary_fenced(self) -> None:
        with contextlib.suppress(self.client("ssm").exceptions.ParameterNotFound):
            self.client("ssm").delete_parameter(Name=heroku_fence_parameter(self.manifest.app))

    # --- the services ----------------------------------------------------------------------------------

    def _services(self) -> dict[str, dict[str, Any]]:
        """Each process type's ECS service; a service the manifest names but ECS lacks is an error."""
        manifest = self.manifest
        if not manifest.services:
            return {}
        found = self.client("ecs").describe_services(
            cluster=manifest.cluster, services=list(manifest.services.values())
        )["services"]
        by_name = {s["serviceName"]: s for s in found if s.get("status") != "INACTIVE"}
        missing = [name for name in manifest.services.values() if name not in by_name]
        if missing:
            raise StandbyError(
                f"the standby's ECS cluster {manifest.cluster} has no service {', '.join(missing)}, which the "
                "manifest names. Run `pulumi up -s standby`."
            )
        return {kind: by_name[name] for kind, name in manifest.services.items()}

    def desired_counts(self) -> dict[str, int]:
        return {kind: int(s["desiredCount"]) for kind, s in self._services().items()}

    def running_counts(self, serving_only: bool = False) -> dict[str, int]:
        """Tasks not yet stopped, per process type: what a fence must see at zero, not what is wanted.
        With `serving_only`, only tasks that are RUNNING: what readiness counts (a task that keeps
        crashing is pending again and again, never serving).

        A service's runningCount leaves out tasks that are draining from the load balancer or stopping,
        which can still write: every task of the service whose last status is not STOPPED counts.
        """
        ecs, cluster = self.client("ecs"), self.manifest.cluster
        self._services()  # a service the manifest names but ECS lacks is an error, as elsewhere
        counts = {}
        for kind, service in self.manifest.services.items():
            arns = [
                arn
                for status in ("RUNNING", "STOPPED")  # desired STOPPED: told to stop, maybe not stopped yet
                for page in ecs.get_paginator("list_tasks").paginate(
                    cluster=cluster, serviceName=service, desiredStatus=status
                )
                for arn in page["taskArns"]
            ]
            alive = 0
            for start in range(0, len(arns), 100):  # describe_tasks takes 100 at a time
                tasks = ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100])["tasks"]
                alive += sum(
                    1 for t in tasks
                    if (t.get("lastStatus") == "RUNNING" if serving_only else t.get("lastStatus") != "STOPPED")
                )  # fmt: skip
            counts[kind] = alive
        return counts

    def scale(self, counts: Mapping[str, int]) -> None:
        ecs = self.client("ecs")
        for kind, count in counts.items():
            ecs.update_service(
                cluster=self.manifest.cluster, service=self.manifest.services[kind], desiredCount=count
            )

    # --- health ----------------------------------------------------------------------------------------

    def target_healthy(self, target_group: str, target: str | None = None) -> bool:
        """Whether the load balancer calls `target` (or any target of the group) healthy."""
        only = {"Targets": [{"Id": target}]} if target else {}
        health = self.client("elbv2").describe_target_health(TargetGroupArn=target_group, **only)
        return any(t["TargetHealth"]["State"] == "healthy" for t in health["TargetHealthDescriptions"])

    def web_healthy(self) -> bool:
        """The web service as the public sees it: a healthy target behind the production load balancer."""
        group = self.manifest.target_group_arn
        return bool(group) and self.target_healthy(str(group))

    # --- names -----------------------------------------------------------------------------------------

    def name_servers(self) -> list[tuple[str, int]]:
        """The hosted zone's own name servers (two of them), to ask what the world is told."""
        zone = self.client("route53").get_hosted_zone(Id=self.manifest.hosted_zone_id)
        names = zone["DelegationSet"]["NameServers"][:2]
        try:
            return [(socket.gethostbyname(ns), 53) for ns in names]
        except OSError as exc:
            raise InfrastructureError(f"cannot resolve the zone's name servers {names}: {exc}") from None

    # --- the database and the app's settings -----------------------------------------------------------

    def database_url(self) -> str:
        """The standby's DATABASE_URL, password included: it goes into secrets only, never a journal."""
        return read_database_url(self.manifest, self.manifest.region)

    def database(self) -> Database:
        return parse_database_url(self.database_url(), "standby database URL")

    def app_database_url(self) -> str | None:
        """The URL the app's tasks connect with (the application role); None for an older stack."""
        secret = self.manifest.app_database_secret
        if not secret:
            return None
        try:
            return self._secret_value(secret)
        except AWS_ERRORS as exc:
            raise aws_failure(exc, f"reading the app's database URL secret {secret}") from None

    def _secret_value(self, secret: str) -> str:
        return str(self.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"])

    def app_owner(self) -> Owner | None:
        """The application role restored data is handed to; None: the master user keeps it."""
        url = self.app_database_url()
        return Owner.of(parse_database_url(url, "app database URL")) if url else None

    def remember_primary_database_url(self, url: str) -> None:
        """Keep Heroku's DATABASE_URL as the backup used it (a new version only when it rotated)."""
        secret = self.manifest.primary_database_secret
        if not secret or self.primary_database_url() == url:
            return
        self.client("secretsmanager").put_secret_value(SecretId=secret, SecretString=url)

    def primary_database_url(self) -> str | None:
        """Heroku's DATABASE_URL as the newest backup used it; None when none was kept."""
        secret = self.manifest.primary_database_secret
        if not secret:
            return None
        try:
            return self._secret_value(secret)
        except AWS_ERRORS as exc:
            if (
                isinstance(exc, ClientError) and error_code(exc) == "ResourceNotFoundException"
            ):  # no value yet
                return None
            raise aws_failure(exc, f"reading {secret}") from None

    def free_storage(self) -> int | None:
        """Free bytes on the standby's RDS instance: its newest FreeStorageSpace (None when unknown)."""
        instance = self.manifest.database_instance
        if not instance:
            return None
        now = datetime.now(UTC)
        try:
            answer = self.client("cloudwatch").get_metric_statistics(
                Namespace="AWS/RDS",
                MetricName="FreeStorageSpace",
                Dimensions=[{"Name": "DBInstanceIdentifier", "Value": instance}],
                StartTime=now - FREE_STORAGE_WINDOW,
                EndTime=now + timedelta(minutes=1),  # the current minute's datapoint included
                Period=60,
                Statistics=["Minimum"],
            )
        except AWS_ERRORS as exc:
            raise aws_failure(exc, f"reading the free storage of {instance}") from None
        points = sorted(answer["Datapoints"], key=lambda p: p["Timestamp"])
        return int(points[-1]["Minimum"]) if points else None

    def _settings_secret(self) -> str:
        if not self.manifest.settings_secret:
            raise ConfigError(["the standby manifest names no settings secret: run `pulumi up -s standby`."])
        return self.manifest.settings_secret

    def settings(self) -> dict[str, str]:
        value = self.client("secretsmanager").get_secret_value(SecretId=self._settings_secret())
        return dict(json.loads(value["SecretString"]))

    def change_settings(self, settings: Mapping[str, str], ctx: RunContext) -> None:
        merged = {**self.settings(), **settings}
        self.client("secretsmanager").put_secret_value(
            SecretId=self._settings_secret(), SecretString=json.dumps(merged, sort_keys=True)
        )
        # ECS reads secrets when a task starts: a new deployment of every service picks the change up.
        ecs, deployments = self.client("ecs"), {}
        for service in self.manifest.services.values():
            updated = ecs.update_service(
                cluster=self.manifest.cluster, service=service, forceNewDeployment=True
            )
            primary = next(d for d in updated["service"]["deployments"] if d["status"] == "PRIMARY")
            deployments[service] = primary["id"]
        ctx.facts["redeployed"] = deployments

    def settings_live(self, ctx: RunContext) -> bool:
        """Every service runs only the deployment the change started, and ECS calls it complete."""
        started = ctx.facts.get("redeployed") or {}
        found = self.client("ecs").describe_services(cluster=self.manifest.cluster, services=list(started))
        return len(found["services"]) == len(started) and all(
            [(d["id"], d.get("rolloutState")) for d in s["deployments"]]
            == [(started[s["serviceName"]], "COMPLETED")]
            for s in found["services"]
        )
