"""IAM policy documents, built as plain data so tests and the policy pack can read them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi


def assume_role(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def document(statements: Sequence[dict[str, Any]]) -> pulumi.Output[str]:
    """A policy document whose resources may be Outputs (ARNs of resources not created yet)."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: Sequence[str], resources: Sequence[pulumi.Input[str]], **condition: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": list(actions), "Resource": list(resources)}
    if condition:
        statement["Condition"] = condition
    return statement
