"""Typed stack configuration: one model per stack role.

Keys are the camelCase names a user writes in `Pulumi.<stack>.yaml` under the `standby:` namespace.
Validators never call a cloud API: they check shape, vocabulary and ranges, so the same checks run in
`pulumi up`, in `scripts/check_config.py` and in the tests.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)
from pydantic.alias_generators import to_camel

from standby import sizing
from standby.errors import SizingError
from standby.vocabulary import AiProvider, DnsMode, Mode

# --- vocabularies ----------------------------------------------------------------------------------


# Heroku Common Runtime regions and Private Space regions (`heroku regions`).
HEROKU_REGIONS: Final = (
    "us", "eu", "dublin", "frankfurt", "london", "montreal", "mumbai", "oregon", "singapore",
    "sydney", "tokyo", "virginia",
)  # fmt: skip
HEROKU_STACKS: Final = ("heroku-22", "heroku-24", "container")
POSTGRES_MAJOR_VERSIONS: Final = (14, 15, 16, 17, 18)

# AWS commercial regions with RDS PostgreSQL, ECS Fargate and Route 53 health checks.
AWS_REGIONS: Final = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "ca-west-1", "sa-east-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1",
    "eu-south-2", "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
    "ap-southeast-4", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-east-1",
    "me-south-1", "me-central-1", "il-central-1", "af-south-1",
)  # fmt: skip

# Set by Heroku itself (add-ons and dyno metadata); declaring them would fight the platform.
PLATFORM_MANAGED_VARS: Final = frozenset({"DATABASE_URL", "PORT", "DYNO"})


def _one_of(allowed: tuple[Any, ...]) -> Any:
    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}. Got {value!r}.")
        return value

    return AfterValidator(check)


def _pattern(regex: str, meaning: str) -> Any:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be {meaning}. Got {value!r}.")
        return value

    return AfterValidator(check)


def _scalar_to_str(value: Any) -> Any:
    # YAML and JSON hand us numbers and booleans; config vars are always strings on Heroku.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _canonical_dyno_size(value: str) -> str:
    try:
        return sizing.dyno_size(value).name
    except SizingError as exc:
        raise ValueError(exc.problems[0]) from None


def _canonical_postgres_plan(value: str) -> str:
    try:
        return sizing.postgres_plan(value).name
    except SizingError as exc:
        raise ValueError(exc.problems[0]) from None


EnvName = Annotated[str, _pattern(r"[A-Z_][A-Z0-9_]*", "an environment variable name (A-Z, 0-9, _)")]
ConfigValue = Annotated[str, BeforeValidator(_scalar_to_str)]
ProcessType = Annotated[
    str, _pattern(r"[a-z][a-z0-9_-]{0,29}", "a Procfile process type (a-z, 0-9, _ and -)")
]
Hostname = Annotated[
    str,
    _pattern(
        r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
        "a lower-case DNS name such as www.example.com",
    ),
]
DynoSizeName = Annotated[str, AfterValidator(_canonical_dyno_size)]
PostgresPlanName = Annotated[str, AfterValidator(_canonical_postgres_plan)]
AwsRegion = Annotated[str, _one_of(AWS_REGIONS)]


class ConfigModel(BaseModel):
    """Strict base: unknown keys are errors, keys are camelCase as in the stack files."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, frozen=True)


# --- primary ---------------------------------------------------------------------------------------


class AppConfig(ConfigModel):
    name: Annotated[str, _pattern(r"[a-z][a-z0-9-]{1,28}[a-z0-9]", "a Heroku app name (3-30 of a-z, 0-9, -)")]
    region: Annotated[str, _one_of(HEROKU_REGIONS)] = "us"
    stack: Annotated[str, _one_of(HEROKU_STACKS)] = "heroku-24"
    team: str | None = None


class ProcessConfig(ConfigModel):
    quantity: int = Field(ge=0, le=100)
    size: DynoSizeName


class PostgresConfig(ConfigModel):
    plan: PostgresPlanName
    version: Annotated[int, _one_of(POSTGRES_MAJOR_VERSIONS)]
    follower: PostgresPlanName | None = None

    @model_validator(mode="after")
    def _followers_need_a_production_leader(self) -> PostgresConfig:
        if self.follower is not None and sizing.postgres_plan(self.plan).tier == "essential":
            raise ValueError(
                f"follower: essential plans cannot have followers. Got plan {self.plan!r}; "
                "choose a standard, premium, private or shield plan, or remove the follower."
            )
        return self


