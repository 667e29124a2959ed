"""Switch the app's AI provider, as runbook steps: probe the target first, then change the app-facing
settings on whichever side is live, and wait until the app runs with them.

probe_provider -> switch_settings -> wait_live. Heroku is live unless the standby's live mode is
`active`: then the settings live in the standby's config vars secret and the ECS services are
redeployed to read them. The provider chosen is also kept in SSM, so `pulumi up` keeps it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final, Protocol

from standby import aws_clients
from standby.ai_probe import probe
from standby.config.models import AiConfig
from standby.errors import ConfigError, SafetyRefusal
from standby.names import ai_provider_parameter
from standby.polling import Poll
from standby.runbook.engine import RunContext, Step
from standby.runbook.environment import EnvStep, RunbookEnv
from standby.vocabulary import AiProvider, Mode

LIVE_TIMEOUT: Final = 600.0  # seconds for Heroku's release or the ECS deployments to finish


def ai_config(env: RunbookEnv) -> AiConfig:
    if not env.manifest.ai:
        raise ConfigError(
            ["the standby manifest has no AI providers: declare standby:ai in the primary stack, then run "
             "`pulumi up -s primary` and `pulumi up -s standby`."]
        )  # fmt: skip
    return AiConfig.model_validate(env.manifest.ai)


class LiveSide(Protocol):
    """Where the app runs now, and how its settings are read and changed there (both sides do this)."""

    name: str

    def settings(self) -> dict[str, str]: ...
    def change_settings(self, settings: Mapping[str, str], ctx: RunContext) -> None: ...
    def settings_live(self, ctx: RunContext) -> bool: ...


def live_side(env: RunbookEnv) -> LiveSide:
    return env.standby if env.standby.mode() is Mode.ACTIVE else env.primary


class AiStep(EnvStep):
    def __init__(self, env: RunbookEnv, target: AiProvider, probe_timeout: float = 10.0) -> None:
        super().__init__(env)
        self.target = target
        self.probe_timeout = probe_timeout

    def wanted(self) -> dict[str, str]:
        return ai_config(self.env).settings(self.target)


class ProbeProvider(AiStep):
    name = "probe_provider"

    def is_done(self, ctx: RunContext) -> bool:
        return False  # a provider that worked an hour ago proves nothing: always ask it again

    def plan(self, ctx: RunContext) -> str:
        provider = ai_config(self.env).providers[self.target]
        where = provider.base_url or "the SDK's default endpoint"
        return (
            f"list {self.target.value}'s models through its SDK at {where}; every mapped model must be there"
        )

    def apply(self, ctx: RunContext) -> None:
        config, side = ai_config(self.env), live_side(self.env)
        provider = config.providers[self.target]
        current = side.settings()
        key = current.get(provider.key_var)
        if not key:
            raise SafetyRefusal(
                f"{provider.key_var} is not set on {side.name}: the app could not call {self.target.value}. "
                f"Set it as a secret config var in the primary stack and run `pulumi up`."
            )
        probe(
            self.target,
            key,
            provider.base_url,
            sorted({m[self.target] for m in config.models.values()}),
            self.probe_timeout,
        )
        ctx.facts["live_side"] = side.name
        ctx.facts["ai_from"] = current.get(config.provider_setting)
        ctx.facts["ai_to"] = self.target.value
        ctx.say(f"  {self.target.value} answers with every model the app will ask for")


class SwitchSettings(AiStep):
    name = "switch_settings"

    def is_done(self, ctx: RunContext) -> bool:
        return _settings_match(live_side(self.env), self.wanted()) and self._recorded() == self.target.value

    def plan(self, ctx: RunContext) -> str:
        changes = ", ".join(f"{k}={v}" for k, v in self.wanted().items())
        return f"set {changes} on the live side; keep {self.target.value} in SSM for `pulumi up`"

    def apply(self, ctx: RunContext) -> None:
        side = live_side(self.env)
        if not _settings_match(side, self.wanted()):
            side.change_settings(self.wanted(), ctx)
        # Recorded after the change: SSM never names a provider the app was not set to.
        for region in self._regions():
            self._ssm(region).put_parameter(
                Name=ai_provider_parameter(self.env.app),
                Value=self.target.value,
                Type="String",
                Overwrite=True,
            )

    def _regions(self) -> list[str]:
        return [r for r in (self.env.manifest.region, self.env.manifest.second_region) if r]

    def _ssm(self, region: str) -> Any:
        return aws_clients.client("ssm", region)

    def _recorded(self) -> str | None:
        found = self._ssm(self.env.manifest.region).get_parameters(
            Names=[ai_provider_parameter(self.env.app)]
        )
        return str(found["Parameters"][0]["Value"]) if found["Parameters"] else None


class WaitLive(AiStep):
    name = "wait_live"

    def is_done(self, ctx: RunContext) -> bool:
        if ctx.facts.get("ai_live"):
            return True
        changed = "release" in ctx.facts or "redeployed" in ctx.facts
        return not changed and _settings_match(live_side(self.env), self.wanted())  # it ran so already

    def plan(self, ctx: RunContext) -> str:
        return (
            "wait until the app runs with the new settings (Heroku's release, or every ECS deployment done)"
        )

    def apply(self, ctx: RunContext) -> None:
        side = live_side(self.env)
        deadline, poll = time.monotonic() + LIVE_TIMEOUT, Poll(2.0)
        while not side.settings_live(ctx):
            if time.monotonic() > deadline:
                raise SafetyRefusal(
                    f"the new settings are set on {side.name} but not live after {LIVE_TIMEOUT:.0f} s; check its "
                    "releases or the ECS service events, then --resume."
                )
            poll.pause()

    def verify(self, ctx: RunContext) -> None:
        if not _settings_match(live_side(self.env), self.wanted()):
            raise SafetyRefusal("the live settings are not the wanted ones after the switch.")
        ctx.facts["ai_live"] = True  # not `verified`: that is the data check's, in a cutover


def _settings_match(side: LiveSide, wanted: dict[str, str]) -> bool:
    current = side.settings()
    return all(current.get(k) == v for k, v in wanted.items())


def ai_switch_steps(env: RunbookEnv, target: AiProvider, probe_timeout: float = 10.0) -> list[Step]:
    return [
        ProbeProvider(env, target, probe_timeout),
        SwitchSettings(env, target, probe_timeout),
        WaitLive(env, target, probe_timeout),
    ]
