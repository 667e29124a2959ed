"""Moving the app's names between Heroku and the standby, both ways (README, "The disaster flow").

`record` mode: one Route 53 change batch replaces every name's record (CNAME to Heroku <-> alias A to the
load balancer), then waits for INSYNC. `failover` mode: the names keep PRIMARY/SECONDARY records and the
runbook drives the CloudWatch alarm their health check follows, with no control-plane call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from standby.standby_manifest import StandbyManifest
from standby.vocabulary import DnsMode

INSYNC_TIMEOUT: Final = 300.0
TTL: Final = 60


class DnsSwitch:
    def __init__(self, manifest: StandbyManifest, client: Callable[[str], Any]) -> None:
        self.manifest = manifest
        self.client = client

    @property
    def failover(self) -> bool:
        return self.manifest.dns_mode is DnsMode.FAILOVER

    def records(self) -> dict[str, dict[str, Any]]:
        """The current CNAME or A record of each of the app's names."""
        route53 = self.client("route53")
        found: dict[str, dict[str, Any]] = {}
        for record in self.manifest.records:
            name = record["hostname"].rstrip(".") + "."
            answer = route53.list_resource_record_sets(
                HostedZoneId=self.manifest.hosted_zone_id, StartRecordName=name, MaxItems="5"
            )
            for item in answer["ResourceRecordSets"]:
                if item["Name"] == name and item["Type"] in ("CNAME", "A"):
                    found[record["hostname"]] = item
        return found

    def wanted(self, record: dict[str, str], on_standby: bool) -> dict[str, Any]:
        if on_standby:
            target = {
                "HostedZoneId": self.manifest.load_balancer_zone_id,
                "DNSName": self.manifest.load_balancer_dns,
                "EvaluateTargetHealth": True,
            }
            return {"Name": record["hostname"], "Type": "A", "AliasTarget": target}
        return {
            "Name": record["hostname"],
            "Type": "CNAME",
            "TTL": TTL,
            "ResourceRecords": [{"Value": record["heroku_target"]}],
        }

    def points(self, record: dict[str, str], item: dict[str, Any] | None, on_standby: bool) -> bool:
        if item is None:
            return False
        if on_standby:
            alias = str(item.get("AliasTarget", {}).get("DNSName", "")).rstrip(".").lower()
            return alias == (self.manifest.load_balancer_dns or "").rstrip(".").lower()
        return bool(item.get("ResourceRecords") == [{"Value": record["heroku_target"]}])

    def is_on(self, on_standby: bool) -> bool:
        if self.failover:
            alarms = self.client("cloudwatch").describe_alarms(AlarmNames=[self.manifest.failover_alarm])[
                "MetricAlarms"
            ]
            return bool(alarms) and alarms[0]["StateValue"] == ("ALARM" if on_standby else "OK")
        current = self.records()
        return all(self.points(r, current.get(r["hostname"]), on_standby) for r in self.manifest.records)

    def move(self, on_standby: bool, reason: str) -> str | None:
        """Point every name at the standby (or back at Heroku); returns the Route 53 change id, if any."""
        if self.failover:
            self._drive_alarm(in_service=not on_standby, reason=reason)
            return None
        current = self.records()
        changes = []
        for record in self.manifest.records:
            item = current.get(record["hostname"])
            if self.points(record, item, on_standby):
                continue
            if item is not None:
                changes.append({"Action": "DELETE", "ResourceRecordSet": item})
            changes.append({"Action": "UPSERT", "ResourceRecordSet": self.wanted(record, on_standby)})
        if not changes:
            return None
        route53 = self.client("route53")
        # One batch: every name moves at once, or none does. Deletes first, so a name can change type;
        # UPSERT rather than CREATE keeps a retried batch harmless.
        ordered = [c for c in changes if c["Action"] == "DELETE"] + [
            c for c in changes if c["Action"] != "DELETE"
        ]
        change = route53.change_resource_record_sets(
            HostedZoneId=self.manifest.hosted_zone_id, ChangeBatch={"Comment": reason, "Changes": ordered}
        )["ChangeInfo"]
        deadline = time.monotonic() + INSYNC_TIMEOUT
        while change["Status"] != "INSYNC" and time.monotonic() < deadline:
            time.sleep(2)
            change = route53.get_change(Id=change["Id"])["ChangeInfo"]
        return str(change["Id"])

    def _drive_alarm(self, in_service: bool, reason: str) -> None:
        cloudwatch = self.client("cloudwatch")
        metric = {
            "MetricName": self.manifest.failover_metric,
            "Dimensions": [{"Name": "App", "Value": self.manifest.app}],
            "Value": 1.0 if in_service else 0.0,
        }
        cloudwatch.put_metric_data(Namespace=self.manifest.metrics_namespace, MetricData=[metric])
        # The metric keeps the state for later evaluations; setting it moves traffic now.
        cloudwatch.set_alarm_state(
            AlarmName=self.manifest.failover_alarm,
            StateValue="OK" if in_service else "ALARM",
            StateReason=reason,
        )