class AiProviderConfig(ConfigModel):
    key_var: EnvName  # the secret config var holding this provider's API key
    # The SDK's default if unset. https: the key travels with every request (http only to this machine).
    base_url: (
        Annotated[
            str,
            _pattern(r"(https://|http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/|$))\S*", "an https:// URL"),
        ]
        | None
    ) = None


class AiConfig(ConfigModel):
    """The app's AI providers: the settings the app reads, and their value under each provider."""

    active: AiProvider = AiProvider.OPENAI  # the provider the settings start with
    provider_setting: EnvName = "AI_PROVIDER"
    providers: dict[AiProvider, AiProviderConfig]
    models: dict[
        EnvName, dict[AiProvider, Annotated[str, Field(min_length=1)]]
    ] = {}  # setting -> provider -> model

    @model_validator(mode="after")
    def _every_provider_everywhere(self) -> AiConfig:
        missing = [p.value for p in AiProvider if p not in self.providers]
        if missing:
            raise ValueError(
                f"providers: {', '.join(missing)} missing; a switch needs both providers configured."
            )
        for setting, models in self.models.items():
            absent = [p.value for p in AiProvider if p not in models]
            if absent:
                raise ValueError(
                    f"models.{setting}: no model for {', '.join(absent)}; name the model that replaces it."
                )
        if self.provider_setting in self.models:
            raise ValueError(f"models: {self.provider_setting} is the provider setting, not a model setting.")
        return self

    def settings(self, provider: AiProvider | str) -> dict[str, str]:
        """The app-facing settings under `provider`."""
        chosen = AiProvider(provider)
        return {self.provider_setting: chosen.value} | {name: m[chosen] for name, m in self.models.items()}


class PrimaryConfig(ConfigModel):
    """`Pulumi.primary.yaml`: the Heroku app as it runs today."""

    role: Literal["primary"]
    app: AppConfig
    formation: dict[ProcessType, ProcessConfig] = Field(min_length=1)
    postgres: PostgresConfig
    domains: list[Hostname] = []
    config_vars: dict[EnvName, ConfigValue] = {}
    secret_config_vars: dict[EnvName, SecretStr] = {}
    ai: AiConfig | None = None
    # Where the standby's live mode is recorded: `pulumi up -s primary` keeps Heroku fenced while a
    # standby region serves the app. Empty: this stack cannot see a cutover (a warning says so).
    standby_regions: list[AwsRegion] = []

    @model_validator(mode="after")
    def _ai_keys_are_secret_and_settings_ours(self) -> PrimaryConfig:
        if self.ai is None:
            return self
        for provider, settings in self.ai.providers.items():
            if settings.key_var not in self.secret_config_vars:
                raise ValueError(
                    f"ai.providers.{provider.value}.keyVar: {settings.key_var} must be a secret config var. Set it "
                    f"with `pulumi config set --secret --path 'standby:secretConfigVars.{settings.key_var}' <key>`."
                )
        taken = sorted(
            set(self.ai.settings(self.ai.active)) & (set(self.config_vars) | set(self.secret_config_vars))
        )
        if taken:
            raise ValueError(
                f"ai: {', '.join(taken)} is set by the AI provider switch; remove it from configVars/secretConfigVars."
            )
        return self

    @model_validator(mode="after")
    def _vars_are_ours_to_set(self) -> PrimaryConfig:
        overlap = sorted(set(self.config_vars) & set(self.secret_config_vars))
        if overlap:
            raise ValueError(
                f"configVars and secretConfigVars both set {', '.join(overlap)}; keep each name in one of them."
            )
        managed = sorted(PLATFORM_MANAGED_VARS & (set(self.config_vars) | set(self.secret_config_vars)))
        if managed:
            raise ValueError(
                f"{', '.join(managed)} is set by Heroku itself (add-ons and dyno metadata); remove it from the "
                "stack config."
            )
        if len(set(self.domains)) != len(self.domains):
            raise ValueError("domains lists a hostname twice; list each once.")
        return self


