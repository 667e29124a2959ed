"""The standby's security rules, as pure functions over the resources a program declares.

Each rule takes the declared resources (type token, name, input properties as the engine sees them) and
returns one message per violation. The tests run them on the standby program under mocks, and on
fixtures that break each rule; `policy/` runs the same rules as a Pulumi policy pack
(`pulumi preview --policy-pack policy`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from standby.aws.access import Request, allows, statements_of
from standby.names import DRILL_HEADER, METRICS_NAMESPACE

SECRET_SIG_KEY: Final = "4dabf18193072939515e22adb298388d"  # how the engine marks a secret value
BACKUP_WRITER: Final = "backup-writer"  # the backup task's inline policy (standby.aws.duties)
READINESS_READER: Final = "readiness-reader"  # the status task's: it checks, so it writes nothing
# What a reader must never do to anything its policy names: write, sign, or announce.
WRITES: Final = ("s3:PutObject", "s3:DeleteObject", "ssm:PutParameter", "ssm:DeleteParameter", "dynamodb:PutItem",
                 "dynamodb:UpdateItem", "dynamodb:DeleteItem", "kms:GenerateMac", "secretsmanager:PutSecretValue",
                 "sns:Publish")  # fmt: skip


@dataclass(frozen=True)
class Declared:
    type: str
    name: str
    props: Mapping[str, Any]


Rule = Callable[[list[Declared]], list[str]]


def _of(resources: Iterable[Declared], type_token: str) -> list[Declared]:
    return [r for r in resources if r.type == type_token]


def _unwrap(value: Any) -> Any:
    return value.get("value") if isinstance(value, Mapping) and SECRET_SIG_KEY in value else value


def _companions(
    resources: list[Declared], type_token: str, valid: Callable[[Mapping[str, Any]], bool]
) -> int:
    return sum(1 for r in _of(resources, type_token) if valid(r.props))


def buckets_are_locked_down(resources: list[Declared]) -> list[str]:
    """Every bucket: object lock on, versioned, KMS-encrypted, public access blocked, TLS only, retention."""
    buckets = _of(resources, "aws:s3/bucket:Bucket")
    problems = [
        f"bucket {b.name}: object lock must be enabled at creation"
        for b in buckets
        if b.props.get("objectLockEnabled") is not True
    ]

    def kms(props: Mapping[str, Any]) -> bool:
        rules = props.get("rules") or []
        return bool(rules) and all(
            (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm") == "aws:kms"
            for rule in rules
        )

    def private(props: Mapping[str, Any]) -> bool:
        flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        return all(props.get(flag) is True for flag in flags)

    def tls_only(props: Mapping[str, Any]) -> bool:
        try:
            statements = json.loads(_unwrap(props.get("policy")) or "{}").get("Statement", [])
        except (TypeError, ValueError):
            return False
        return any(
            s.get("Effect") == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            for s in statements
        )

    def versioned(props: Mapping[str, Any]) -> bool:
        return (props.get("versioningConfiguration") or {}).get("status") == "Enabled"

    def retained(props: Mapping[str, Any]) -> bool:
        retention = (props.get("rule") or {}).get("defaultRetention") or {}
        return bool(retention.get("days") or retention.get("years"))

    checks = [
        ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", kms, "KMS encryption"),
        ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", private, "a full public access block"),
        ("aws:s3/bucketPolicy:BucketPolicy", tls_only, "a policy denying non-TLS requests"),
        ("aws:s3/bucketVersioning:BucketVersioning", versioned, "versioning"),
        ("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", retained, "a default lock retention"),
    ]  # fmt: skip
    for type_token, valid, what in checks:
        found = _companions(resources, type_token, valid)
        if found < len(buckets):
            problems.append(f"{len(buckets) - found} of {len(buckets)} buckets lack {what}")
    return problems


def databases_are_private_and_kept(resources: list[Declared]) -> list[str]:
    problems = []
    for db in _of(resources, "aws:rds/instance:Instance"):
        p = db.props
        if p.get("storageEncrypted") is not True:
            problems.append(f"database {db.name}: storage must be encrypted")
        if p.get("publiclyAccessible") is not False:
            problems.append(f"database {db.name}: must not be publicly accessible")
        if p.get("deletionProtection") is not True:
            problems.append(f"database {db.name}: deletion protection must be on")
        if not isinstance(p.get("backupRetentionPeriod"), int | float) or p["backupRetentionPeriod"] < 1:
            problems.append(
                f"database {db.name}: automated backups must be kept (backupRetentionPeriod >= 1)"
            )
    return problems


def policies_grant_no_wildcard_actions(resources: list[Declared]) -> list[str]:
    """No `*` or `service:*` action anywhere; `Resource: *` only under a condition."""
    problems = []
    for policy in _of(resources, "aws:iam/rolePolicy:RolePolicy"):
        try:
            statements = json.loads(_unwrap(policy.props.get("policy")) or "{}").get("Statement", [])
        except (TypeError, ValueError):
            problems.append(f"policy {policy.name}: not a JSON policy document")
            continue
        for statement in statements if isinstance(statements, list) else [statements]:
            if statement.get("Effect") != "Allow":
                continue
            actions = statement.get("Action", [])
            for action in [actions] if isinstance(actions, str) else actions:
                if action == "*" or action.endswith(":*"):
                    problems.append(f"policy {policy.name}: wildcard action {action!r}")
            resources_ = statement.get("Resource", [])
            if (
                "*" in ([resources_] if isinstance(resources_, str) else resources_)
                and "Condition" not in statement
            ):
                problems.append(f"policy {policy.name}: Resource '*' without a condition")
    return problems


def no_plaintext_secrets(secret_values: Iterable[str]) -> Rule:
    """A rule: none of these values appears in any input, except inside a secret envelope."""
    secrets = [s for s in secret_values if s]

    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, Mapping):
            if SECRET_SIG_KEY in value:
                return  # a secret: encrypted in state
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list | tuple):
            for item in value:
                yield from strings(item)
        elif isinstance(value, str):
            yield value

    def rule(resources: list[Declared]) -> list[str]:
        problems = []
        for resource in resources:
            for text in strings(dict(resource.props)):
                if any(secret in text for secret in secrets):
                    problems.append(f"{resource.type} {resource.name}: a secret value in plain text")
                    break
        return problems

    return rule


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value or [])


def _policy_statements(policy: Declared) -> list[Mapping[str, Any]] | None:
    try:
        return statements_of([_unwrap(policy.props.get("policy")) or "{}"])
    except (TypeError, ValueError):
        return None


def only_the_operator_steers_a_recovery(resources: list[Declared]) -> list[str]:
    """No task role may write a runbook journal, the live mode or the failover metric (the operator's
    managed policy may), the backup writer reads no dump and writes only under its backup prefix, and
    the readiness reader writes nothing."""
    apps = {
        str(p.props.get("name", "")).split("/")[2]
        for p in _of(resources, "aws:ssm/parameter:Parameter")
        if re.fullmatch(r"/standby/[^/]+/mode", str(p.props.get("name", "")))
    }
    problems = []
    for policy in _of(resources, "aws:iam/rolePolicy:RolePolicy"):
        statements = _policy_statements(policy)
        if not statements:
            continue
        # The requests name the buckets and parameter places the policy itself names.
        named = [str(r) for s in statements for r in _listed(s.get("Resource", []))]
        buckets = {r.split("/", 1)[0] for r in named if r.startswith("arn:aws:s3:::")}
        places = {tuple(r.split(":")[3:5]) for r in named if r.startswith("arn:aws:ssm:")}
        places = places or {("us-east-1", "0" * 12)}
        for app in apps:
            forbidden = {
                "write a runbook journal": [Request("s3:PutObject", f"{b}/runbooks/{app}/cutover/current.json") for b in buckets],
                "set the live mode": [Request("ssm:PutParameter", f"arn:aws:ssm:{r}:{a}:parameter/standby/{app}/mode") for r, a in places],
                "publish the failover metric": [Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": METRICS_NAMESPACE})],
            }  # fmt: skip
            name = policy.props.get("name")
            if name in (BACKUP_WRITER, READINESS_READER):
                forbidden["read a backup's dump"] = [
                    Request("s3:GetObject", f"{b}/backups/{app}/20260101T000000Z-abcdef/dump")
                    for b in buckets
                ]
            if name == BACKUP_WRITER:
                forbidden["write outside its backup prefix"] = [Request("s3:PutObject", f"{b}/elsewhere/{app}.json") for b in buckets]  # fmt: skip
            if name == READINESS_READER:
                # Everything it names, as named (a wildcard matches itself) and in each region it names.
                targets = [
                    *named,
                    *(f"{b}/backups/{app}/20260101T000000Z-abcdef/manifest.json" for b in buckets),
                ]
                forbidden["write what it reads"] = [Request(a, t, {"aws:RequestedRegion": r}) for a in WRITES
                                                    for t in targets for r, _ in places]  # fmt: skip
            for what, requests in forbidden.items():
                if any(allows(statements, r) for r in requests):
                    problems.append(f"policy {policy.name}: a task role may {what}")
    return problems


def drill_route_is_unguessable(resources: list[Declared]) -> list[str]:
    """The drill header's value (which reaches production data) is a secret, never plain text such as
    the app's name."""
    problems = []
    for rule in _of(resources, "aws:lb/listenerRule:ListenerRule"):
        conditions = rule.props.get("conditions")
        if isinstance(conditions, Mapping) and SECRET_SIG_KEY in conditions:
            continue  # secret as a whole
        for condition in conditions or []:
            header = condition.get("httpHeader") or {}
            if header.get("httpHeaderName") == DRILL_HEADER and any(
                not (isinstance(v, Mapping) and SECRET_SIG_KEY in v) for v in header.get("values", [])
            ):
                problems.append(
                    f"listener rule {rule.name}: the {DRILL_HEADER} value is plain text, so guessable"
                )
    return problems


