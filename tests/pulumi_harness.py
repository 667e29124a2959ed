"""Run a Pulumi program in-process under mocks, and read back what it declared.

`pulumi.runtime.set_mocks` is global to the process, so tests install it through the `pulumi_mocks`
fixture (conftest), never at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockCallArgs, MockResourceArgs
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await


@dataclass
class Declared:
    typ: str
    name: str
    inputs: dict[str, Any]
    provider: str = ""  # the provider reference: its URN and id

    @property
    def region_role(self) -> str:
        """Which of the stack's providers declared it: "standby", "second", "global" or ""."""
        for role in ("standby", "second", "global"):
            if f"::aws-{role}::" in self.provider:
                return role
        return ""


# Outputs the real providers compute; the mocks stand in for them so outputs are realistic.
def _computed_outputs(args: MockResourceArgs, stack_outputs: dict[str, Any]) -> dict[str, Any]:
    inputs, typ, name = args.inputs, args.typ, args.name
    computed: dict[str, Any] = {"arn": f"arn:aws:mock:::{typ.split(':')[1]}/{name}"}
    if typ == "pulumi:pulumi:StackReference":
        return {
            "name": inputs.get("name"),
            "outputs": stack_outputs,
            "secretOutputNames": ["secretConfigVars"],
        }
    if typ == "heroku:app/app:App":
        computed |= {
            "uuid": f"uuid-{inputs.get('name')}",
            "webUrl": f"https://{inputs.get('name')}.herokuapp.com/",
        }
    elif typ == "heroku:domain/domain:Domain":
        computed["cname"] = f"{inputs['hostname'].replace('.', '-')}.herokudns.com"
    elif typ == "heroku:addon/addon:Addon":
        computed["name"] = inputs.get("name") or f"postgresql-{name}"
    elif typ == "random:index/randomPassword:RandomPassword":
        computed["result"] = "mock-password-not-for-logs"
    elif typ == "aws:acm/certificate:Certificate":
        domains = [inputs["domainName"], *inputs.get("subjectAlternativeNames", [])]
        computed["domainValidationOptions"] = [
            {"domainName": d, "resourceRecordName": f"_x.{d}.", "resourceRecordType": "CNAME",
             "resourceRecordValue": f"_y.{d}.acm-validations.aws."}
            for d in domains
        ]  # fmt: skip
    elif typ == "aws:lb/loadBalancer:LoadBalancer":
        computed |= {"dnsName": f"{name}.elb.amazonaws.com", "zoneId": "ZALB", "arnSuffix": f"app/{name}/1"}
    elif typ == "aws:lb/targetGroup:TargetGroup":
        computed["arnSuffix"] = f"targetgroup/{name}/1"
    elif typ == "aws:rds/instance:Instance":
        computed |= {
            "address": f"{name}.rds.amazonaws.com",
            "port": 5432,
            "endpoint": f"{name}.rds.amazonaws.com:5432",
        }
    elif typ == "aws:s3/bucket:Bucket":
        bucket = _bucket_name(args)
        computed |= {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}"}
    elif typ == "aws:route53/record:Record":
        computed["fqdn"] = inputs.get("name")
    return computed


def _bucket_name(args: MockResourceArgs) -> str:
    return str(args.inputs.get("bucket") or f"{args.inputs.get('bucketPrefix', '')}{args.name}")


def _call_result(args: MockCallArgs, ssm_parameters: dict[str, str]) -> dict[str, Any]:
    token, inputs = args.token, args.args
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        return {"names": ["zone-a", "zone-b", "zone-c"], "zoneIds": ["z1", "z2", "z3"], "id": "zones"}
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {
            "accountId": "123456789012",
            "arn": "arn:aws:iam::123456789012:user/ci",
            "userId": "AIDA",
            "id": "1",
        }
    if token == "aws:route53/getZone:getZone":
        return {"zoneId": "ZONE123", "name": inputs.get("name"), "id": "ZONE123"}
    if token == "aws:ssm/getParametersByPath:getParametersByPath":
        found = {k: v for k, v in ssm_parameters.items() if k.startswith(str(inputs.get("path")))}
        return {"names": list(found), "values": list(found.values()), "arns": [], "types": [], "id": "p"}
    return {}


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    declared: list[Declared] = field(default_factory=list)
    stack_outputs: dict[str, Any] = field(default_factory=dict)  # what a StackReference reads
    ssm_parameters: dict[str, str] = field(default_factory=dict)  # what the live-mode lookup finds
    providers: dict[str, str] = field(default_factory=dict)  # provider URN suffix -> region

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.declared.append(Declared(args.typ, args.name, dict(args.inputs), args.provider or ""))
        # A bucket's id is its name, as AWS has it (the manifest names the bucket by its id).
        resource_id = _bucket_name(args) if args.typ == "aws:s3/bucket:Bucket" else f"{args.name}-id"
        return resource_id, {**args.inputs, **_computed_outputs(args, self.stack_outputs)}

    def call(self, args: MockCallArgs) -> dict[str, Any]:
        return _call_result(args, self.ssm_parameters)

    def of_type(self, typ: str) -> list[Declared]:
        return [d for d in self.declared if d.typ == typ]

    def named(self, name: str) -> Declared:
        return next(d for d in self.declared if d.name == name)


OPTIONS: dict[str, pulumi.ResourceOptions] = {}  # resource name -> its options, from the last run_program


def _record_options(args: pulumi.ResourceTransformationArgs) -> None:
    """The mocks see inputs only; a stack transformation sees each resource's options (protect, ...)."""
    OPTIONS[args.name] = args.opts
    return None


def run_program(program: Callable[[], Any]) -> Any:
    """Run `program` as the Pulumi engine would, and wait until every resource is registered."""
    result: dict[str, Any] = {}
    OPTIONS.clear()

    def body() -> None:
        pulumi.runtime.register_stack_transformation(_record_options)
        result["value"] = program()

    _sync_await(run_pulumi_func(body))
    return result.get("value")


def resolve(value: Any) -> tuple[Any, bool]:
    """The plain value of an Output (or any input) and whether it is secret."""
    output = pulumi.Output.from_input(value)
    return _sync_await(output.future()), bool(_sync_await(output.is_secret()))


def is_secret(value: Any) -> bool:
    """Whether a mock input arrived as a Pulumi secret envelope."""
    sig = pulumi.runtime.rpc._special_sig_key
    return isinstance(value, dict) and value.get(sig) == pulumi.runtime.rpc._special_secret_sig


def unwrap(value: Any) -> Any:
    """The value inside a secret envelope (or the value itself)."""
    return value["value"] if is_secret(value) else value
