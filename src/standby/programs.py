"""The Pulumi program of each stack role. `infra/__main__.py` picks one by the stack's `standby:role`."""

from __future__ import annotations

import pulumi

from standby.config.models import PrimaryConfig, StackConfig
from standby.heroku_primary import HerokuPrimary


def primary_program(config: PrimaryConfig) -> HerokuPrimary:
    """Declare the Heroku app and export everything the standby stack mirrors."""
    primary = HerokuPrimary("primary", config)
    for name, value in primary.outputs().items():
        pulumi.export(str(name), value)
    return primary


def run(config: StackConfig) -> None:
    if isinstance(config, PrimaryConfig):
        primary_program(config)
        return
    # The standby stack's program lands with issue #3; refuse rather than declare half a standby.
    raise pulumi.RunError(
        "standby:role: the standby stack program is not available in this version of standby; only "
        "`pulumi up -s primary` can be run. Its configuration is validated all the same."
    )
