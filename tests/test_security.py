"""Security rules: they hold on the standby program, and each one can fail (fixtures that break it)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from standby.security_rules import (
    RULES,
    Declared,
    buckets_are_locked_down,
    databases_are_private_and_kept,
    drill_route_is_unguessable,
    mac_keys_have_their_own_policy,
    no_plaintext_secrets,
    only_the_operator_steers_a_recovery,
    policies_grant_no_wildcard_actions,
    validate_stack,
)
from tests.pulumi_harness import RecordingMocks
from tests.test_standby_stack import SECRET_VARS, run_standby

SECRETS = [
    *SECRET_VARS.values(),
    "mock-password-not-for-logs",
    "heroku-key-not-for-logs",
    "redis-secret-not-for-logs",
]


def _declared(mocks: RecordingMocks) -> list[Declared]:
    return [Declared(d.typ, d.name, d.inputs) for d in mocks.declared]


@pytest.mark.parametrize("mode", ["pilot-light", "warm", "active"])
@pytest.mark.parametrize("dns", ["record", "failover"])
def test_the_standby_program_passes_every_rule(pulumi_mocks: RecordingMocks, mode: str, dns: str) -> None:
    run_standby(
        pulumi_mocks,
        {
            "standby:mode": mode,
            "standby:dns": dns,
            "standby:herokuApiKey": "heroku-key-not-for-logs",
            "standby:secretConfigOverrides": {"REDIS_URL": "redis-secret-not-for-logs"},
        },
    )
    resources = _declared(pulumi_mocks)
    assert len([r for r in resources if r.type == "aws:s3/bucket:Bucket"]) == 2
    for name, rule in {**RULES, "no-plaintext-secrets": no_plaintext_secrets(SECRETS)}.items():
        assert rule(resources) == [], name


def _locked_bucket() -> list[Declared]:
    policy = {"Statement": [{"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
    return [
        Declared("aws:s3/bucket:Bucket", "b", {"objectLockEnabled": True}),
        Declared("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "e",
                 {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}]}),
        Declared("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "p",
                 {"blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True}),
        Declared("aws:s3/bucketPolicy:BucketPolicy", "t", {"policy": json.dumps(policy)}),
        Declared("aws:s3/bucketVersioning:BucketVersioning", "v", {"versioningConfiguration": {"status": "Enabled"}}),
        Declared("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", "l",
                 {"rule": {"defaultRetention": {"mode": "GOVERNANCE", "days": 35}}}),
    ]  # fmt: skip


def _break(resources: list[Declared], type_suffix: str, props: dict[str, Any] | None) -> list[Declared]:
    """Replace the props of the resource whose type ends with `type_suffix` (None: remove it)."""
    changed = []
    for r in resources:
        if r.type.endswith(type_suffix):
            if props is not None:
                changed.append(Declared(r.type, r.name, props))
        else:
            changed.append(r)
    return changed


@pytest.mark.parametrize(
    ("suffix", "props", "message"),
    [
        (":Bucket", {"objectLockEnabled": False}, "object lock must be enabled"),
        (":BucketServerSideEncryptionConfiguration", {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]}, "KMS encryption"),
        (":BucketPublicAccessBlock", {"blockPublicAcls": True}, "public access block"),
        (":BucketPolicy", {"policy": json.dumps({"Statement": []})}, "denying non-TLS"),
        (":BucketVersioning", None, "versioning"),
        (":BucketObjectLockConfiguration", {"rule": {}}, "lock retention"),
    ],
)  # fmt: skip
def test_the_bucket_rule_catches_each_missing_protection(
    suffix: str, props: dict[str, Any] | None, message: str
) -> None:
    assert buckets_are_locked_down(_locked_bucket()) == []
    problems = buckets_are_locked_down(_break(_locked_bucket(), suffix, props))
    assert len(problems) == 1 and message in problems[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"storageEncrypted": False}, "encrypted"),
        ({"publiclyAccessible": True}, "publicly accessible"),
        ({"deletionProtection": False}, "deletion protection"),
        ({"backupRetentionPeriod": 0}, "automated backups"),
    ],
)
def test_the_database_rule_catches_each_unsafe_setting(change: dict[str, Any], message: str) -> None:
    good = {
        "storageEncrypted": True,
        "publiclyAccessible": False,
        "deletionProtection": True,
        "backupRetentionPeriod": 7,
    }
    assert databases_are_private_and_kept([Declared("aws:rds/instance:Instance", "db", good)]) == []
    (problem,) = databases_are_private_and_kept(
        [Declared("aws:rds/instance:Instance", "db", {**good, **change})]
    )
    assert message in problem


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ({"Effect": "Allow", "Action": "*", "Resource": ["arn:x"]}, "wildcard action '*'"),
        ({"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:x"]}, "wildcard action 's3:*'"),
        (
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"},
            "Resource '*' without a condition",
        ),
    ],
)
def test_the_iam_rule_catches_wildcards(statement: dict[str, Any], message: str) -> None:
    allowed = {
        "Effect": "Allow",
        "Action": ["cloudwatch:PutMetricData"],
        "Resource": ["*"],
        "Condition": {"x": {}},
    }
    ok = Declared("aws:iam/rolePolicy:RolePolicy", "p", {"policy": json.dumps({"Statement": [allowed]})})
    assert policies_grant_no_wildcard_actions([ok]) == []
    bad = Declared("aws:iam/rolePolicy:RolePolicy", "p", {"policy": json.dumps({"Statement": [statement]})})
    (problem,) = policies_grant_no_wildcard_actions([bad])
    assert message in problem


# The backup task's policy before the duties were split: the whole bucket, the shared namespace.
BROAD_WRITER = [
    {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"]},
    {"Effect": "Allow", "Action": ["cloudwatch:PutMetricData"], "Resource": ["*"],
     "Condition": {"StringEquals": {"cloudwatch:namespace": "Standby"}}},
]  # fmt: skip
NARROW_WRITER = [
    {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["arn:aws:s3:::b/backups/app/*"]},
    {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/backups/app/*/manifest.json"]},
]  # fmt: skip
# The status task's: lists and reads manifests, publishes its own namespace.
READER = [
    {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::b"]},
    {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/backups/app/*/manifest.json"]},
    {"Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": ["arn:aws:dynamodb:us-east-2:1:table/app-standby-locks"]},
]  # fmt: skip
LOCK_WRITER = [
    {"Effect": "Allow", "Action": ["dynamodb:UpdateItem"], "Resource": ["arn:aws:dynamodb:*:*:table/*"]}
]
MODE = Declared("aws:ssm/parameter:Parameter", "mode", {"name": "/standby/app/mode"})


def _role_policy(name: str, statements: list[dict[str, Any]]) -> Declared:
    return Declared(
        "aws:iam/rolePolicy:RolePolicy", name, {"name": name, "policy": json.dumps({"Statement": statements})}
    )


@pytest.mark.parametrize(
    ("name", "statements", "expected"),
    [
        ("backup-writer", BROAD_WRITER, ["write a runbook journal", "publish the failover metric",
                                         "read a backup's dump", "write outside its backup prefix"]),
        ("restore-reader", BROAD_WRITER, ["write a runbook journal", "publish the failover metric"]),
        ("app", [{"Effect": "Allow", "Action": "ssm:Put*", "Resource": "arn:aws:ssm:*:*:parameter/standby/*"}],
         ["set the live mode"]),
        ("backup-writer", NARROW_WRITER, []),
        ("backup-writer", [*BROAD_WRITER, {"Effect": "Deny", "Action": "*", "Resource": "*"}], []),
        ("readiness-reader", BROAD_WRITER, ["write a runbook journal", "publish the failover metric",
                                            "read a backup's dump", "write what it reads"]),
        ("readiness-reader", NARROW_WRITER, ["write what it reads"]),
        ("readiness-reader", [*READER, *LOCK_WRITER], ["write what it reads"]),
        ("readiness-reader", READER, []),
    ],
    ids=["broad-writer", "broad-reader", "app-sets-the-mode", "narrow-writer", "explicit-deny",
         "status-broad", "status-writes-backups", "status-takes-the-lock", "status-reads"],
)  # fmt: skip
def test_the_duty_rule_catches_a_task_role_that_could_steer_a_recovery(
    name: str, statements: list[dict[str, Any]], expected: list[str]
) -> None:
    problems = only_the_operator_steers_a_recovery([MODE, _role_policy(name, statements)])
    assert problems == [f"policy {name}: a task role may {what}" for what in expected]
    # The operator's managed policy may do all of it: it is not a task role's.
    operator = Declared("aws:iam/policy:Policy", "op", {"name": "app-standby-operator-us-east-2",
                                                        "policy": json.dumps({"Statement": BROAD_WRITER})})  # fmt: skip
    assert only_the_operator_steers_a_recovery([MODE, operator]) == []


SECRET = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "closed-x"}


@pytest.mark.parametrize(
    ("conditions", "problems"),
    [
        ([{"httpHeader": {"httpHeaderName": "X-Standby-Drill", "values": ["acme-shop"]}}], 1),
        ([{"httpHeader": {"httpHeaderName": "X-Standby-Drill", "values": [SECRET]}}], 0),
        (SECRET, 0),
        ([{"httpHeader": {"httpHeaderName": "X-Other", "values": ["plain"]}}], 0),
    ],
    ids=["the-app-name", "a-secret-value", "secret-as-a-whole", "another-header"],
)
def test_the_drill_route_rule_catches_a_guessable_header(conditions: Any, problems: int) -> None:
    rule = Declared("aws:lb/listenerRule:ListenerRule", "drill", {"conditions": conditions})
    found = drill_route_is_unguessable([rule])
    assert len(found) == problems and all("guessable" in p for p in found)


def _key_policy(root_actions: list[str]) -> Declared:
    statements = [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": root_actions, "Resource": "*"},
                  {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::1:role/op"]}, "Action": ["kms:GenerateMac"],
                   "Resource": "*"}]  # fmt: skip
    return Declared("aws:kms/keyPolicy:KeyPolicy", "p", {"policy": json.dumps({"Statement": statements})})


@pytest.mark.parametrize(
    ("policies", "problems"),
    [
        ([], 1),  # the default key policy: the account may do anything, IAM decides who signs
        ([_key_policy(["kms:*"])], 1),
        ([_key_policy(["kms:DescribeKey", "kms:GenerateMac"])], 1),
        ([_key_policy(["kms:Gen*"])], 1),
        ([_key_policy(["kms:DescribeKey", "kms:CreateGrant"])], 1),
        ([_key_policy(["kms:DescribeKey", "kms:PutKeyPolicy"])], 0),
    ],
    ids=[
        "no-policy",
        "root-may-do-all",
        "root-may-sign",
        "root-may-sign-by-wildcard",
        "root-may-grant",
        "root-administers",
    ],
)
def test_the_mac_key_rule_catches_a_key_the_account_could_sign_with(
    policies: list[Declared], problems: int
) -> None:
    key = Declared("aws:kms/key:Key", "mac", {"keyUsage": "GENERATE_VERIFY_MAC"})
    assert len(mac_keys_have_their_own_policy([key, *policies])) == problems


def test_the_secret_rule_catches_a_plain_value_and_accepts_a_secret_envelope() -> None:
    rule = no_plaintext_secrets(["s3cr3t"])
    plain = Declared(
        "aws:ecs/taskDefinition:TaskDefinition", "t", {"containerDefinitions": '[{"environment": "s3cr3t"}]'}
    )
    envelope = Declared("aws:secretsmanager/secretVersion:SecretVersion", "v",
                        {"secretString": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "s3cr3t"}})  # fmt: skip
    assert rule([envelope]) == []
    assert rule([plain]) == ["aws:ecs/taskDefinition:TaskDefinition t: a secret value in plain text"]


def test_the_policy_pack_reports_every_violation() -> None:
    resources = [
        SimpleNamespace(resource_type=r.type, name=r.name, props=dict(r.props)) for r in _locked_bucket()
    ]
    resources.append(
        SimpleNamespace(
            resource_type="aws:rds/instance:Instance", name="db", props={"storageEncrypted": False}
        )
    )
    reported: list[str] = []
    validate_stack(SimpleNamespace(resources=resources), reported.append)
    assert len(reported) == 4  # encryption, public access, deletion protection, backups
    assert all(message.startswith("database db:") for message in reported)
