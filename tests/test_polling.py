"""Runbook waits look often at first, then at their cap."""

from __future__ import annotations

from itertools import islice

from standby.polling import pauses


def test_looks_come_often_at_first_then_every_cap_seconds() -> None:
    assert list(islice(pauses(2.0), 6)) == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert list(islice(pauses(0.1), 3)) == [0.1, 0.1, 0.1]  # never above the cap
