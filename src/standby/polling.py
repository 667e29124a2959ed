"""How long a runbook waits between two looks at something it waits for.

Most waits end within a second or two (a task turns healthy, a dyno stops, a release is live), so the
looks come often at first and slow down to a cap: the RTO loses no whole poll interval, and a long wait
does not spend the APIs' rate limits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Final

FIRST: Final = 0.2  # seconds before the second look


def pauses(cap: float, first: float = FIRST) -> Iterator[float]:
    """Delays for a poll loop: `first`, doubling up to `cap`, then `cap` for ever."""
    delay = min(first, cap)
    while True:
        yield delay
        delay = min(cap, delay * 2)


class Poll:
    """`poll = Poll(cap)`, then `poll.pause()` between looks."""

    def __init__(self, cap: float, first: float = FIRST) -> None:
        self._delays = pauses(cap, first)

    def pause(self) -> None:
        time.sleep(next(self._delays))
