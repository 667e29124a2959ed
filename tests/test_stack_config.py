"""Stack configuration: each kind of bad input is refused with a message naming the key, what is allowed
and what was received, both under Pulumi and through `scripts/check_config.py`."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from standby.config import PrimaryConfig, StandbyConfig, from_pulumi, from_stack_file
from standby.errors import ConfigError
from tests.conftest import ROOT, sample_config, set_pulumi_config
from tests.pulumi_harness import RecordingMocks

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(config: dict[str, Any]) -> None:
        top, *rest = path.split(".")
        node = config
        key = f"standby:{top}"
        for part in rest:
            node = node[key]
            key = part
        node[key] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(config: dict[str, Any]) -> None:
        top, *rest = path.split(".")
        if not rest:
            del config[f"standby:{top}"]
            return
        node = config[f"standby:{top}"]
        for part in rest[:-1]:
            node = node[part]
        del node[rest[-1]]

    return mutate


# (stack, mutation, fragments every message about it must contain)
BAD_CONFIGS: dict[str, tuple[str, Mutation, list[str]]] = {
    "unknown key": (
        "primary", _set("colour", "blue"),
        ["standby:colour: unknown key", "Allowed keys here: ai, app, configVars"],
    ),
    "unknown nested key": (
        "primary", _set("app.regin", "eu"),
        ["standby:app.regin: unknown key. Did you mean region?", "Allowed keys here: name, region, stack, team"],
    ),
    "bad dyno size": (
        "primary", _set("formation.web.size", "standard-3x"),
        ["standby:formation.web.size: unknown Heroku dyno size", "Performance-M", "Got 'standard-3x'"],
    ),
    "unknown postgres plan": (
        "primary", _set("postgres.plan", "hobby-dev"),
        ["standby:postgres.plan: unknown Heroku Postgres plan", "premium-0/2/3", "Got 'hobby-dev'"],
    ),
    "missing required key": (
        "primary", _delete("postgres"),
        ["standby:postgres: required, but not set", "pulumi config set standby:postgres"],
    ),
    "missing nested key": (
        "primary", _delete("app.name"),
        ["standby:app.name: required, but not set", "--path 'standby:app.name'"],
    ),
    "quantity out of range": (
        "primary", _set("formation.worker.quantity", 101),
        ["standby:formation.worker.quantity: must be between 0 and 100", "Got 101"],
    ),
    "wrong type": (
        "primary", _set("formation.web.quantity", "two"),
        ["standby:formation.web.quantity:", "integer", "Got 'two'"],
    ),
    "unsupported postgres version": (
        "primary", _set("postgres.version", 12),
        ["standby:postgres.version: must be one of 14, 15, 16, 17, 18", "Got 12"],
    ),
    "platform-managed config var": (
        "primary", _set("configVars", {"DATABASE_URL": "postgres://x"}),
        ["DATABASE_URL is set by Heroku itself"],
    ),
    "unknown role": (
        "primary", _set("role", "replica"),
        ["standby:role: must be one of primary, standby", "Got 'replica'"],
    ),
    "unknown mode": (
        "standby", _set("mode", "hot"),
        ["standby:mode: must be one of pilot-light, warm, active", "Got 'hot'"],
    ),
    "unknown region": (
        "standby", _set("regions.second", "us-central-9"),
        ["standby:regions.second: must be one of us-east-1", "Got 'us-central-9'"],
    ),
    "same region twice": (
        "standby", _set("regions.second", "us-east-2"),
        ["second must differ from standby", "Got 'us-east-2' for both"],
    ),
    "backups rarer than the RPO": (
        "standby", _set("backupIntervalMinutes", 60),
        ["backupIntervalMinutes (60) is longer than rpoMinutes (15)"],
    ),
    "ai endpoint over plain http": (
        "primary", _set("ai", {"providers": {"openai": {"keyVar": "OPENAI_API_KEY", "baseUrl": "http://llm.example/v1"},
                                             "anthropic": {"keyVar": "ANTHROPIC_API_KEY"}}}),
        ["standby:ai.providers.openai.baseUrl: must be an https:// URL", "Got 'http://llm.example/v1'"],
    ),
    "invalid fargate override": (
        "standby", _set("serviceSizes", {"web": {"cpu": 256, "memory": 4096}}),
        ["standby:serviceSizes.web: not a Fargate CPU/memory pair", "Got cpu 256, memory 4096"],
    ),
}  # fmt: skip


def _bad(case: str) -> tuple[str, dict[str, Any], list[str]]:
    stack, mutate, fragments = BAD_CONFIGS[case]
    config = copy.deepcopy(sample_config(stack))
    mutate(config)
    return stack, config, fragments


def test_the_sample_stack_files_are_valid() -> None:
    assert isinstance(from_stack_file(ROOT / "Pulumi.primary.yaml"), PrimaryConfig)
    assert isinstance(from_stack_file(ROOT / "Pulumi.standby.yaml"), StandbyConfig)


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_refused_under_pulumi(case: str, pulumi_mocks: RecordingMocks) -> None:
    _, config, fragments = _bad(case)
    set_pulumi_config(config)
    with pytest.raises(ConfigError) as raised:
        from_pulumi()
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_refused_by_check_config(case: str, tmp_path: Path) -> None:
    stack, config, fragments = _bad(case)
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    result = _check_config(path)
    assert result.returncode == 2
    for fragment in fragments:
        assert fragment in result.stderr


def test_check_config_exits_0_on_the_sample_stacks() -> None:
    result = _check_config(ROOT / "Pulumi.primary.yaml", ROOT / "Pulumi.standby.yaml")
    assert result.returncode == 0, result.stderr
    assert "valid primary" in result.stdout
    assert "valid standby" in result.stdout


def test_every_problem_is_reported_at_once() -> None:
    config = sample_config("primary")
    config["standby:colour"] = "blue"
    config["standby:postgres"] = {"plan": "hobby-dev", "version": 16}
    with pytest.raises(ConfigError) as raised:
        from_stack_file_from(config)
    assert len(raised.value.problems) == 2


def test_a_plain_text_secret_is_refused_without_repeating_it(tmp_path: Path) -> None:
    config = sample_config("primary")
    config["standby:secretConfigVars"] = {"STRIPE_KEY": "sk_live_do_not_print", "bad-name": "also_secret"}
    path = tmp_path / "Pulumi.primary.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    result = _check_config(path)
    assert result.returncode == 2
    assert "standby:secretConfigVars: holds plain text" in result.stderr
    assert "pulumi config set --secret --path 'standby:secretConfigVars.NAME'" in result.stderr
    assert "standby:secretConfigVars.bad-name" in result.stderr
    assert "sk_live_do_not_print" not in result.stderr + result.stdout
    assert "also_secret" not in result.stderr + result.stdout


def test_encrypted_secrets_in_a_stack_file_are_accepted(tmp_path: Path) -> None:
    config = sample_config("primary")
    config["standby:secretConfigVars"] = {
        "STRIPE_KEY": {"secure": "v1:abc"},
        "SENTRY_DSN": {"secure": "v1:def"},
    }
    path = tmp_path / "Pulumi.primary.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    parsed = from_stack_file(path)
    assert isinstance(parsed, PrimaryConfig)
    assert set(parsed.secret_config_vars) == {"STRIPE_KEY", "SENTRY_DSN"}


def test_secrets_under_pulumi_must_be_marked_secret(pulumi_mocks: RecordingMocks) -> None:
    config = sample_config("primary")
    config["standby:secretConfigVars"] = {"STRIPE_KEY": "sk_live_x"}
    set_pulumi_config(config, secret_keys=[])
    with pytest.raises(ConfigError, match="holds plain text"):
        from_pulumi()
    set_pulumi_config(config, secret_keys=["standby:secretConfigVars"])
    assert from_pulumi().secret_config_vars["STRIPE_KEY"].get_secret_value() == "sk_live_x"  # type: ignore[union-attr]


def test_other_namespaces_belong_to_the_providers(pulumi_mocks: RecordingMocks) -> None:
    config = sample_config("standby")
    config["aws:skipMetadataApiCheck"] = "false"
    set_pulumi_config(config)
    assert isinstance(from_pulumi(), StandbyConfig)


def test_numbers_in_config_vars_become_strings() -> None:
    parsed = from_stack_file(ROOT / "Pulumi.primary.yaml")
    assert isinstance(parsed, PrimaryConfig)
    assert parsed.config_vars["WEB_CONCURRENCY"] == "2"


def test_a_stack_file_without_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text("encryptionsalt: abc\n")
    with pytest.raises(ConfigError, match="no `config:` mapping"):
        from_stack_file(path)


def from_stack_file_from(config: dict[str, Any]) -> Any:
    from standby.config import validate

    return validate(config, set())


def _check_config(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_config.py"), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_change_that_would_replace_the_heroku_database_is_refused_with_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `pulumi stack output -s primary --json` says is deployed, against the file of a pull request."""
    from standby.commands import check_config

    deployed = tmp_path / "deployed.json"
    deployed.write_text(
        json.dumps({"appRegion": "eu", "postgresVersion": 15, "postgresAddonName": "postgresql-x"})
    )

    code = check_config.main([str(ROOT / "Pulumi.primary.yaml"), "--deployed", str(deployed)])

    err = capsys.readouterr().err
    assert code == 2
    assert (
        "standby:app.region eu -> us would replace the Heroku app acme-shop, and with it postgresql-x" in err
    )
    assert "heroku pg:copy" in err
    # A version change is a note, not a replacement: the add-on's config counts at creation only.
    assert "note: standby:postgres.version 15 -> 16" in err and "heroku pg:upgrade" in err


def test_the_same_file_against_what_is_deployed_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from standby.commands import check_config

    deployed = tmp_path / "deployed.json"
    deployed.write_text(json.dumps({"appRegion": "us", "postgresVersion": 16}))
    assert check_config.main([str(ROOT / "Pulumi.primary.yaml"), "--deployed", str(deployed)]) == 0
    assert capsys.readouterr().err == ""


def test_a_misspelled_secret_key_is_named_without_its_value(
    pulumi_mocks: RecordingMocks, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pulumi config set --secret standby:herokuApikey <key>`: the value must not reach the preview's output."""
    config = sample_config("standby")
    config["standby:herokuApikey"] = "heroku-key-not-for-logs"
    set_pulumi_config(config, secret_keys=["standby:herokuApikey"])

    with pytest.raises(ConfigError) as raised:
        from_pulumi()

    assert "standby:herokuApikey: unknown key. Did you mean herokuApiKey?" in str(raised.value)
    assert "heroku-key-not-for-logs" not in str(raised.value) + capsys.readouterr().err
