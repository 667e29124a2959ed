"""The AI provider switch, as an operator runs it (`scripts/switch_ai.py` as a subprocess), on loopback: the
fake Heroku API, moto's AWS holding the standby, and fake OpenAI and Anthropic endpoints reached through
the official SDKs' base URL setting."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest

from standby.commands import cutover, switch_ai
from standby.config.models import AiProvider
from standby.local.ai_fake import AiProviderFake
from standby.local.heroku_fake import FakeApp, HerokuFake
from standby.local.postgres import LocalPostgres
from standby.local.standby_world import WorldSpec, build_standby_world
from standby.names import ai_provider_parameter, mode_parameter
from standby.standby_manifest import StandbyManifest
from tests.runbook_scene import Scene, build_scene
from tests.servers import count_tables, run_script

TOKEN = "heroku-token-not-for-logs"
KEYS = {"openai": "sk-openai-key-not-for-logs", "anthropic": "sk-ant-key-not-for-logs"}
MODELS = {
    "AI_MODEL": {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5"},
    "AI_FAST_MODEL": {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"},
}
ON_OPENAI = {"AI_PROVIDER": "openai", "AI_MODEL": "gpt-4o", "AI_FAST_MODEL": "gpt-4o-mini"}
ON_ANTHROPIC = {
    "AI_PROVIDER": "anthropic",
    "AI_MODEL": "claude-sonnet-4-5",
    "AI_FAST_MODEL": "claude-haiku-4-5",
}


@dataclass
class AiScene:
    heroku: HerokuFake
    providers: dict[str, AiProviderFake]
    manifest: StandbyManifest
    env: dict[str, str]
    journal: Path

    def switch(self, to: str, *args: str, script: bool = False) -> subprocess.CompletedProcess[str]:
        """`scripts/switch_ai.py` as the operator runs it: in this process, or (`script`) as one of its own."""
        argv = ["--app", self.manifest.app, "--to", to, "--yes", "--journal-dir", str(self.journal),
                "--probe-timeout", "2", *args]  # fmt: skip
        if script:
            return run_script("switch_ai.py", *argv, env=self.env)
        out, err = io.StringIO(), io.StringIO()
        here = {k: v for k, v in self.env.items() if k != "AWS_ENDPOINT_URL"}  # moto in-process
        with (
            mock.patch.dict(os.environ, here),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            code = switch_ai.main(argv)
        return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())

    def heroku_settings(self) -> dict[str, str]:
        app = self.heroku.apps[self.manifest.app]
        return {k: v for k, v in app.config_vars.items() if k in ON_OPENAI}

    def standby_settings(self) -> dict[str, str]:
        value = boto3.client("secretsmanager").get_secret_value(SecretId=self.manifest.settings_secret)
        return {k: v for k, v in json.loads(value["SecretString"]).items() if k in ON_OPENAI}

    def recorded_provider(self) -> str | None:
        try:
            found = boto3.client("ssm").get_parameter(Name=ai_provider_parameter(self.manifest.app))
        except boto3.client("ssm").exceptions.ParameterNotFound:
            return None
        return str(found["Parameter"]["Value"])


def _ai_config(openai: AiProviderFake, claude: AiProviderFake) -> dict[str, Any]:
    """The app's AI providers (standby:ai, camelCase) with the stand-ins' endpoints."""
    return {
        "active": "openai",
        "providerSetting": "AI_PROVIDER",
        "providers": {
            "openai": {"keyVar": "OPENAI_API_KEY", "baseUrl": openai.base_url},
            "anthropic": {"keyVar": "ANTHROPIC_API_KEY", "baseUrl": claude.base_url},
        },
        "models": MODELS,
    }


@pytest.fixture
def ai_scene(aws_env: dict[str, str], tmp_path: Path) -> Iterator[AiScene]:
    app = f"ai-{time.time_ns() % 10**8}"
    config_vars = {"OPENAI_API_KEY": KEYS["openai"], "ANTHROPIC_API_KEY": KEYS["anthropic"], **ON_OPENAI}
    with (
        AiProviderFake(AiProvider.OPENAI, KEYS["openai"], ["gpt-4o", "gpt-4o-mini", "o3"]) as openai,
        AiProviderFake(
            AiProvider.ANTHROPIC, KEYS["anthropic"], ["claude-sonnet-4-5", "claude-haiku-4-5"]
        ) as claude,
        HerokuFake(TOKEN) as heroku,
    ):
        heroku.add_app(
            FakeApp(
                app, config_vars=dict(config_vars), formation={"web": {"quantity": 2, "size": "Standard-2X"}}
            )
        )
        ai = _ai_config(openai, claude)
        manifest = build_standby_world(
            WorldSpec(
                app=app, region="us-east-2", database_url="postgresql://standby@db.invalid/app", zone=f"{app}.example",
                records={f"www.{app}.example": "www-1.herokudns.com"}, formation={"web": 2, "worker": 1},
                load_balancer_dns="ai-lb.us-east-2.elb.amazonaws.com", app_settings=config_vars, ai=ai,
            )
        )  # fmt: skip
        env = {**aws_env, "HEROKU_API_URL": heroku.url, "HEROKU_API_KEY": TOKEN, "HEROKU_API_ATTEMPTS": "2"}
        yield AiScene(heroku, {"openai": openai, "anthropic": claude}, manifest, env, tmp_path / "journal")


def _no_key_in(scene: AiScene, *texts: str) -> None:
    written = [p.read_text() for p in scene.journal.rglob("*") if p.is_file()]
    for text in [*texts, *written]:
        for key in [*KEYS.values(), TOKEN]:
            assert key not in text


def test_a_healthy_target_switches_heroku_then_switching_back_works(
    ai_scene: AiScene, tmp_path: Path
) -> None:
    releases = len(ai_scene.heroku.apps[ai_scene.manifest.app].releases)

    result = ai_scene.switch("anthropic", "--json", str(tmp_path / "switch.json"), script=True)

    assert result.returncode == 0, result.stderr
    assert ai_scene.heroku_settings() == ON_ANTHROPIC
    assert (
        len(ai_scene.heroku.apps[ai_scene.manifest.app].releases) == releases + 1
    )  # one release, one restart
    assert ai_scene.recorded_provider() == "anthropic"  # `pulumi up -s standby` mirrors it from here
    assert ai_scene.providers["anthropic"].calls == 1
    report = json.loads((tmp_path / "switch.json").read_text())
    assert report["facts"]["ai_live"] is True
    assert report["verified"] is False  # no data was checked: that proof is the data check's alone
    assert report["facts"]["ai_from"] == "openai" and report["facts"]["ai_to"] == "anthropic"
    assert [s["name"] for s in report["steps"]] == ["probe_provider", "switch_settings", "wait_live"]
    assert ai_scene.standby_settings() == ON_OPENAI  # the standby is not live: only Heroku changes
    _no_key_in(ai_scene, result.stdout, result.stderr, (tmp_path / "switch.json").read_text())

    back = ai_scene.switch("openai")

    assert back.returncode == 0, back.stderr
    assert ai_scene.heroku_settings() == ON_OPENAI
    assert ai_scene.recorded_provider() == "openai"
    assert ai_scene.providers["openai"].calls == 1


@pytest.mark.parametrize(("behaviour", "said"), [
    ("unauthorized", "HTTP 401"), ("error", "HTTP 500"), ("slow", "no answer within 2 s")])  # fmt: skip
def test_a_failing_probe_refuses_and_changes_nothing(ai_scene: AiScene, behaviour: str, said: str) -> None:
    ai_scene.providers["anthropic"].behaviour = behaviour
    releases = len(ai_scene.heroku.apps[ai_scene.manifest.app].releases)

    result = ai_scene.switch("anthropic")

    assert result.returncode == 3, result.stderr
    assert said in result.stderr and "Nothing was changed" in result.stderr
    assert ai_scene.heroku_settings() == ON_OPENAI
    assert len(ai_scene.heroku.apps[ai_scene.manifest.app].releases) == releases
    assert ai_scene.recorded_provider() is None
    _no_key_in(ai_scene, result.stdout, result.stderr)


@pytest.fixture
def ecs_rolls_out() -> Iterator[None]:
    """What ECS does after a new deployment and moto does not: the new tasks come up, the rollout completes."""
    from moto.ecs.models import ecs_backends

    stop = threading.Event()

    def complete() -> None:
        while not stop.wait(0.3):
            for backend in ecs_backends["123456789012"].values():
                for service in list(backend.services.values()):
                    for deployment in service.deployments:
                        deployment["rolloutState"] = "COMPLETED"

    thread = threading.Thread(target=complete, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


def test_when_the_standby_is_live_its_secret_changes_and_its_services_redeploy(
    ai_scene: AiScene, ecs_rolls_out: None, tmp_path: Path
) -> None:
    boto3.client("ssm").put_parameter(
        Name=mode_parameter(ai_scene.manifest.app), Value="active", Type="String", Overwrite=True
    )
    ecs = boto3.client("ecs")
    services = list(ai_scene.manifest.services.values())
    before = {s["serviceName"]: s["deployments"][0]["id"] for s in ecs.describe_services(
        cluster=ai_scene.manifest.cluster, services=services)["services"]}  # fmt: skip

    result = ai_scene.switch("anthropic", "--json", str(tmp_path / "switch.json"))

    assert result.returncode == 0, result.stderr
    assert ai_scene.standby_settings() == ON_ANTHROPIC
    assert ai_scene.heroku_settings() == ON_OPENAI  # Heroku is not live: untouched
    after = {s["serviceName"]: s["deployments"][0]["id"] for s in ecs.describe_services(
        cluster=ai_scene.manifest.cluster, services=services)["services"]}  # fmt: skip
    assert all(after[name] != before[name] for name in services)  # every service redeployed
    report = json.loads((tmp_path / "switch.json").read_text())
    assert report["facts"]["live_side"] == "the AWS standby" and report["facts"]["ai_live"] is True
    _no_key_in(ai_scene, result.stdout, result.stderr, (tmp_path / "switch.json").read_text())


def test_the_cutover_can_switch_the_provider_right_after_the_standby_goes_active(ai_scene: AiScene) -> None:
    result = run_script(
        "cutover.py", "--app", ai_scene.manifest.app, "--dry-run", "--ai-provider", "anthropic",
        "--journal-dir", str(ai_scene.journal), env=ai_scene.env,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    order = [line.split()[1] for line in result.stderr.splitlines() if line.strip()[:3].strip(". ").isdigit()]
    at = order.index("scale_standby")
    assert order[:at] == [
        "preflight",
        "assess_primary",
        "fence_primary",
        "fence_database",
        "final_backup",
        "restore",
        "verify_data",
    ]
    assert order[at + 1 : at + 4] == ["probe_provider", "switch_settings", "wait_live"]
    assert order[at + 4] == "wait_healthy"


@pytest.fixture
def ai_cutover_scene(
    pg_server: LocalPostgres,
    pagila_template: str,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[tuple[Scene, dict[str, AiProviderFake]]]:
    with (
        AiProviderFake(AiProvider.OPENAI, KEYS["openai"], ["gpt-4o", "gpt-4o-mini"]) as openai,
        AiProviderFake(
            AiProvider.ANTHROPIC, KEYS["anthropic"], ["claude-sonnet-4-5", "claude-haiku-4-5"]
        ) as claude,
    ):
        ai = _ai_config(openai, claude)
        settings = {"OPENAI_API_KEY": KEYS["openai"], "ANTHROPIC_API_KEY": KEYS["anthropic"], **ON_OPENAI}
        for scene in build_scene(pg_server, pagila_template, monkeypatch, tmp_path, ai=ai, settings=settings):
            yield scene, {"openai": openai, "anthropic": claude}


def test_a_cutover_that_switches_the_provider_still_verifies_every_row_count_and_reports_the_rpo(
    ai_cutover_scene: tuple[Scene, dict[str, AiProviderFake]], tmp_path: Path
) -> None:
    scene, providers = ai_cutover_scene

    run = scene.run(cutover.main, "--ai-provider", "anthropic", "--json", str(tmp_path / "r.json"))

    assert run.code == 0, run.output
    report = json.loads((tmp_path / "r.json").read_text())
    outcomes = {s["name"]: s["outcome"] for s in report["steps"]}
    assert outcomes["verify_data"] == "done" and outcomes["wait_live"] == "done"
    assert report["verified"] is True and report["facts"]["ai_live"] is True
    assert report["facts"]["verified_tables"] > 20  # every table's count compared
    assert report["rpo_seconds"] is not None and report["rpo_seconds"] < 5  # graceful: the final backup
    assert count_tables(scene.standby, ["public.rental"]) == count_tables(scene.source, ["public.rental"])
    assert providers["anthropic"].calls == 1
    assert "data verified: yes" in run.output and "AI settings live: yes" in run.output


def test_a_release_that_failed_ends_the_wait_at_once_with_its_status(ai_scene: AiScene) -> None:
    ai_scene.heroku.apps[ai_scene.manifest.app].release_status = "failed"  # its release phase fails

    started = time.monotonic()
    result = ai_scene.switch("anthropic")

    assert result.returncode == 3, result.stderr
    assert "step wait_live failed: Heroku's release v1" in result.stderr and "failed" in result.stderr
    assert time.monotonic() - started < 60  # not the 600 s the wait allows
