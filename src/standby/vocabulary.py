"""The words the stack's configuration and the runbooks share, as plain enums.

They live apart from the pydantic models (`standby.config.models`, which re-exports them) because a
script that only backs up or restores should not pay for importing pydantic: about 0.15 s of its start.
"""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """How much of the standby runs before a disaster (docs/standby-stack.md, "Modes")."""

    PILOT_LIGHT = "pilot-light"
    WARM = "warm"
    ACTIVE = "active"


class DnsMode(StrEnum):
    """How a cutover moves traffic (README, "The disaster flow")."""

    RECORD = "record"  # one atomic Route 53 change batch
    FAILOVER = "failover"  # PRIMARY/SECONDARY records following a CloudWatch alarm


class AiProvider(StrEnum):
    """The AI providers a switch moves between (scripts/switch_ai.py)."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
