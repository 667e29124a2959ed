from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from tests.pulumi_harness import RecordingMocks

ROOT = Path(__file__).resolve().parent.parent


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
