"""What each role may do, as IAM statements: the backup writer, the restore reader, the readiness
reader, the operator.

One function per duty, used by the stack (with Outputs for the ARNs) and by the tests (with the local
world's ARNs, evaluating what the code really calls; `standby.aws.access`):

- the **backup writer** (the scheduled backup task) adds backups under its app's prefix and signs their
  manifests. It cannot read a dump, write a journal or anything outside `backups/<app>/`, or publish in
  the failover metric's namespace: taking its rights steers no recovery;
- the **restore reader** (restore-ahead) reads backups and restores into the standby's database under
  the app's lock; it writes no object, signs nothing;
- the **readiness reader** (the status task, `scripts/status.py --publish`) reads what the readiness
  checks look at and publishes them in their own namespace; it writes nothing else, reads no dump;
- the **operator** runs the runbooks (cutover, failback, drill, restore, AI switch) from the standby
  manifest of each region: the only role that writes journals, the live mode or the failover metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import pulumi

from standby.aws.policies import allow
from standby.catalog_index import INDEX
from standby.names import (
    BACKUP_METRICS_NAMESPACE,
    BACKUP_PREFIX,
    READINESS_NAMESPACE,
    ai_provider_parameter,
    backup_lock_key,
    heroku_fence_parameter,
    lock_table,
    mode_parameter,
)
from standby.standby_manifest import StandbyManifest

Statement = dict[str, Any]
JOURNAL_PREFIX: Final = "runbooks"  # runbook journals: standby.runbook.journal
DRILL_PREFIX: Final = "drills"  # drill history: standby.drill_history
ECS_TASKS: Final = "ecs-tasks.amazonaws.com"


def _s3(bucket_arn: pulumi.Input[str], *path: str) -> pulumi.Input[str]:
    # Plain strings stay plain, so the tests evaluate these statements without an engine.
    key = "/".join(path)
    return (
        f"{bucket_arn}/{key}" if isinstance(bucket_arn, str) else pulumi.Output.concat(bucket_arn, "/", key)
    )


def _through_s3(region: str) -> dict[str, Any]:
    # The bucket key encrypts and decrypts objects for S3 only, never for a direct kms:Decrypt call.
    return {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}


def _parameter(region: str, account: pulumi.Input[str], name: str) -> pulumi.Input[str]:
    return _arn("ssm", region, account, f"parameter{name}")


def _arn(service: str, region: str, account: pulumi.Input[str], resource: str) -> pulumi.Input[str]:
    if isinstance(account, str):
        return f"arn:aws:{service}:{region}:{account}:{resource}"
    return pulumi.Output.concat(f"arn:aws:{service}:", region, ":", account, ":", resource)


@dataclass(frozen=True)
class BackupPlace:
    """What a backup writer or restore reader of one app in one region works with."""

    app: str
    region: str
    account: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    bucket_key_arn: pulumi.Input[str]  # the bucket's SSE-KMS key
    mac_key_arn: pulumi.Input[str]  # signs backup manifests (standby.integrity)

    @classmethod
    def of(cls, args: _HasBackupPlace) -> BackupPlace:
        """The place a component's arguments name (StandbyServices', RestoreAhead's)."""
        return cls(args.app, args.region, args.account, args.backup_bucket_arn, args.backup_key_arn,
                   args.backup_mac_key_arn)  # fmt: skip


