"""The standby manifest: everything a runbook needs, published by the standby stack in SSM Parameter
Store in each standby region (DESIGN.md §2), so runbooks never need Pulumi during a disaster.

Schema-versioned JSON; it holds names, never secret values.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from standby.errors import ConfigError
from standby.names import manifest_parameter, mode_parameter

SCHEMA_VERSION: Final = 1


def parameter_name(app: str) -> str:
    """Where the manifest of `app`'s standby lives in SSM."""
    return manifest_parameter(app)


@dataclass(frozen=True)
class StandbyManifest:
    app: str
    region: str
    backup_bucket: str
    backup_prefix: str = "backups"
    metrics_namespace: str = "Standby"
    # Secrets Manager id of the standby's DATABASE_URL: the value stays there, never in the manifest.
    database_secret: str | None = None
    sanity_sql: tuple[str, ...] = ()  # queries a restore must see return true before it switches
    second_region: str | None = None
    mode_parameter: str = ""
    base_mode: str = "warm"  # the configured mode: what a failback returns the standby to
    lock_table: str | None = None
    topic_arn: str | None = None
    cluster: str | None = None
    services: dict[str, str] = field(default_factory=dict)  # process type -> ECS service name
    backup_task_definition: str | None = None
    subnets: tuple[str, ...] = ()
    task_security_group: str | None = None
    database_instance: str | None = None
    load_balancer_dns: str | None = None
    load_balancer_zone_id: str | None = None
    target_group_arn: str | None = None
    # A drill runs one web task against a scratch copy: its DATABASE_URL goes into this secret (which the
    # task execution role may read) and the task into this target group (reached only with a drill header).
    drill_database_secret: str | None = None
    settings_secret: str | None = None  # Secrets Manager id of the app's config vars on AWS (one JSON)
    ai: dict[str, Any] | None = (
        None  # the AI providers (AiConfig, camelCase): what scripts/switch_ai.py changes
    )
    drill_target_group_arn: str | None = None
    health_url: str | None = None  # set for a standby checked directly over HTTP (the local rehearsal)
    hosted_zone_id: str | None = None
    dns_mode: str = "record"
    records: tuple[dict[str, str], ...] = ()  # {"hostname", "heroku_target"}
    failover_alarm: str | None = None
    failover_metric: str = "PrimaryInService"
    verify_name_servers: bool = True  # ask the zone's name servers after a switch (off where there are none)
    name_servers: tuple[str, ...] = ()  # "host:port" to ask instead of the zone's delegation set
    health_check_path: str = "/health"
    rpo_seconds: int = 900
    rto_seconds: int = 900
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.mode_parameter:
            object.__setattr__(self, "mode_parameter", mode_parameter(self.app))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StandbyManifest:
        try:
            doc: Any = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(
                ["the standby manifest is not JSON. Run `pulumi up -s standby` to rewrite it."]
            ) from None
        if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
            got = doc.get("schema_version") if isinstance(doc, dict) else None
            raise ConfigError(
                [
                    f"standby manifest schema {got!r} is not {SCHEMA_VERSION}: upgrade standby, or run `pulumi up -s standby`."
                ]
            )
        known = set(cls.__dataclass_fields__)
        fields = {k: v for k, v in doc.items() if k in known}
        for name in ("sanity_sql", "subnets", "records", "name_servers"):
            if isinstance(fields.get(name), list):
                fields[name] = tuple(fields[name])
        try:
            return cls(**fields)
        except TypeError as exc:
            raise ConfigError(
                [f"the standby manifest is incomplete ({exc}). Run `pulumi up -s standby`."]
            ) from None


def load_manifest(app: str, region: str | None = None) -> StandbyManifest:
    name = parameter_name(app)
    try:
        answer = boto3.client("ssm", region_name=region).get_parameter(Name=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            raise ConfigError(
                [f"no standby manifest at SSM {name} in {region or 'the default region'}. Run `pulumi up -s standby`, "
                 "or pass --bucket NAME."]
            ) from None  # fmt: skip
        raise ConfigError([f"cannot read the standby manifest {name}: {exc}"]) from None
    except BotoCoreError as exc:
        raise ConfigError([f"cannot read the standby manifest {name}: {exc}"]) from None
    return StandbyManifest.from_json(answer["Parameter"]["Value"])


def read_database_url(manifest: StandbyManifest, region: str | None = None) -> str:
    """The standby's DATABASE_URL, read from the secret the manifest names (never from the manifest)."""
    if not manifest.database_secret:
        raise ConfigError(["the standby manifest names no database secret: pass --target-url."])
    try:
        answer = boto3.client("secretsmanager", region_name=region).get_secret_value(
            SecretId=manifest.database_secret
        )
    except (BotoCoreError, ClientError) as exc:
        raise ConfigError(
            [f"cannot read the standby database secret {manifest.database_secret}: {exc}"]
        ) from None
    return str(answer["SecretString"])
