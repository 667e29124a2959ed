"""Changes to the primary stack that Heroku can only make by replacing the app or its database.

Replacing the Heroku app deletes its add-ons, the production database among them. `protect` already makes
Pulumi refuse such a change (naming the resource); this names the key, what it would destroy and the safe
way, for the config check that runs before every preview (`check_config.py --deployed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from standby.config.models import PrimaryConfig
from standby.names import PrimaryOutput as Out


def replacing_changes(config: PrimaryConfig, deployed: Mapping[str, Any]) -> list[str]:
    """The refused changes of `config` against the deployed stack's outputs (`pulumi stack output --json`)."""
    problems = []
    database = deployed.get(Out.POSTGRES_ADDON_NAME) or "the Heroku Postgres add-on"
    region = deployed.get(Out.APP_REGION)
    if region and region != config.app.region:
        problems.append(
            f"standby:app.region {region} -> {config.app.region} would replace the Heroku app {config.app.name}, "
            f"and with it {database}: the production database would be deleted. Moving regions is a new app and a "
            "database copy (`heroku pg:copy`) during a maintenance window, not a change of this key. Set it back to "
            f"{region}."
        )
    return problems


def unapplied_changes(config: PrimaryConfig, deployed: Mapping[str, Any]) -> list[str]:
    """Changes that Pulumi leaves to Heroku's own tools, so they do nothing to Heroku by themselves."""
    notes = []
    version = deployed.get(Out.POSTGRES_VERSION)
    if version is not None and int(version) != config.postgres.version:
        notes.append(
            f"standby:postgres.version {version} -> {config.postgres.version}: standby never re-creates the Heroku "
            "Postgres add-on for a version (a new add-on is a new, empty database). Upgrade it in place with "
            f"`heroku pg:upgrade` if that is not done yet; the standby then mirrors {config.postgres.version}."
        )
    return notes
