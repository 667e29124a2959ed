"""Switch the app's AI provider, as runbook steps: probe the target first, then change the app-facing
settings on whichever side is live, and wait until the app runs with them.

probe_provider -> switch_settings -> wait_live. Heroku is live unless the standby's live mode is
`active`: then the settings live in the standby's config vars secret and the ECS services are
redeployed to read them. The provider chosen is also kept in SSM, so `pulumi up` keeps it.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from typing import Any, Final

import boto3.session

from standby.ai_probe import probe
from standby.config.models import AiConfig, AiProvider
from standby.errors import ConfigError, SafetyRefusal
from standby.names import ai_provider_parameter
from standby.runbook.engine import RunContext, Step
from standby.runbooks.cutover import CutoverEnv, EnvStep

LIVE_TIMEOUT: Final = 600.0  # seconds for Heroku's release or the ECS deployments to finish


def ai_config(env: CutoverEnv) -> AiConfig:
    if not env.manifest.ai:
        raise ConfigError(
            ["the standby manifest has no AI providers: declare standby:ai in the primary stack, then run "
             "`pulumi up -s primary` and `pulumi up -s standby`."]
        )  # fmt: skip
    return AiConfig.model_validate(env.manifest.ai)


class LiveSide(ABC):
    """Where the app runs now, and how its settings are read and changed there."""

    name = ""

    def __init__(self, env: CutoverEnv) -> None:
        self.env = env

    @abstractmethod
    def settings(self) -> dict[str, str]: ...

    @abstractmethod
    def change(self, settings: dict[str, str], ctx: RunContext) -> None: ...

    @abstractmethod
    def is_live(self, ctx: RunContext) -> bool: ...


class HerokuSide(LiveSide):
    name = "Heroku"

    def settings(self) -> dict[str, str]:
        return self.env.heroku.config_vars(self.env.app)

    def change(self, settings: dict[str, str], ctx: RunContext) -> None:
        # One PATCH: Heroku makes one release with every setting and restarts the dynos on it.
        self.env.heroku.update_config_vars(self.env.app, settings)
        release = self.env.heroku.newest_release(self.env.app)
        ctx.facts["release"] = release["version"] if release else None

    def is_live(self, ctx: RunContext) -> bool:
        release = self.env.heroku.newest_release(self.env.app)
        return (
            release is not None
            and release["version"] == ctx.facts.get("release")
            and release["status"] == "succeeded"
        )


class StandbySide(LiveSide):
    name = "the AWS standby"

    def _secret(self) -> str:
        if not self.env.manifest.settings_secret:
            raise ConfigError(["the standby manifest names no settings secret: run `pulumi up -s standby`."])
        return self.env.manifest.settings_secret

    def settings(self) -> dict[str, str]:
        value = self.env.client("secretsmanager").get_secret_value(SecretId=self._secret())["SecretString"]
        return dict(json.loads(value))

    def change(self, settings: dict[str, str], ctx: RunContext) -> None:
        merged = {**self.settings(), **settings}
        self.env.client("secretsmanager").put_secret_value(
            SecretId=self._secret(), SecretString=json.dumps(merged, sort_keys=True)
        )
        # ECS reads secrets when a task starts: a new deployment of every service picks the change up.
        ecs, manifest = self.env.client("ecs"), self.env.manifest
        deployments = {}
        for service in manifest.services.values():
            updated = ecs.update_service(cluster=manifest.cluster, service=service, forceNewDeployment=True)
            primary = next(d for d in updated["service"]["deployments"] if d["status"] == "PRIMARY")
            deployments[service] = primary["id"]
        ctx.facts["redeployed"] = deployments

    def is_live(self, ctx: RunContext) -> bool:
        """Every service runs only the deployment the switch started, and ECS calls it complete."""
        manifest, started = self.env.manifest, ctx.facts.get("redeployed") or {}
        found = self.env.client("ecs").describe_services(cluster=manifest.cluster, services=list(started))
        return len(found["services"]) == len(started) and all(
            [(d["id"], d.get("rolloutState")) for d in s["deployments"]]
            == [(started[s["serviceName"]], "COMPLETED")]
            for s in found["services"]
        )


def live_side(env: CutoverEnv) -> LiveSide:
    mode = env.client("ssm").get_parameter(Name=env.manifest.mode_parameter)["Parameter"]["Value"]
    return StandbySide(env) if mode == "active" else HerokuSide(env)


class AiStep(EnvStep):
    def __init__(self, env: CutoverEnv, target: AiProvider, probe_timeout: float = 10.0) -> None:
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
            side.change(self.wanted(), ctx)
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
        return boto3.session.Session(region_name=region).client("ssm")

    def _recorded(self) -> str | None:
        found = self._ssm(self.env.manifest.region).get_parameters(
            Names=[ai_provider_parameter(self.env.app)]
        )
        return str(found["Parameters"][0]["Value"]) if found["Parameters"] else None


class WaitLive(AiStep):
    name = "wait_live"

    def is_done(self, ctx: RunContext) -> bool:
        if ctx.facts.get("verified"):
            return True
        changed = "release" in ctx.facts or "redeployed" in ctx.facts
        return not changed and _settings_match(live_side(self.env), self.wanted())  # it ran so already

    def plan(self, ctx: RunContext) -> str:
        return (
            "wait until the app runs with the new settings (Heroku's release, or every ECS deployment done)"
        )

    def apply(self, ctx: RunContext) -> None:
        side = live_side(self.env)
        deadline = time.monotonic() + LIVE_TIMEOUT
        while not side.is_live(ctx):
            if time.monotonic() > deadline:
                raise SafetyRefusal(
                    f"the new settings are set on {side.name} but not live after {LIVE_TIMEOUT:.0f} s; check its "
                    "releases or the ECS service events, then --resume."
                )
            time.sleep(2)

    def verify(self, ctx: RunContext) -> None:
        if not _settings_match(live_side(self.env), self.wanted()):
            raise SafetyRefusal("the live settings are not the wanted ones after the switch.")
        ctx.facts["verified"] = True


def _settings_match(side: LiveSide, wanted: dict[str, str]) -> bool:
    current = side.settings()
    return all(current.get(k) == v for k, v in wanted.items())


def ai_switch_steps(env: CutoverEnv, target: AiProvider, probe_timeout: float = 10.0) -> list[Step]:
    return [
        ProbeProvider(env, target, probe_timeout),
        SwitchSettings(env, target, probe_timeout),
        WaitLive(env, target, probe_timeout),
    ]