def mac_keys_have_their_own_policy(resources: list[Declared]) -> list[str]:
    """Each MAC key (and replica) has a key policy in which the account administers but cannot sign."""
    keys = [k for k in _of(resources, "aws:kms/key:Key") if k.props.get("keyUsage") == "GENERATE_VERIFY_MAC"]
    keys += _of(resources, "aws:kms/replicaKey:ReplicaKey")

    def own(props: Mapping[str, Any]) -> bool:
        try:
            statements = json.loads(_unwrap(props.get("policy")) or "{}").get("Statement", [])
        except (TypeError, ValueError):
            return False
        root = [
            {k: v for k, v in s.items() if k != "Principal"}
            for s in statements
            if any(
                str(p).endswith(":root") or p == "*"
                for p in _listed((s.get("Principal") or {}).get("AWS", []))
            )
        ]
        # Evaluated, not pattern-matched: kms:Gen*, a lowercase action or a grant are the same right.
        dangerous = ("kms:GenerateMac", "kms:VerifyMac", "kms:CreateGrant", "kms:ReplicateKey")
        return bool(statements) and not any(allows(root, Request(a, "*")) for a in dangerous)

    found = _companions(resources, "aws:kms/keyPolicy:KeyPolicy", own)
    if found < len(keys):
        return [
            f"{len(keys) - found} of {len(keys)} MAC keys lack a key policy that keeps the account from signing"
        ]
    return []


RULES: Final[dict[str, Rule]] = {
    "buckets-locked-down": buckets_are_locked_down,
    "databases-private-and-kept": databases_are_private_and_kept,
    "no-wildcard-actions": policies_grant_no_wildcard_actions,
    "only-the-operator-steers": only_the_operator_steers_a_recovery,
    "drill-route-unguessable": drill_route_is_unguessable,
    "mac-keys-have-their-own-policy": mac_keys_have_their_own_policy,
}


def validate_stack(args: Any, report_violation: Callable[..., None]) -> None:
    """The policy pack's stack validation: every rule above, over `args.resources` (pulumi_policy's)."""
    resources = [Declared(r.resource_type, r.name, dict(r.props or {})) for r in args.resources]
    for rule in RULES.values():
        for message in rule(resources):
            report_violation(message)
