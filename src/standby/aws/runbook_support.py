"""`RunbookSupport`: what the runbooks need besides the standby itself: the lock table, the live mode,
and the standby manifest, in SSM of this region."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from standby.names import lock_table, manifest_parameter, mode_parameter


@dataclass(frozen=True)
class RunbookSupportArgs:
    app: str
    initial_mode: str
    manifest: pulumi.Input[str]  # StandbyManifest.to_json(): names only, never a secret value


class RunbookSupport(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: RunbookSupportArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("standby:aws:RunbookSupport", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.lock_table = aws.dynamodb.Table(
            f"{name}-locks",
            name=lock_table(args.app),
            billing_mode="PAY_PER_REQUEST",
            hash_key="lock",
            attributes=[{"name": "lock", "type": "S"}],
            ttl={"attribute_name": "expires_at", "enabled": True},
            point_in_time_recovery={"enabled": True},
            server_side_encryption={"enabled": True},
            deletion_protection_enabled=True,
            opts=child,
        )
        # The runbooks own this value (a cutover sets `active`); Pulumi creates it and then leaves it alone.
        self.mode = aws.ssm.Parameter(
            f"{name}-mode",
            name=mode_parameter(args.app),
            type="String",
            value=args.initial_mode,
            description="live standby mode; set by the runbooks",
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["value"]),
        )
        self.manifest = aws.ssm.Parameter(
            f"{name}-manifest",
            name=manifest_parameter(args.app),
            type="String",
            tier="Advanced",  # the manifest can outgrow the 4 KB of a standard parameter
            value=args.manifest,
            description="standby manifest: everything a runbook needs, no secret values",
            opts=child,
        )
        self.register_outputs({"lockTable": self.lock_table.name})
