"""The standby Pulumi program: read and validate the stack's config once, then declare its role."""

import pulumi

from standby import programs
from standby.config import from_pulumi
from standby.errors import ConfigError

try:
    programs.run(from_pulumi())
except ConfigError as exc:
    # RunError ends the update with the message alone, without a Python traceback.
    raise pulumi.RunError(str(exc)) from None
