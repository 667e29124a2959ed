"""What the standby reads of the primary stack: its outputs, through a StackReference.

The structure (process types, domains, plan) decides which resources the standby declares, so it is read
as plain values when the program starts; the secret config var values stay Pulumi secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime.sync_await import _sync_await

from standby.config.models import AiConfig
from standby.errors import ConfigError
from standby.names import PrimaryOutput


@dataclass(frozen=True)
class PrimarySnapshot:
    app: str
    formation: dict[str, dict[str, Any]]  # process type -> {"quantity", "size"}
    domains: list[dict[str, str]]  # {"hostname", "dnsTarget"}
    plain_config_vars: dict[str, str]
    config_var_names: list[str]
    postgres_plan: str
    postgres_version: int
    secret_config_vars: pulumi.Output[dict[str, str]]
    ai: AiConfig | None = None  # the AI providers, when the primary declares them


REQUIRED = (
    PrimaryOutput.APP_NAME,
    PrimaryOutput.FORMATION,
    PrimaryOutput.DOMAINS,
    PrimaryOutput.PLAIN_CONFIG_VARS,
    PrimaryOutput.CONFIG_VAR_NAMES,
    PrimaryOutput.POSTGRES_PLAN,
    PrimaryOutput.POSTGRES_VERSION,
)


def read_primary(reference: pulumi.StackReference, stack_name: str) -> PrimarySnapshot:
    values: dict[str, Any] = {}
    missing = []
    for name in REQUIRED:
        # The same synchronous wait Pulumi's own invokes use: these values shape the program.
        details = _sync_await(reference.get_output_details(str(name)))
        value = details.value if details.value is not None else details.secret_value
        if value is None:
            missing.append(str(name))
        values[str(name)] = value
    if missing:
        raise ConfigError(
            [f"the primary stack {stack_name} has no output {', '.join(missing)}. Run `pulumi up -s primary` "
             "first (or check standby:primaryStack)."]
        )  # fmt: skip
    ai = _sync_await(
        reference.get_output_details(str(PrimaryOutput.AI))
    ).value  # optional: older primaries lack it
    secret_vars = reference.get_output(str(PrimaryOutput.SECRET_CONFIG_VARS)).apply(lambda v: dict(v or {}))
    return PrimarySnapshot(
        app=str(values[PrimaryOutput.APP_NAME]),
        formation=dict(values[PrimaryOutput.FORMATION]),
        domains=list(values[PrimaryOutput.DOMAINS]),
        plain_config_vars=dict(values[PrimaryOutput.PLAIN_CONFIG_VARS]),
        config_var_names=list(values[PrimaryOutput.CONFIG_VAR_NAMES]),
        postgres_plan=str(values[PrimaryOutput.POSTGRES_PLAN]),
        postgres_version=int(values[PrimaryOutput.POSTGRES_VERSION]),
        secret_config_vars=pulumi.Output.secret(secret_vars),
        ai=AiConfig.model_validate(ai) if ai else None,
    )
