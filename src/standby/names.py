"""Names shared by both stacks, the scripts and the tests.

A name that crosses a boundary (a stack output read through a StackReference, a config key a script
reads, an SSM parameter a runbook looks up) is spelled once, here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

PROJECT: Final = "standby"
CONFIG_NAMESPACE: Final = "standby"
METRICS_NAMESPACE: Final = "Standby"  # CloudWatch: the DNS failover metric, which only the runbooks publish
BACKUP_METRICS_NAMESPACE: Final = "Standby/Backups"  # the backup task's signals: a namespace of its own
READINESS_NAMESPACE: Final = "Standby/Readiness"  # scripts/status.py --publish: each check, the score
FAILOVER_METRIC: Final = "PrimaryInService"  # 1: traffic to Heroku; 0: to AWS (runbooks publish it)
BACKUP_PREFIX: Final = "backups"  # key prefix of the backups in the bucket
APP_ROLE: Final = "app_user"  # what the app connects to the standby as: owner of its data, nothing more
DRILL_HEADER: Final = (
    "X-Standby-Drill"  # requests carrying it (with the drill's value) reach the drill's task
)
DRILL_CLOSED: Final = "closed-"  # how the header's value starts between drills (then random, held by nobody)


class StackRole(StrEnum):
    """What a stack of this project declares; set by the `standby:role` config key."""

    PRIMARY = "primary"
    STANDBY = "standby"


class PrimaryOutput(StrEnum):
    """Outputs of the primary stack that the standby stack mirrors."""

    APP_NAME = "appName"
    APP_ID = "appId"
    APP_REGION = "appRegion"
    WEB_URL = "webUrl"
    DOMAINS = "domains"  # list of {"hostname", "dnsTarget"}
    FORMATION = "formation"  # {process type: {"quantity", "size"}}
    CONFIG_VAR_NAMES = "configVarNames"  # every config var the app sets, plain and secret
    SECRET_CONFIG_VARS = "secretConfigVars"  # {name: value}, a Pulumi secret
    PLAIN_CONFIG_VARS = "plainConfigVars"  # {name: value}
    POSTGRES_PLAN = "postgresPlan"
    POSTGRES_VERSION = "postgresVersion"
    POSTGRES_ADDON_NAME = "postgresAddonName"
    FOLLOWER_ADDON_NAME = "followerAddonName"
    AI = "ai"  # the AI providers' settings (standby.config.models.AiConfig, camelCase), or None


class StandbyOutput(StrEnum):
    """Outputs of the standby stack."""

    MODE = "mode"
    BACKUP_BUCKET = "backupBucket"
    REPLICA_BUCKET = "replicaBucket"
    LOAD_BALANCER = "loadBalancerDns"
    DATABASE_ENDPOINT = "databaseEndpoint"
    MANIFEST_PARAMETERS = "manifestParameters"
    OPERATOR_ROLE = "operatorRole"  # what the runbooks run as: `aws sts assume-role` it, then run them


def mirrored_setting(name: str) -> bool:
    """Whether the app's config var `name` is mirrored to AWS: DATABASE_URL comes from the standby's own
    secret; HEROKU_* describe Heroku (its dyno metadata, its add-ons' URLs), not the app on AWS."""
    return name != "DATABASE_URL" and not name.startswith("HEROKU_")


def mode_parameter(app: str) -> str:
    """The SSM parameter holding the live mode, which runbooks set (a cutover makes it `active`)."""
    return f"/standby/{app}/mode"


def heroku_fence_parameter(app: str) -> str:
    """Set by the cutover before it fences Heroku, deleted by the failback before it unfences it: while it
    exists, `pulumi up -s primary` keeps Heroku at zero (the restore runs before the live mode turns active)."""
    return f"/standby/{app}/heroku-fenced"


def manifest_parameter(app: str) -> str:
    """Where the standby manifest of `app` lives in SSM, in each standby region."""
    return f"/standby/{app}/manifest"


def ai_provider_parameter(app: str) -> str:
    """The SSM parameter holding the AI provider the app uses now, which scripts/switch_ai.py sets."""
    return f"/standby/{app}/ai-provider"


def lock_table(app: str) -> str:
    """The DynamoDB table holding the app's runbook lock (one item per app; docs/runbooks.md, "The app's lock")."""
    return f"{app}-standby-locks"


def backup_lock_key(app: str) -> str:
    """The backups' own item in the app's lock table: one backup at a time, apart from the runbooks' item."""
    return f"{app}/backup"


def runbook_topic(app: str) -> str:
    """The SNS topic the runbooks announce their starts, ends and failures on."""
    return f"{app}-standby-runbooks"


def failover_alarm(app: str) -> str:
    """The CloudWatch alarm that Route 53's failover health check follows (DNS mode `failover`)."""
    return f"{app}-primary-in-service"
