"""What every standby command shares: one place that turns errors into exit codes and messages."""

from __future__ import annotations

import sys
from collections.abc import Callable

from standby.errors import StandbyError

EXIT_OK = 0
EXIT_FAILED = 1


def run(main: Callable[[], int]) -> int:
    """Run a command's main function; report a StandbyError once, on stderr, and return its exit code."""
    try:
        return main()
    except StandbyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
