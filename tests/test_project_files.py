"""The files around the code: workflows, the README's commands and CI agree with each other."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _check_jsonschema(*paths: Path) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert executable, "check-jsonschema is a test dependency; install the project with '.[test]'"
    return subprocess.run(
        [executable, "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_both_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= {"preview.yml", "deploy.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_match_the_github_schema(workflow: Path) -> None:
    result = _check_jsonschema(workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: not-a-list\n")
    assert _check_jsonschema(broken).returncode != 0


def _pulumi_steps(workflow: str) -> list[dict[str, object]]:
    document = yaml.safe_load((ROOT / ".github" / "workflows" / workflow).read_text())
    return [
        step
        for job in document["jobs"].values()
        for step in job["steps"]
        if str(step.get("uses", "")).startswith("pulumi/actions@")
    ]


def test_pull_requests_get_a_commented_preview_of_both_stacks() -> None:
    document = yaml.safe_load((ROOT / ".github" / "workflows" / "preview.yml").read_text())
    assert "pull_request" in document[True]  # PyYAML reads the key `on` as True
    install, step = _pulumi_steps("preview.yml")
    assert "with" not in install  # the CLI only, for the deployed outputs the config check compares with
    assert step["with"]["command"] == "preview"  # type: ignore[index]
    assert step["with"]["comment-on-pr"] is True  # type: ignore[index]
    assert document["jobs"]["preview"]["strategy"]["matrix"]["stack"] == ["primary", "standby"]
    checks = [
        s["run"] for s in document["jobs"]["preview"]["steps"] if "check_config.py" in str(s.get("run"))
    ]
    assert len(checks) == 1 and "--deployed deployed-primary.json" in checks[0]


def test_main_deploys_the_primary_before_the_standby() -> None:
    steps = _pulumi_steps("deploy.yml")
    assert [(s["with"]["command"], s["with"]["stack-name"]) for s in steps] == [  # type: ignore[index]
        ("up", "primary"),
        ("up", "standby"),
    ]


def _readme_commands() -> list[str]:
    """The commands of the README's "Try it" section, which must come before any other how-to."""
    readme = (ROOT / "README.md").read_text()
    sections = readme.split("\n## ")
    assert sections[1].startswith("Try it"), "the two commands come first, right after the introduction"
    return re.findall(r"^(\./dev \w+)$", sections[1], flags=re.MULTILINE)


def test_the_readme_starts_with_the_two_commands() -> None:
    assert _readme_commands() == ["./dev rehearsal", "./dev test"]


def test_ci_runs_the_readmes_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\./dev test\b", ci, flags=re.MULTILINE)
    assert "./dev lint" in ci


def test_dev_refuses_an_unknown_command() -> None:
    result = subprocess.run([str(ROOT / "dev"), "frobnicate"], capture_output=True, text=True, timeout=600,
                            env={"PATH": "/usr/bin:/bin", "STANDBY_VENV": str(Path(sys.prefix)),
                                 "PYTHON": sys.executable})  # fmt: skip
    assert result.returncode == 2
    assert "./dev test" in result.stderr
