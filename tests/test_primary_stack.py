"""The primary stack, run exactly as `pulumi up -s primary` runs it (infra/__main__.py), under mocks."""

from __future__ import annotations

import json
import runpy
from typing import Any

import pulumi
import pytest

from standby.names import PrimaryOutput, heroku_fence_parameter, mode_parameter
from tests.conftest import ROOT, sample_config, set_pulumi_config
from tests.pulumi_harness import OPTIONS, RecordingMocks, resolve, run_program, unwrap

APP = "heroku:app/app:App"
ADDON = "heroku:addon/addon:Addon"
DOMAIN = "heroku:domain/domain:Domain"
FORMATION = "heroku:formation/formation:Formation"
SECRETS = {"SECRET_KEY_BASE": "kb_not_for_logs", "STRIPE_KEY": "sk_live_not_for_logs"}


def _run_primary(config: dict[str, Any]) -> dict[str, Any]:
    """Run infra/__main__.py; return the stack outputs it exported."""
    set_pulumi_config(config, secret_keys=["standby:secretConfigVars"])
    exported: dict[str, Any] = {}
    original_export = pulumi.export

    def capture(name: str, value: Any) -> None:
        exported[name] = value
        original_export(name, value)

    pulumi.export = capture  # type: ignore[assignment]
    try:
        run_program(lambda: runpy.run_path(str(ROOT / "infra" / "__main__.py"), run_name="__main__"))
    finally:
        pulumi.export = original_export
    return exported


@pytest.fixture
def primary_config() -> dict[str, Any]:
    config = sample_config("primary")
    config["standby:secretConfigVars"] = dict(SECRETS)
    return config


def test_the_app_is_declared_with_its_region_stack_and_plain_config_vars(
    pulumi_mocks: RecordingMocks, primary_config: dict[str, Any]
) -> None:
    _run_primary(primary_config)
    (app,) = pulumi_mocks.of_type(APP)
    assert app.inputs["name"] == "acme-shop"
    assert app.inputs["region"] == "us"
    assert app.inputs["stack"] == "heroku-24"
    assert app.inputs["configVars"] == {"RACK_ENV": "production", "WEB_CONCURRENCY": "2", "LOG_LEVEL": "info"}


def test_secret_config_vars_are_secret_inputs_and_secret_outputs(
    pulumi_mocks: RecordingMocks, primary_config: dict[str, Any]
) -> None:
    outputs = _run_primary(primary_config)
    (app,) = pulumi_mocks.of_type(APP)
    sensitive = app.inputs["sensitiveConfigVars"]
    # The engine receives a secret envelope, never a bare map of values.
    assert sensitive[pulumi.runtime.rpc._special_sig_key] == pulumi.runtime.rpc._special_secret_sig
    assert sensitive["value"] == SECRETS
    for value in SECRETS.values():
        assert value not in repr(app.inputs["configVars"])
    value, secret = resolve(outputs[PrimaryOutput.SECRET_CONFIG_VARS])
    assert (value, secret) == (SECRETS, True)
    names, names_secret = resolve(outputs[PrimaryOutput.CONFIG_VAR_NAMES])
    assert names == sorted(["RACK_ENV", "WEB_CONCURRENCY", "LOG_LEVEL", *SECRETS])
    assert not names_secret
    plain, _ = resolve(outputs[PrimaryOutput.PLAIN_CONFIG_VARS])
    assert not set(SECRETS) & set(plain)


def test_postgres_is_declared_at_its_plan_and_version_with_a_follower(
    pulumi_mocks: RecordingMocks, primary_config: dict[str, Any]
) -> None:
    outputs = _run_primary(primary_config)
    leader = pulumi_mocks.named("primary-postgres")
    follower = pulumi_mocks.named("primary-postgres-follower")
    assert leader.inputs["plan"] == "heroku-postgresql:standard-0"
    assert leader.inputs["config"] == {"version": "16"}
    assert follower.inputs["plan"] == "heroku-postgresql:standard-0"
    assert follower.inputs["config"] == {"follow": "postgresql-primary-postgres"}
    assert resolve(outputs[PrimaryOutput.POSTGRES_PLAN])[0] == "standard-0"
    assert resolve(outputs[PrimaryOutput.POSTGRES_VERSION])[0] == 16
    assert resolve(outputs[PrimaryOutput.FOLLOWER_ADDON_NAME])[0] == "postgresql-primary-postgres-follower"


