"""The standby side on moto, with stand-ins on this machine for what moto cannot do.

moto's ECS starts no container for a service, and its load balancer probes nothing: every registered
target is "healthy", whatever runs behind it. Its Route 53 name servers are names, not servers. So:

- scaling registers (or removes) one target per wanted web task in the web target group, as ECS does for a
  service behind a load balancer;
- a target counts as healthy only when the stand-in web app answers its health path over HTTP (as the load
  balancer's health check would) *and* the production check (describe_target_health) calls it healthy;
- the name servers are stand-ins on loopback that answer from moto's Route 53, or there are none;
- moto never completes a rollout: the deployment a settings change started counts as complete once it is
  the service's only one, as on ECS when its tasks run.

Everything else is `AwsStandby` itself: the tests and the rehearsal run the production code paths.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping, Sequence
from typing import Final

from standby.errors import InfrastructureError
from standby.runbook.engine import RunContext
from standby.standby_manifest import StandbyManifest
from standby.standby_side import AwsStandby

WEB: Final = "web"
WEB_TASK_IP: Final = "10.40.128.10"  # in the world's subnet (standby_world.SUBNET)


class LocalStandby(AwsStandby):
    def __init__(
        self,
        manifest: StandbyManifest,
        web_url: str | None = None,
        name_servers: Sequence[tuple[str, int]] = (),
    ) -> None:
        super().__init__(manifest)
        self.web_url = web_url  # the stand-in web app's health URL; None: no app answers
        self._name_servers = list(name_servers)

    def scale(self, counts: Mapping[str, int]) -> None:
        super().scale(counts)
        group = self.manifest.target_group_arn
        if WEB in counts and group:
            targets = [{"Id": f"10.40.128.{10 + i}"} for i in range(max(counts[WEB], 0))]
            current = self.client("elbv2").describe_target_health(TargetGroupArn=group)
            gone = [{"Id": t["Target"]["Id"]} for t in current["TargetHealthDescriptions"]]
            if gone:
                self.client("elbv2").deregister_targets(TargetGroupArn=group, Targets=gone)
            if targets:
                self.client("elbv2").register_targets(TargetGroupArn=group, Targets=targets)

    def target_healthy(self, target_group: str, target: str | None = None) -> bool:
        return self._app_answers() and super().target_healthy(target_group, target)

    def _app_answers(self) -> bool:
        if not self.web_url:
            return False
        try:
            with urllib.request.urlopen(self.web_url, timeout=5) as answer:
                return bool(200 <= answer.status < 400)
        except OSError:
            return False

    def settings_live(self, ctx: RunContext) -> bool:
        """moto never finishes a rollout; ECS does once the new tasks run: here, the deployment the change
        started is complete as soon as it is the service's only one."""
        started = ctx.facts.get("redeployed") or {}
        found = self.client("ecs").describe_services(cluster=self.manifest.cluster, services=list(started))
        return len(found["services"]) == len(started) and all(
            [d["id"] for d in s["deployments"]] == [started[s["serviceName"]]] for s in found["services"]
        )

    def name_servers(self) -> list[tuple[str, int]]:
        if not self._name_servers:
            raise InfrastructureError("no name server stands in for Route 53's on this machine")
        return list(self._name_servers)
