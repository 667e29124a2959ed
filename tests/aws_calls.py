"""Every AWS call the code under test makes, as the IAM request it is: action, resource, context keys.

Tests record what a runbook or the backup really calls (`record_calls`) and evaluate it against the
policy that would run it (`standby.aws.access`): a role that misses an action the code needs fails the
test, not the first disaster. Calls the stand-ins make (`standby/local/`, the tests' world) are not
the production code's and are left out.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import botocore.client
import pytest

from standby.aws import duties
from standby.aws.access import Request, allows
from standby.aws.duties import OperatorRegion
from standby.standby_manifest import StandbyManifest

ACCOUNT = "123456789012"  # moto's
_PREFIX = {"elbv2": "elasticloadbalancing", "monitoring": "cloudwatch"}
_S3_ACTION = {
    "ListObjectsV2": "ListBucket",
    "HeadObject": "GetObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
}


def _ours() -> bool:
    """Whether the code that made the call (the nearest frame outside boto) is production code."""
    frame = sys._getframe(2)
    while frame is not None and (
        "/botocore/" in frame.f_code.co_filename or "/boto3/" in frame.f_code.co_filename
    ):
        frame = frame.f_back  # type: ignore[assignment]
    name = frame.f_code.co_filename if frame is not None else ""
    return "/src/standby/" in name and "/standby/local/" not in name


def _arn(service: str, region: str, resource: str) -> str:
    return resource if resource.startswith("arn:") else f"arn:aws:{service}:{region}:{ACCOUNT}:{resource}"


def as_request(service: str, operation: str, params: dict[str, Any], region: str) -> list[Request]:
    """The IAM requests one API call is (ssm:GetParameters is one per name)."""
    action = f"{_PREFIX.get(service, service)}:{_S3_ACTION.get(operation, operation) if service == 's3' else operation}"
    if service == "s3":
        bucket = f"arn:aws:s3:::{params['Bucket']}"
        if "Key" in params:
            return [Request(action, f"{bucket}/{params['Key']}")]
        return [Request(action, bucket, {"s3:prefix": params.get("Prefix", "")})]
    if service == "dynamodb":
        # The item's partition key is the request's dynamodb:LeadingKeys (the lock table's is `lock`).
        key = params.get("Key") or {k: v for k, v in params.get("Item", {}).items() if k == "lock"}
        key = {k: next(iter(v.values())) for k, v in key.items()}
        leading = {"dynamodb:LeadingKeys": next(iter(key.values()))} if len(key) == 1 else {}
        return [Request(action, _arn("dynamodb", region, f"table/{params['TableName']}"), leading)]
    if service == "ssm":
        names = params.get("Names") or [params.get("Name") or params.get("Path")]
        return [Request(action, _arn("ssm", region, f"parameter{n}")) for n in names]
    if service == "secretsmanager":
        return [Request(action, params["SecretId"])]
    if service == "kms":
        return [Request(action, params["KeyId"])]
    if service == "sns":
        return [Request(action, params["TopicArn"])]
    if service == "route53":
        zone = params.get("HostedZoneId", params.get("Id", "*")).removeprefix("/hostedzone/")
        return [Request(action, f"arn:aws:route53:::hostedzone/{zone}")]
    if service == "cloudwatch":
        if operation == "PutMetricData":
            return [Request(action, "*", {"cloudwatch:namespace": params["Namespace"]})]
        if operation == "SetAlarmState":
            return [Request(action, _arn("cloudwatch", region, f"alarm:{params['AlarmName']}"))]
        return [Request(action, "*", {"aws:RequestedRegion": region})]
    if service == "ecs":
        cluster = _arn("ecs", region, f"cluster/{params.get('cluster', 'default')}")
        if operation in ("UpdateService", "DescribeServices"):
            names = params.get("services") or [params["service"]]
            return [Request(action, _arn("ecs", region, f"service/{params['cluster']}/{n}")) for n in names]
        if operation in ("RunTask", "StartTask"):
            return [Request(action, params["taskDefinition"], {"ecs:cluster": cluster})]
        if operation in ("StopTask", "DescribeTasks"):
            tasks = params.get("tasks") or [params["task"]]
            return [Request(action, t, {"ecs:cluster": cluster}) for t in tasks]
        if operation == "ListTasks":
            return [Request(action, "*", {"ecs:cluster": cluster})]
        return [Request(action, "*", {"aws:RequestedRegion": region})]  # task definitions: no resource
    if service == "elbv2":
        if operation.startswith("Describe"):  # no resource-level permissions
            return [Request(action, "*", {"aws:RequestedRegion": region})]
        if "TargetGroupArn" in params:
            return [Request(action, params["TargetGroupArn"])]
        if "RuleArn" in params:
            return [Request(action, params["RuleArn"])]
        return [Request(action, "*", {"aws:RequestedRegion": region})]
    if service == "rds":
        instance = params.get("DBInstanceIdentifier", "*")
        return [Request(action, _arn("rds", region, f"db:{instance}"))]
    raise AssertionError(f"tests/aws_calls.py does not know how IAM sees {service}:{operation}; add it")


def refused(statements: list[dict[str, Any]], calls: list[Request]) -> list[Request]:
    """The calls these statements do not allow (each once); the block must have made some."""
    assert calls, "the code under test made no AWS call: the recorder saw nothing"
    return list({str(c): c for c in calls if not allows(statements, c)}.values())


def operator_refusals(manifest: StandbyManifest, calls: list[Request]) -> list[Request]:
    """What the operator role (declared from this manifest) would refuse of the runbooks' calls."""
    statements = duties.operator([OperatorRegion(manifest, "arn:aws:kms:::key/bucket", [])], ACCOUNT)
    # It fits where the stack puts it: one managed policy per region (6,144 characters at most).
    assert len(json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))) < 6144
    return refused(statements, calls)


@contextmanager
def record_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Request]]:
    """The IAM requests of every AWS call the production code makes inside the block."""
    seen: list[Request] = []
    original = botocore.client.BaseClient._make_api_call
    # Threads an earlier test left behind (a lease's heartbeat after a simulated crash) are not this block's.
    earlier = set(threading.enumerate()) - {threading.current_thread()}

    def recording(client: Any, operation: str, params: dict[str, Any]) -> Any:
        if threading.current_thread() not in earlier and _ours():
            meta = client.meta
            seen.extend(as_request(meta.service_model.service_name, operation, params, meta.region_name))
        return original(client, operation, params)

    with monkeypatch.context() as patch:
        patch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
        yield seen