def test_no_follower_unless_configured(pulumi_mocks: RecordingMocks, primary_config: dict[str, Any]) -> None:
    primary_config["standby:postgres"] = {"plan": "premium-4", "version": 17}
    outputs = _run_primary(primary_config)
    (addon,) = pulumi_mocks.of_type(ADDON)
    assert addon.inputs["plan"] == "heroku-postgresql:premium-4"
    assert resolve(outputs[PrimaryOutput.FOLLOWER_ADDON_NAME])[0] is None


def test_the_formation_has_each_process_type_at_its_quantity_and_size(
    pulumi_mocks: RecordingMocks, primary_config: dict[str, Any]
) -> None:
    primary_config["standby:formation"]["worker"]["size"] = "performance-l"  # any case is accepted
    outputs = _run_primary(primary_config)
    formations = {f.inputs["type"]: f.inputs for f in pulumi_mocks.of_type(FORMATION)}
    assert set(formations) == {"web", "worker"}
    assert (formations["web"]["quantity"], formations["web"]["size"]) == (2, "Standard-2X")
    assert (formations["worker"]["quantity"], formations["worker"]["size"]) == (1, "Performance-L")
    assert resolve(outputs[PrimaryOutput.FORMATION])[0] == {
        "web": {"quantity": 2, "size": "Standard-2X"},
        "worker": {"quantity": 1, "size": "Performance-L"},
    }


def test_domains_are_declared_and_their_dns_targets_are_outputs(
    pulumi_mocks: RecordingMocks, primary_config: dict[str, Any]
) -> None:
    outputs = _run_primary(primary_config)
    assert sorted(d.inputs["hostname"] for d in pulumi_mocks.of_type(DOMAIN)) == [
        "api.acme-shop.example",
        "www.acme-shop.example",
    ]
    domains, _ = resolve(outputs[PrimaryOutput.DOMAINS])
    assert {
        "hostname": "www.acme-shop.example",
        "dnsTarget": "www-acme-shop-example.herokudns.com",
    } in domains


def test_the_team_becomes_the_app_organization(
    pulumi_mocks: RecordingMocks, primary_config: dict[str, Any]
) -> None:
    primary_config["standby:app"]["team"] = "acme"
    _run_primary(primary_config)
    (app,) = pulumi_mocks.of_type(APP)
    assert app.inputs["organization"] == {"name": "acme"}


def test_every_primary_output_name_is_exported(
    pulumi_mocks: RecordingMocks, primary_config: dict[str, Any]
) -> None:
    outputs = _run_primary(primary_config)
    assert set(outputs) == {str(name) for name in PrimaryOutput}


def test_bad_config_stops_the_program_before_any_resource(
    pulumi_mocks: RecordingMocks, primary_config: dict[str, Any]
) -> None:
    primary_config["standby:formation"]["web"]["size"] = "standard-3x"
    with pytest.raises(pulumi.RunError, match=r"standby:formation\.web\.size: unknown Heroku dyno size"):
        _run_primary(primary_config)
    assert [d for d in pulumi_mocks.declared if not d.typ.startswith("pulumi:")] == []