class _HasBackupPlace(Protocol):
    @property
    def app(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def account(self) -> pulumi.Input[str]: ...
    @property
    def backup_bucket_arn(self) -> pulumi.Input[str]: ...
    @property
    def backup_key_arn(self) -> pulumi.Input[str]: ...
    @property
    def backup_mac_key_arn(self) -> pulumi.Input[str]: ...


def backup_writer(
    place: BackupPlace,
    primary_database_secret: pulumi.Input[str],
    standby_database_secret: pulumi.Input[str] | None,
) -> list[Statement]:
    app, bucket = place.app, place.bucket_arn
    own = f"{BACKUP_PREFIX}/{app}"
    return [
        allow(["s3:ListBucket"], [bucket], StringLike={"s3:prefix": [f"{own}/*"]}),
        allow(["s3:PutObject", "s3:AbortMultipartUpload"], [_s3(bucket, own, "*")]),
        # Retention and the catalog index read what each backup became (its manifest or failure record),
        # and the index they rewrite; never a dump.
        allow(["s3:GetObject"], [_s3(bucket, own, "*", "manifest.json"), _s3(bucket, own, "*", "failure.json"),
                                 _s3(bucket, own, INDEX)]),
        allow(["s3:GetObjectTagging", "s3:PutObjectTagging"], [_s3(bucket, own, "*")]),
        # Decrypt too: S3 needs it to assemble a multipart upload; reads stay limited by s3:GetObject.
        allow(["kms:GenerateDataKey", "kms:Decrypt"], [place.bucket_key_arn], **_through_s3(place.region)),
        allow(["kms:GenerateMac", "kms:VerifyMac"], [place.mac_key_arn]),
        # Its own lease in the lock table (one backup at a time), never the runbooks' item.
        allow(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
              [_arn("dynamodb", place.region, place.account, f"table/{lock_table(app)}")],
              **{"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [backup_lock_key(app)]}}),
        allow(
            ["ssm:GetParameter"],
            [
                _parameter(place.region, place.account, f"/standby/{app}/manifest"),
                # Where the app is live: the live mode of either region (standby.live_side).
                _parameter("*", place.account, mode_parameter(app)),
            ],
        ),
        allow(["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"], [primary_database_secret]),
        # Once a cutover made the standby live, the backup dumps its database instead.
        *(
            [allow(["secretsmanager:GetSecretValue"], [standby_database_secret])]
            if standby_database_secret is not None
            else []
        ),
        # Its own namespace: the failover metric (names.METRICS_NAMESPACE) is out of its reach.
        allow(["cloudwatch:PutMetricData"], ["*"], StringEquals={"cloudwatch:namespace": BACKUP_METRICS_NAMESPACE}),
    ]  # fmt: skip


def restore_reader(
    place: BackupPlace, database_secrets: Sequence[pulumi.Input[str]], lock_table_arn: pulumi.Input[str]
) -> list[Statement]:
    app, bucket = place.app, place.bucket_arn
    own = f"{BACKUP_PREFIX}/{app}"
    return [
        allow(["s3:ListBucket"], [bucket], StringLike={"s3:prefix": [f"{own}/*"]}),
        allow(["s3:GetObject"], [_s3(bucket, own, "*")]),
        allow(["kms:Decrypt"], [place.bucket_key_arn], **_through_s3(place.region)),
        allow(["kms:VerifyMac"], [place.mac_key_arn]),  # verifies, never signs
        allow(["secretsmanager:GetSecretValue"], list(database_secrets)),
        allow(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"], [lock_table_arn]),
        allow(["ssm:GetParameter"], [_parameter(place.region, place.account, f"/standby/{app}/*")]),
        # The database's free storage, checked before each restore (no resource-level permission).
        allow(["cloudwatch:GetMetricStatistics"], ["*"], StringEquals={"aws:RequestedRegion": place.region}),
    ]  # fmt: skip


def readiness_reader(
    manifest: StandbyManifest, account: str, bucket_key_arn: str, replica_bucket: str | None
) -> list[Statement]:
    """What the readiness checks read in the manifest's region (and the replica they list in the other),
    scoped to the resources the manifest names. The backup MAC key's own policy names it as a verifier."""
    m = manifest
    app, region = m.app, m.region
    bucket = f"arn:aws:s3:::{m.backup_bucket}"
    backups, drills, journals = (f"{p}/{app}" for p in (m.backup_prefix, DRILL_PREFIX, JOURNAL_PREFIX))
    arn = f"arn:aws:{{}}:{region}:{account}:{{}}"
    cluster = arn.format("ecs", f"cluster/{m.cluster}")
    in_region = {"StringEquals": {"aws:RequestedRegion": region}}
    on_cluster = {"ArnEquals": {"ecs:cluster": cluster}}
    regions = [r for r in (region, m.second_region) if r]
    services = [arn.format("ecs", f"service/{m.cluster}/{s}") for s in m.services.values()]
    statements = [
        allow(["s3:ListBucket"], [bucket], StringLike={"s3:prefix": [f"{p}/*" for p in (backups, drills, journals)]}),
        # A backup's manifest and failure record, never its dump: a dump's size is read from the listing.
        allow(["s3:GetObject"], [f"{bucket}/{backups}/*/manifest.json", f"{bucket}/{backups}/*/failure.json",
                                 f"{bucket}/{backups}/{INDEX}", f"{bucket}/{drills}/*", f"{bucket}/{journals}/*"]),
        allow(["kms:Decrypt"], [bucket_key_arn], **_through_s3(region)),
        # Verifies manifests, never signs (the key's own policy is what lets it: standby_region.py).
        *([allow(["kms:VerifyMac"], [m.backup_mac_key])] if m.backup_mac_key else []),
        allow(["ssm:GetParameter"], [f"arn:aws:ssm:{r}:{account}:parameter/standby/{app}/*" for r in regions]),
        allow(["dynamodb:GetItem"], [arn.format("dynamodb", f"table/{m.lock_table}")]),
        # Which backup the standby holds is the database's comment: read as the app's role, not the master.
        *([allow(["secretsmanager:GetSecretValue"], [m.app_database_secret])] if m.app_database_secret else []),
        # No resource-level permissions for these reads.
        allow(["ecs:DescribeTaskDefinition", "elasticloadbalancing:DescribeTargetHealth", "cloudwatch:GetMetricStatistics",
               "cloudwatch:DescribeAlarms"], ["*"], **in_region),
        *([allow(["rds:DescribeDBInstances"], [arn.format("rds", f"db:{m.database_instance}")])]
          if m.database_instance else []),
        *([allow(["ecs:DescribeServices"], services)] if services else []),
        allow(["ecs:ListTasks"], ["*"], **on_cluster),
        allow(["ecs:DescribeTasks"], [arn.format("ecs", f"task/{m.cluster}/*")], **on_cluster),
        # Its own namespace only: the failover and backup metrics are out of its reach.
        allow(["cloudwatch:PutMetricData"], ["*"], StringEquals={"cloudwatch:namespace": READINESS_NAMESPACE}),
    ]  # fmt: skip
    if replica_bucket:  # the replica check lists the other region's copy; it reads no object there
        statements.append(allow(["s3:ListBucket"], [f"arn:aws:s3:::{replica_bucket}"],
                                StringLike={"s3:prefix": [f"{backups}/*"]}))  # fmt: skip
    if m.hosted_zone_id:
        statements.append(
            allow(["route53:ListResourceRecordSets"], [f"arn:aws:route53:::hostedzone/{m.hosted_zone_id}"])
        )
    return statements


# What the account's administrators keep over a MAC key (through IAM): manage it, never use it.
KEY_ADMINISTRATION: Final = [
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:PutKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListResourceTags",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:EnableKey",
    "kms:DisableKey",
    "kms:UpdateKeyDescription",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:UpdatePrimaryRegion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:UpdateAlias",
    "kms:ListGrants",
    "kms:RevokeGrant",
]  # fmt: skip  (no CreateGrant: a grant would hand out GenerateMac past this policy)


def mac_key_policy(
    account: str, signers: Sequence[str], verifiers: Sequence[str], replica_region: str | None = None
) -> dict[str, Any]:
    """The key policy of a MAC key: `signers` make and check MACs, `verifiers` only check them; the
    account administers the key but cannot use it, so no IAM policy grants a MAC to anyone else. A replica
    shares the key material under a policy of its own: the primary replicates to `replica_region` only."""
    signers = [s for s in signers if s]
    root = f"arn:aws:iam::{account}:root"
    statements: list[Statement] = [
        {"Sid": "Administer", "Effect": "Allow", "Principal": {"AWS": root}, "Action": KEY_ADMINISTRATION,
         "Resource": "*"},
        {"Sid": "Sign", "Effect": "Allow", "Principal": {"AWS": signers}, "Action": ["kms:GenerateMac", "kms:VerifyMac"],
         "Resource": "*"},
    ]  # fmt: skip
    if replica_region:
        statements.append({"Sid": "ReplicateToTheSecondRegion", "Effect": "Allow", "Principal": {"AWS": root},
                           "Action": ["kms:ReplicateKey"], "Resource": "*",
                           "Condition": {"StringEquals": {"kms:ReplicaRegion": replica_region}}})  # fmt: skip
    if verifiers:
        statements.append({"Sid": "Verify", "Effect": "Allow", "Principal": {"AWS": list(verifiers)},
                           "Action": ["kms:VerifyMac"], "Resource": "*"})  # fmt: skip
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass(frozen=True)
class OperatorRegion:
    """One region as the operator's runbooks see it: its standby manifest and what the manifest omits."""

    manifest: StandbyManifest
    bucket_key_arn: str
    task_role_arns: Sequence[str]  # the roles a drill's task definition passes to ECS


def operator(regions: Sequence[OperatorRegion], account: str) -> list[Statement]:
    """Everything the runbooks call, scoped to the resources the manifests name."""
    statements: list[Statement] = []
    for region in regions:
        statements.extend(_operator_in(region, account))
    return statements


def _operator_in(place: OperatorRegion, account: str) -> list[Statement]:
    m = place.manifest
    app, region = m.app, m.region
    bucket = f"arn:aws:s3:::{m.backup_bucket}"
    prefixes = [f"{m.backup_prefix}/{app}", f"{JOURNAL_PREFIX}/{app}", f"{DRILL_PREFIX}/{app}"]
    arn = f"arn:aws:{{}}:{region}:{account}:{{}}"
    cluster = arn.format("ecs", f"cluster/{m.cluster}")
    in_region = {"StringEquals": {"aws:RequestedRegion": region}}
    on_cluster = {"ArnEquals": {"ecs:cluster": cluster}}
    secrets = [m.database_secret, m.app_database_secret, m.primary_database_secret, m.settings_secret,
               m.drill_database_secret]  # fmt: skip
    # The AI switch, the drill's scratch URL, Heroku's DATABASE_URL after a promotion (recover_db.py).
    written = [m.settings_secret, m.drill_database_secret, m.primary_database_secret]
    parameters = [mode_parameter(app), heroku_fence_parameter(app), ai_provider_parameter(app)]
    macs = [k for k in (m.backup_mac_key, m.runbook_mac_key) if k]
    statements = [
        allow(["s3:ListBucket"], [bucket], StringLike={"s3:prefix": [f"{p}/*" for p in prefixes]}),
        allow(["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"], [f"{bucket}/{p}/*" for p in prefixes]),
        allow(["s3:GetObjectTagging", "s3:PutObjectTagging"], [f"{bucket}/{prefixes[0]}/*"]),
        allow(["kms:GenerateDataKey", "kms:Decrypt"], [place.bucket_key_arn], **_through_s3(region)),
        # Its journals; and its final backups and the failback's dump are backups, signed as the task does.
        *([allow(["kms:GenerateMac", "kms:VerifyMac"], macs)] if macs else []),
        allow(["ssm:GetParameter"], [arn.format("ssm", f"parameter/standby/{app}/*")]),
        allow(["ssm:PutParameter", "ssm:DeleteParameter"], [arn.format("ssm", f"parameter{p}") for p in parameters]),
        allow(["secretsmanager:GetSecretValue"], [s for s in secrets if s]),
        allow(["secretsmanager:PutSecretValue"], [s for s in written if s]),
        allow(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
              [arn.format("dynamodb", f"table/{m.lock_table}")]),
        *([allow(["sns:Publish"], [m.topic_arn])] if m.topic_arn else []),
        allow(["ecs:DescribeServices", "ecs:UpdateService"],
              [arn.format("ecs", f"service/{m.cluster}/{s}") for s in m.services.values()]),
        allow(["ecs:ListTasks"], ["*"], **on_cluster),
        allow(["ecs:DescribeTasks", "ecs:StopTask"], [arn.format("ecs", f"task/{m.cluster}/*")], **on_cluster),
        allow(["ecs:RunTask"], [arn.format("ecs", f"task-definition/{app}-*")], **on_cluster),
        # Task definitions have no resource-level permissions.
        allow(["ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition", "ecs:DescribeTaskDefinition",
               "ecs:ListTaskDefinitions", "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeRules",
               "cloudwatch:GetMetricStatistics", "cloudwatch:DescribeAlarms", "rds:DescribeDBInstances"],
              ["*"], **in_region),
        *([allow(["iam:PassRole"], list(place.task_role_arns), StringEquals={"iam:PassedToService": ECS_TASKS})]
          if place.task_role_arns else []),
        *([allow(["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
                 [m.drill_target_group_arn])] if m.drill_target_group_arn else []),
        *([allow(["elasticloadbalancing:ModifyRule"], [m.drill_rule_arn])] if m.drill_rule_arn else []),
        allow(["cloudwatch:PutMetricData"], ["*"], StringEquals={"cloudwatch:namespace": m.metrics_namespace}),
        *([allow(["cloudwatch:SetAlarmState"], [arn.format("cloudwatch", f"alarm:{m.failover_alarm}")])]
          if m.failover_alarm else []),
    ]  # fmt: skip
    if m.hosted_zone_id:
        zone = f"arn:aws:route53:::hostedzone/{m.hosted_zone_id}"
        statements.append(
            allow(["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"], [zone])
        )
        statements.append(allow(["route53:GetChange"], ["arn:aws:route53:::change/*"]))
    return statements
