"""The standby's own state: its names point where the app is live, its database can take one more
restore, its services run what its mode asks, its load balancer has healthy targets."""

from __future__ import annotations

from typing import Any, Final

from standby.dns_switch import TTL
from standby.live_side import HEROKU, describe
from standby.readiness.check import Check, critical, ok, warning
from standby.readiness.sources import Sources
from standby.restore import room_needed
from standby.sizing import desired_count
from standby.standby_manifest import load_manifest
from standby.standby_side import AwsStandby

WEB: Final = "web"
# RDS states in which the instance serves and takes a restore (its daily backup, a storage change).
USABLE: Final = frozenset({"available", "backing-up", "storage-optimization", "configuring-enhanced-monitoring",
                           "configuring-log-exports", "maintenance"})  # fmt: skip


def dns(src: Sources) -> Check:
    on_standby = src.live != HEROKU
    # The records the live region's stack keeps: after a cutover to the second region, that region's.
    manifest = src.manifest if src.live in (HEROKU, src.manifest.region) else load_manifest(src.app, src.live)
    switch = src.standby.dns if manifest is src.manifest else AwsStandby(manifest).dns
    where = describe(src.live)
    if switch.failover:
        if switch.is_on(on_standby):
            return ok("dns", f"the failover alarm sends the app's names to {where}, where it is live")
        return critical(
            "dns",
            f"the app is live on {where}, but the failover alarm {manifest.failover_alarm} sends its names elsewhere",
            "rerun the unfinished runbook (`--resume`), or see docs/runbooks.md on setting the alarm's state by hand.",
        )
    current = switch.records()
    wrong = [
        r["hostname"]
        for r in manifest.records
        if not switch.points(r, current.get(r["hostname"]), on_standby)
    ]
    if wrong:
        return critical(
            "dns",
            f"the app is live on {where}, but {', '.join(wrong)} point elsewhere (or are missing): its users reach the wrong side",
            "rerun the unfinished runbook (`--resume`) that moves them, or `pulumi up -s standby`, which declares them.",
        )
    slow = [f"{h} ({item['TTL']} s)" for h, item in current.items() if int(item.get("TTL", 0)) > TTL]
    if slow:
        return warning(
            "dns",
            f"{', '.join(slow)}: resolvers keep the old answer longer than {TTL} s after a cutover",
            f"set their TTL to {TTL} s (`pulumi up -s standby` declares {TTL} s).",
        )
    return ok("dns", f"{len(manifest.records)} names point at {where}, TTL at most {TTL} s")


def database(src: Sources) -> Check:
    instance = src.db_instance
    name = src.manifest.database_instance
    if instance is None:
        return critical(
            "database",
            f"there is no standby database {name or '(none named in the manifest)'}: there is nothing to restore into",
            "run `pulumi up -s standby`, which declares it.",
        )
    status = str(instance.get("DBInstanceStatus"))
    if status not in USABLE:
        return critical(
            "database",
            f"the standby database {name} is {status}: it cannot take a restore now",
            "see the RDS console's events for it; a stopped instance starts with `aws rds start-db-instance`.",
        )
    free = src.standby.free_storage()
    newest = src.newest
    if free is None:
        return warning(
            "database",
            f"{name} is available, but RDS published no FreeStorageSpace for it in 15 minutes",
            "check the instance's CloudWatch metrics.",
        )
    src.figures["free_storage_bytes"] = float(free)
    need = room_needed(newest) if newest else 0
    said = f"{name} is available with {free / 1e9:.2f} GB free; one more restore needs {need / 1e9:.2f} GB"
    if free < need:
        return critical(
            "database",
            f"{said}: the next restore is refused",
            "grow allocatedStorage (the primary's plan maps it) or drop previous databases the restores kept.",
            float(free),
        )
    return ok("database", said, float(free))


def _expected(src: Sources) -> dict[str, int]:
    mode = src.standby.mode()
    built = src.manifest.primary_formation
    return {
        kind: desired_count(mode, int(built.get(kind, {}).get("quantity", 1)))
        for kind in src.manifest.services
    }


def services(src: Sources) -> Check:
    desired, running = src.standby.desired_counts(), src.standby.running_counts(serving_only=True)
    expected = _expected(src)
    mode = src.standby.mode().value
    unlike = [f"{k} {desired.get(k, 0)} (wants {n})" for k, n in expected.items() if desired.get(k, 0) != n]
    if unlike:
        return warning(
            "services",
            f"the live mode {mode} wants other task counts: {', '.join(unlike)}",
            "run `pulumi up -s standby` (it sets the counts of the live mode), or finish the runbook that changes them.",
        )
    short = [f"{k} {running.get(k, 0)} of {n}" for k, n in desired.items() if running.get(k, 0) < n]
    counts = ", ".join(f"{k}={n}" for k, n in sorted(desired.items()))
    if short:
        level = critical if any(running.get(k, 0) == 0 for k, n in desired.items() if n) else warning
        return level(
            "services",
            f"tasks are not running: {', '.join(short)}",
            "read the services' events (`aws ecs describe-services`): an image that does not start, or no capacity.",
        )
    return ok("services", f"the services run what the live mode {mode} wants ({counts or 'none'})")


def load_balancer(src: Sources) -> Check:
    wanted = src.standby.desired_counts().get(WEB, 0)
    group = src.manifest.target_group_arn
    if not wanted or not group:
        return ok("load-balancer", "no web task is wanted in this mode: no target to check")
    health: Any = src.standby.client("elbv2").describe_target_health(TargetGroupArn=group)
    states = [t["TargetHealth"]["State"] for t in health["TargetHealthDescriptions"]]
    healthy = sum(1 for s in states if s == "healthy")
    if not src.standby.web_healthy():
        return critical(
            "load-balancer",
            f"no healthy target behind the load balancer ({len(states)} registered; {wanted} wanted)",
            "read the web service's logs and the target group's health check reasons.",
        )
    if healthy < wanted:
        return warning(
            "load-balancer", f"{healthy} of {wanted} web targets are healthy", "read the web service's logs."
        )
    return ok("load-balancer", f"{healthy} healthy web targets of {wanted} wanted")
