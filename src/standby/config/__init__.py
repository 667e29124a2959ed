"""Stack configuration: the typed models and the two ways to load them."""

from standby.config.loading import from_pulumi, from_stack_file, validate
from standby.config.models import (
    PostgresConfig,
    PrimaryConfig,
    ProcessConfig,
    StackConfig,
    StandbyConfig,
)
from standby.vocabulary import DnsMode, Mode

__all__ = [
    "DnsMode",
    "Mode",
    "PostgresConfig",
    "PrimaryConfig",
    "ProcessConfig",
    "StackConfig",
    "StandbyConfig",
    "from_pulumi",
    "from_stack_file",
    "validate",
]