# --- standby ---------------------------------------------------------------------------------------


class RegionsConfig(ConfigModel):
    standby: AwsRegion
    second: AwsRegion

    @model_validator(mode="after")
    def _two_different_regions(self) -> RegionsConfig:
        if self.standby == self.second:
            raise ValueError(
                f"second must differ from standby: a second region in the same place survives nothing. "
                f"Got {self.second!r} for both."
            )
        return self


class FargateSizeConfig(ConfigModel):
    cpu: int
    memory: int

    @model_validator(mode="after")
    def _valid_pair(self) -> FargateSizeConfig:
        if not sizing.is_valid_fargate_size(sizing.FargateSize(self.cpu, self.memory)):
            ranges = "; ".join(
                f"cpu {cpu}: memory {low}-{high}"
                for cpu, (low, high, _) in sizing.FARGATE_MEMORY_RANGES.items()
            )
            raise ValueError(
                f"not a Fargate CPU/memory pair. Valid pairs: {ranges}. Got cpu {self.cpu}, memory {self.memory}."
            )
        return self


class StandbyConfig(ConfigModel):
    """`Pulumi.standby.yaml`: the AWS mirror of the primary, in a standby and a second region."""

    role: Literal["standby"]
    primary_stack: Annotated[
        str, _pattern(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,2}", "a stack name such as acme/standby/primary")
    ]
    regions: RegionsConfig
    mode: Mode = Mode.WARM
    image: Annotated[
        str, _pattern(r"\S+(:\S+|@sha256:[0-9a-f]{64})", "a container image reference with a tag")
    ]
    hosted_zone: Hostname
    dns: DnsMode = DnsMode.RECORD
    health_check_path: Annotated[str, _pattern(r"/\S*", "an absolute URL path such as /health")] = "/health"
    backup_interval_minutes: int = Field(default=15, ge=5, le=1440)
    # Data streams of the scheduled backups (`backup.py run --streams`); None: one below 8 GiB, parallel
    # above. 1 keeps every backup one file, which Heroku's pg:backups:restore (recover_db from-backup) takes.
    backup_streams: int | None = Field(default=None, ge=1, le=16)
    rpo_minutes: int = Field(default=15, ge=5, le=1440)
    rto_minutes: int = Field(default=15, ge=5, le=1440)
    backup_retention_days: int = Field(default=35, ge=1, le=3650)
    drill_interval_days: int = Field(default=30, ge=1, le=365)  # scripts/status.py: older is overdue
    alert_emails: list[Annotated[str, _pattern(r"[^@\s]+@[^@\s]+\.[^@\s]+", "an email address")]] = []
    config_overrides: dict[EnvName, ConfigValue] = {}
    secret_config_overrides: dict[EnvName, SecretStr] = {}
    service_sizes: dict[ProcessType, FargateSizeConfig] = {}
    backup_image: Annotated[
        str, _pattern(r"\S+(:\S+|@sha256:[0-9a-f]{64})", "a container image reference with a tag")
    ]
    process_commands: dict[ProcessType, list[str]] = {}
    container_port: int = Field(default=5000, ge=1024, le=65535)
    second_region_database: bool = False
    sanity_sql: list[str] = []
    heroku_api_key: SecretStr | None = None  # lets the backup task read the app's DATABASE_URL
    # Who may assume the operator role (IAM principal ARNs); none: the account's principals, with MFA.
    operators: list[
        Annotated[str, _pattern(r"arn:aws[a-z-]*:(iam|sts)::\d{12}:\S+", "an IAM principal ARN")]
    ] = []

    @model_validator(mode="after")
    def _interval_meets_rpo(self) -> StandbyConfig:
        if self.backup_interval_minutes > self.rpo_minutes:
            raise ValueError(
                f"backupIntervalMinutes ({self.backup_interval_minutes}) is longer than rpoMinutes "
                f"({self.rpo_minutes}): the standby can only be as fresh as its newest backup. "
                "Back up at least as often as the RPO."
            )
        return self


StackConfig = PrimaryConfig | StandbyConfig
MODELS: Final[dict[str, type[PrimaryConfig] | type[StandbyConfig]]] = {
    "primary": PrimaryConfig,
    "standby": StandbyConfig,
}
