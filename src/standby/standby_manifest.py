"""The standby manifest: everything a runbook needs, published by the standby stack in SSM Parameter
Store in each standby region, so runbooks never need Pulumi during a disaster (docs/standby-stack.md,
"The standby manifest").

Schema-versioned JSON; it holds names, never secret values.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from botocore.exceptions import ClientError

from standby import aws_clients
from standby.aws_errors import AWS_ERRORS, aws_failure, error_code
from standby.errors import ConfigError
from standby.names import (
    BACKUP_PREFIX,
    FAILOVER_METRIC,
    METRICS_NAMESPACE,
    lock_table,
    manifest_parameter,
    mode_parameter,
)
from standby.vocabulary import DnsMode, Mode

SCHEMA_VERSION: Final = 1


def parameter_name(app: str) -> str:
    """Where the manifest of `app`'s standby lives in SSM."""
    return manifest_parameter(app)


@dataclass(frozen=True)
class StandbyManifest:
    app: str
    region: str
    backup_bucket: str
    backup_prefix: str = BACKUP_PREFIX
    metrics_namespace: str = METRICS_NAMESPACE
    # Secrets Manager id of the standby's DATABASE_URL: the value stays there, never in the manifest. It
    # connects as the master user: the runbooks' and the restores'. The app's tasks get the app's URL
    # (`app_database_secret`), which connects as the application role that owns the data.
    database_secret: str | None = None
    app_database_secret: str | None = None
    sanity_sql: tuple[str, ...] = ()  # queries a restore must see return true before it switches
    second_region: str | None = None
    mode_parameter: str = ""
    base_mode: Mode = Mode.WARM  # the configured mode: what a failback returns the standby to
    lock_table: str = ""
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
    # Heroku's DATABASE_URL as the newest backup used it (the backup task keeps it there): with Heroku's
    # API dark, the cutover still reaches the database to fence it and take the final backup.
    primary_database_secret: str | None = None
    # The KMS HMAC key backup manifests are signed with (standby.integrity): readers refuse unsigned ones.
    backup_mac_key: str | None = None
    # The KMS HMAC key runbook journals are signed with; only the operator's role may use it.
    runbook_mac_key: str | None = None
    ai: dict[str, Any] | None = (
        None  # the AI providers (AiConfig, camelCase): what scripts/switch_ai.py changes
    )
    drill_target_group_arn: str | None = None
    drill_rule_arn: str | None = (
        None  # the listener rule that forwards the drill header; drills set its value
    )
    hosted_zone_id: str | None = None
    dns_mode: DnsMode = DnsMode.RECORD
    records: tuple[dict[str, str], ...] = ()  # {"hostname", "heroku_target"}
    failover_alarm: str | None = None
    failover_metric: str = FAILOVER_METRIC
    health_check_path: str = "/health"
    rpo_seconds: int = 900
    rto_seconds: int = 900
    # What the standby was built from at the last `pulumi up`, for scripts/status.py to compare with Heroku
    # now: the primary's formation ({type: {"quantity", "size"}}), the config var names the app gets on
    # AWS (the overrides among them), the image its services run, the database's major version.
    primary_formation: dict[str, dict[str, Any]] = field(default_factory=dict)
    setting_names: tuple[str, ...] = ()
    override_names: tuple[str, ...] = ()
    image: str | None = None
    postgres_version: int | None = None
    backup_interval_seconds: int = 900
    drill_interval_days: int = 30  # a drill older than this is overdue
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.mode_parameter:
            object.__setattr__(self, "mode_parameter", mode_parameter(self.app))
        if not self.lock_table:
            object.__setattr__(self, "lock_table", lock_table(self.app))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StandbyManifest:
        """Parse a manifest; refuses another schema version, unknown or missing keys, and wrong types."""
        rerun = "Run `pulumi up -s standby` with this version of standby to rewrite it."
        upgrade = "Upgrade standby to the version that wrote it, or run `pulumi up -s standby` with this one."
        try:
            doc: Any = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError([f"the standby manifest is not JSON. {rerun}"]) from None
        if not isinstance(doc, dict):
            raise ConfigError([f"the standby manifest is not a JSON object. {rerun}"])
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise ConfigError(
                [f"the standby manifest has schema {doc.get('schema_version')!r}; this version of standby reads "
                 f"schema {SCHEMA_VERSION}. {upgrade}"]
            )  # fmt: skip
        unknown = sorted(set(doc) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(
                [f"the standby manifest has keys this version of standby does not know: {', '.join(unknown)}. "
                 f"{upgrade}"]
            )  # fmt: skip
        fields = dict(doc)
        for name in ("sanity_sql", "subnets", "records", "setting_names", "override_names"):
            if isinstance(fields.get(name), list):
                fields[name] = tuple(fields[name])
        try:
            if "base_mode" in fields:
                fields["base_mode"] = Mode(fields["base_mode"])
            if "dns_mode" in fields:
                fields["dns_mode"] = DnsMode(fields["dns_mode"])
            return cls(**fields)
        except (TypeError, ValueError) as exc:
            raise ConfigError([f"the standby manifest is invalid ({exc}). {rerun}"]) from None


def load_manifest(app: str, region: str | None = None) -> StandbyManifest:
    name = parameter_name(app)
    try:
        answer = aws_clients.client("ssm", region).get_parameter(Name=name)
    except AWS_ERRORS as exc:
        if isinstance(exc, ClientError) and error_code(exc) == "ParameterNotFound":
            raise ConfigError(
                [f"no standby manifest at SSM {name} in {region or 'the default region'}. Run `pulumi up -s standby`, "
                 "or pass --bucket NAME."]
            ) from None  # fmt: skip
        raise aws_failure(exc, f"reading the standby manifest {name}") from None
    return StandbyManifest.from_json(answer["Parameter"]["Value"])


def read_database_url(manifest: StandbyManifest, region: str | None = None) -> str:
    """The standby's DATABASE_URL, read from the secret the manifest names (never from the manifest)."""
    if not manifest.database_secret:
        raise ConfigError(["the standby manifest names no database secret: pass --target-url."])
    try:
        answer = aws_clients.client("secretsmanager", region).get_secret_value(
            SecretId=manifest.database_secret
        )
    except AWS_ERRORS as exc:
        raise aws_failure(exc, f"reading the standby database secret {manifest.database_secret}") from None
    return str(answer["SecretString"])
