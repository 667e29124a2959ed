"""No secret reaches a job that runs a fork's code: the workflows read as GitHub runs them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SECRET = re.compile(r"\$\{\{\s*secrets\.(\w+)")
SAME_REPOSITORY = "github.event.pull_request.head.repo.full_name == github.repository"
# Triggers that run with the repository's secrets while the code or its inputs come from a fork.
PRIVILEGED_TRIGGERS = {"pull_request_target", "workflow_run"}


def _secrets(node: Any) -> set[str]:
    """The secrets a part of a workflow names; GITHUB_TOKEN is the run's own, scoped by `permissions`."""
    return set(SECRET.findall(json.dumps(node))) - {"GITHUB_TOKEN"}


def _mints_cloud_tokens(permissions: Any) -> bool:
    return permissions == "write-all" or (
        isinstance(permissions, dict) and permissions.get("id-token") == "write"
    )


def exposures(document: dict[Any, Any]) -> list[str]:
    """Where a workflow lets untrusted code read a secret or mint a cloud token."""
    triggers = document.get(True, document.get("on"))  # PyYAML reads the key `on` as True
    events = {triggers} if isinstance(triggers, str) else set(triggers or {})
    problems = [
        f"trigger {t!r} runs a fork's inputs with secrets" for t in sorted(events & PRIVILEGED_TRIGGERS)
    ]
    inherited = _secrets(document.get("env", {}))
    if inherited:
        problems.append(f"workflow-level env hands {sorted(inherited)} to every job")
    for name, job in document.get("jobs", {}).items():
        permissions = job.get("permissions", document.get("permissions"))
        named = _secrets(job) | inherited
        runs_fork_code = bool(events & {"pull_request", *PRIVILEGED_TRIGGERS}) and SAME_REPOSITORY not in str(
            job.get("if", "")
        )
        if runs_fork_code and named:
            problems.append(f"job {name!r} runs a fork's code with {sorted(named)}")
        if runs_fork_code and _mints_cloud_tokens(permissions):
            problems.append(f"job {name!r} runs a fork's code and may mint cloud credentials (id-token)")
        if named and not job.get("environment"):
            problems.append(f"job {name!r} reads {sorted(named)} outside a protected environment")
    return problems


def _load(path: Path) -> dict[Any, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_no_secret_reaches_a_job_that_runs_a_forks_code(workflow: Path) -> None:
    assert exposures(_load(workflow)) == []


def test_the_preview_still_gets_what_it_needs_for_this_repositorys_branches() -> None:
    preview = _load(ROOT / ".github" / "workflows" / "preview.yml")["jobs"]["preview"]
    assert _secrets(preview) == {"PULUMI_CONFIG_PASSPHRASE", "HEROKU_API_KEY"}
    assert preview["environment"] == "preview" and _mints_cloud_tokens(preview["permissions"])


BEFORE = """
on:
  pull_request:
permissions:
  id-token: write
env:
  PULUMI_CONFIG_PASSPHRASE: ${{ secrets.PULUMI_CONFIG_PASSPHRASE }}
jobs:
  checks:
    runs-on: ubuntu-latest
    steps: [{run: bash .ci/run}]
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            BEFORE,
            [
                "workflow-level env",
                "job 'checks' runs a fork's code with",
                "may mint cloud",
                "outside a protected",
            ],
        ),
        (
            "on: pull_request_target\njobs:\n  a:\n    steps: [{run: 'echo ${{ secrets.KEY }}'}]\n",
            [
                "trigger 'pull_request_target'",
                "job 'a' runs a fork's code with ['KEY']",
                "outside a protected",
            ],
        ),
        (
            "on: push\njobs:\n  a:\n    env: {K: '${{ secrets.KEY }}'}\n    steps: []\n",
            ["job 'a' reads ['KEY'] outside a protected environment"],
        ),
        (
            "on: pull_request\njobs:\n  a:\n    if: github.actor == 'me'\n    environment: e\n"
            "    steps: [{with: {t: '${{secrets.DEPLOY}}'}}]\n",
            ["job 'a' runs a fork's code with ['DEPLOY']"],
        ),
    ],
    ids=["secrets-for-every-job", "pull-request-target", "unprotected-push", "guard-that-lets-forks-in"],
)
def test_the_check_catches_each_way_a_secret_leaks(text: str, expected: list[str]) -> None:
    found = exposures(yaml.safe_load(text))
    assert len(found) == len(expected), found
    for problem, start in zip(found, expected, strict=True):
        assert start in problem
