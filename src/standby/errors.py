"""The errors standby raises on purpose, each tied to the exit code its commands return.

Exit codes (docs/runbooks.md): 0 done, 1 failed (infrastructure or a tool: one line with the cause), 2 bad
usage or configuration, 3 refused by a safety check. Every message says what is wrong and what to do
about it; none carries a secret.
"""

from __future__ import annotations

from collections.abc import Sequence


class StandbyError(Exception):
    """Base class: a failure standby understands and can explain."""

    exit_code = 1


class ConfigError(StandbyError):
    """The stack configuration or the command line is wrong; nothing was changed."""

    exit_code = 2

    def __init__(self, problems: Sequence[str], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        if len(self.problems) == 1:
            super().__init__(f"invalid configuration{where}: {self.problems[0]}")
        else:
            lines = [f"invalid configuration{where}:"] + [f"  - {p}" for p in self.problems]
            super().__init__("\n".join(lines))


class SizingError(ConfigError):
    """A Heroku size or plan has no AWS equivalent standby can stand behind."""


class SafetyRefusal(StandbyError):
    """A safety check refused to go on (lock held, verification failed, backup too old)."""

    exit_code = 3


class InfrastructureError(StandbyError):
    """A service or tool failed (AWS throttled or unreachable, a program exited non-zero): nothing about
    the input is wrong, and running again later may succeed."""

    exit_code = 1