AI = {
    "active": "openai",
    "providers": {"openai": {"keyVar": "OPENAI_API_KEY"}, "anthropic": {"keyVar": "ANTHROPIC_API_KEY"}},
    "models": {"AI_MODEL": {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5"}},
}


def test_the_ai_settings_start_at_the_configured_provider_and_are_exported(
    pulumi_mocks: RecordingMocks, primary_config: dict[str, Any]
) -> None:
    primary_config["standby:ai"] = AI
    primary_config["standby:secretConfigVars"] |= {
        "OPENAI_API_KEY": "sk-o-not-for-logs",
        "ANTHROPIC_API_KEY": "sk-a-not-for-logs",
    }
    exported = _run_primary(primary_config)
    (settings,) = pulumi_mocks.of_type("heroku:app/configAssociation:ConfigAssociation")
    assert settings.inputs["vars"] == {"AI_PROVIDER": "openai", "AI_MODEL": "gpt-4o"}
    (app,) = pulumi_mocks.of_type(APP)
    assert "OPENAI_API_KEY" in unwrap(app.inputs["sensitiveConfigVars"])  # the keys are secret config vars
    outputs = {k: unwrap(v) for k, v in exported.items()}
    assert outputs["ai"]["providers"]["anthropic"]["keyVar"] == "ANTHROPIC_API_KEY"
    assert outputs["plainConfigVars"]["AI_PROVIDER"] == "openai"
    assert "sk-a-not-for-logs" not in json.dumps(outputs["ai"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"providers": {"openai": {"keyVar": "OPENAI_API_KEY"}}}, "anthropic missing"),
        ({"models": {"AI_MODEL": {"openai": "gpt-4o"}}}, "models.AI_MODEL: no model for anthropic"),
        ({"providers": {"openai": {"keyVar": "OPENAI_API_KEY"}, "anthropic": {"keyVar": "CLAUDE_KEY"}}},
         "CLAUDE_KEY must be a secret config var"),
    ],
)  # fmt: skip
def test_ai_config_mistakes_are_named(
    primary_config: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    from standby.config.loading import validate
    from standby.errors import ConfigError

    primary_config["standby:ai"] = AI | change
    primary_config["standby:secretConfigVars"] |= {"OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "y"}
    with pytest.raises(ConfigError) as refused:
        validate(primary_config, secret_keys={"standby:secretConfigVars"})
    assert any(message in problem for problem in refused.value.problems), refused.value.problems


def test_what_cannot_be_recreated_is_protected_and_kept_on_delete(
    pulumi_mocks: RecordingMocks, primary_config: dict[str, Any]
) -> None:
    _run_primary(primary_config)
    for declared in [*pulumi_mocks.of_type(APP), *pulumi_mocks.of_type(ADDON)]:
        options = OPTIONS[declared.name]
        assert options.protect is True and options.retain_on_delete is True, declared.name
    # An add-on's config forces a new, empty database: a version change is never applied by replacing it.
    for addon in pulumi_mocks.of_type(ADDON):
        assert "config" in (OPTIONS[addon.name].ignore_changes or [])


def test_with_the_standby_live_the_primary_keeps_heroku_fenced_and_says_why(
    pulumi_mocks: RecordingMocks, primary_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    pulumi_mocks.ssm_parameters = {mode_parameter("acme-shop"): "active"}

    exported = _run_primary(primary_config)

    assert {f.inputs["type"]: int(f.inputs["quantity"]) for f in pulumi_mocks.of_type(FORMATION)} == {
        "web": 0, "worker": 0}  # fmt: skip
    formation, _ = resolve(exported[PrimaryOutput.FORMATION])
    assert {t: p["quantity"] for t, p in formation.items()} == {
        "web": 2,
        "worker": 1,
    }  # what the standby mirrors
    assert "Heroku stays fenced" in caplog.text


@pytest.mark.parametrize(
    "recorded",
    [
        {heroku_fence_parameter("acme-shop"): "fenced by cutover run r1"},
        {mode_parameter("acme-shop"): "bogus"},
    ],
    ids=["a cutover fenced heroku", "an unknown live mode"],
)
def test_a_fenced_heroku_or_an_unknown_live_side_keeps_the_formation_at_zero(
    pulumi_mocks: RecordingMocks, primary_config: dict[str, Any], recorded: dict[str, str]
) -> None:
    pulumi_mocks.ssm_parameters = {mode_parameter("acme-shop"): "warm", **recorded}
    _run_primary(primary_config)
    assert {int(f.inputs["quantity"]) for f in pulumi_mocks.of_type(FORMATION)} == {0}


def test_without_a_live_standby_the_formation_is_the_configured_one(
    pulumi_mocks: RecordingMocks, primary_config: dict[str, Any]
) -> None:
    pulumi_mocks.ssm_parameters = {mode_parameter("acme-shop"): "warm"}
    _run_primary(primary_config)
    assert {f.inputs["type"]: int(f.inputs["quantity"]) for f in pulumi_mocks.of_type(FORMATION)} == {
        "web": 2, "worker": 1}  # fmt: skip
