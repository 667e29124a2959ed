"""A check's verdict, the checks there are and what each weighs, and the score they make."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final


class Level(IntEnum):
    """Also the value published for each check (metric `CheckLevel`): alarms fire at CRITICAL."""

    OK = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def word(self) -> str:
        return self.name.lower()


# Every check, with the points it weighs out of 100: a critical costs them all, a warning half.
WEIGHTS: Final[dict[str, int]] = {
    "backup-age": 15,
    "backup-replica": 10,
    "restore-ahead": 5,
    "formation": 5,
    "config-vars": 5,
    "image": 5,
    "domains": 5,
    "postgres-version": 10,
    "dns": 10,
    "database": 5,
    "services": 5,
    "load-balancer": 5,
    "runbooks": 5,
    "rto-forecast": 5,
    "drill": 5,
}
CHECKS: Final = tuple(WEIGHTS)


@dataclass(frozen=True)
class Check:
    name: str  # one of CHECKS
    level: Level
    summary: str  # what is true now, with the numbers
    fix: str = ""  # what to do about it (empty when ok)
    value: float | None = None  # the measured figure behind it (seconds, bytes), published as a metric

    def __post_init__(self) -> None:
        if self.name not in WEIGHTS:
            raise ValueError(f"unknown check {self.name!r}")

    @property
    def cost(self) -> int:
        weight = WEIGHTS[self.name]
        return {Level.OK: 0, Level.WARNING: weight // 2, Level.CRITICAL: weight}[self.level]

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "level": self.level.word,
            "summary": self.summary,
            "fix": self.fix,
            "value": self.value,
            "cost": self.cost,
        }


def ok(name: str, summary: str, value: float | None = None) -> Check:
    return Check(name, Level.OK, summary, "", value)


def warning(name: str, summary: str, fix: str, value: float | None = None) -> Check:
    return Check(name, Level.WARNING, summary, fix, value)


def critical(name: str, summary: str, fix: str, value: float | None = None) -> Check:
    return Check(name, Level.CRITICAL, summary, fix, value)


EXIT_CODES: Final = {Level.OK: 0, Level.WARNING: 1, Level.CRITICAL: 3}


@dataclass(frozen=True)
class Readiness:
    app: str
    checked_at: str  # ISO 8601, UTC
    checks: list[Check]
    figures: dict[str, float | None] = field(default_factory=dict)  # the RTO forecast and its parts

    @property
    def score(self) -> int:
        return max(0, 100 - sum(c.cost for c in self.checks))

    @property
    def level(self) -> Level:
        return max((c.level for c in self.checks), default=Level.OK)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.level]

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "checked_at": self.checked_at,
            "level": self.level.word,
            "score": self.score,
            "costs": {c.name: c.cost for c in self.checks if c.cost},
            "figures": self.figures,
            "checks": [c.to_json() for c in self.checks],
        }


def human(seconds: float) -> str:
    """A duration as people read it: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    s = round(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"
