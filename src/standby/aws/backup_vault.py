"""`BackupVault`: where backups live. Versioned, KMS-encrypted, private, TLS-only, object-locked, expiring.

`BackupReplication` copies the standby region's vault into the second region's (S3 replication of
KMS-encrypted objects needs decrypt on the source key and encrypt on the destination key).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from standby.aws.policies import allow, assume_role, document
from standby.backup_store import EXPIRABLE


@dataclass(frozen=True)
class VaultArgs:
    app: str
    region: str
    retention_days: int


class BackupVault(pulumi.ComponentResource):
    def __init__(self, name: str, args: VaultArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("standby:aws:BackupVault", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # The backups and the key that decrypts them: never replaced or deleted by Pulumi.
        kept = pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True)
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"{args.app} standby backups ({args.region})",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=kept,
        )
        # Object lock can only be turned on when the bucket is created.
        self.bucket = aws.s3.Bucket(
            f"{name}-bucket", bucket_prefix=f"{args.app}-backups-", object_lock_enabled=True, opts=kept
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": self.key.arn,
                    },
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-private",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=self.bucket.id,
            policy=document(
                [
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [self.bucket.arn, pulumi.Output.concat(self.bucket.arn, "/*")],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ]
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block]),
        )
        # Governance mode: nobody deletes a backup by accident or by a stolen app key before it ages out;
        # an administrator with s3:BypassGovernanceRetention still can, on purpose.
        aws.s3.BucketObjectLockConfiguration(
            f"{name}-lock",
            bucket=self.bucket.id,
            object_lock_enabled="Enabled",
            rule={"default_retention": {"mode": "GOVERNANCE", "days": args.retention_days}},
            opts=child,
        )
        # A backstop behind the retention in code (standby.retention): only objects tagged expirable, that
        # is never one of the newest complete backups, expire by age.
        expirable = {EXPIRABLE[0]: EXPIRABLE[1]}
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=[
                {
                    "id": "expire-redundant-backups",
                    "status": "Enabled",
                    "filter": {"and_": {"prefix": "backups/", "tags": expirable}},
                    "expiration": {"days": args.retention_days + 1},
                    "noncurrent_version_expiration": {"noncurrent_days": args.retention_days + 1},
                },
                {
                    "id": "abandoned-uploads",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
                },
            ],
            opts=child,
        )
        self.register_outputs({"bucket": self.bucket.id, "keyArn": self.key.arn})


class BackupReplication(pulumi.ComponentResource):
    """Replicate `source` (this provider's region) into `destination` (the second region)."""

    def __init__(
        self,
        name: str,
        source: BackupVault,
        destination: BackupVault,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("standby:aws:BackupReplication", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(f"{name}-role", assume_role_policy=assume_role("s3.amazonaws.com"), opts=child)
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=document(
                [
                    allow(["s3:GetReplicationConfiguration", "s3:ListBucket"], [source.bucket.arn]),
                    allow(
                        ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging",
                         "s3:GetObjectRetention", "s3:GetObjectLegalHold"],
                        [pulumi.Output.concat(source.bucket.arn, "/*")],
                    ),
                    allow(
                        ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
                        [pulumi.Output.concat(destination.bucket.arn, "/*")],
                    ),
                    allow(["kms:Decrypt"], [source.key.arn]),
                    allow(["kms:Encrypt", "kms:GenerateDataKey"], [destination.key.arn]),
                ]
            ),
            opts=child,
        )  # fmt: skip
        aws.s3.BucketReplicationConfig(
            f"{name}-config",
            bucket=source.bucket.id,
            role=role.arn,
            rules=[
                {
                    "id": "to-second-region",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "delete_marker_replication": {"status": "Disabled"},
                    "source_selection_criteria": {"sse_kms_encrypted_objects": {"status": "Enabled"}},
                    "destination": {
                        "bucket": destination.bucket.arn,
                        "storage_class": "STANDARD",
                        "encryption_configuration": {"replica_kms_key_id": destination.key.arn},
                    },
                }
            ],
            opts=child,
        )
        self.register_outputs({})
