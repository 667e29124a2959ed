"""What every standby command shares: one place that turns errors into exit codes and messages."""

from __future__ import annotations

import sys
from collections.abc import Callable

import psycopg

from standby.aws_errors import AWS_ERRORS, aws_failure
from standby.errors import StandbyError

EXIT_OK = 0
EXIT_FAILED = 1


def run(main: Callable[[], int]) -> int:
    """Run a command's main function; report an expected failure once, on stderr, and return its exit code.

    StandbyErrors carry their own code; an AWS call or a PostgreSQL connection that failed where no step
    explained it more precisely is an infrastructure failure (1), shown as its first line.
    """
    try:
        return main()
    except StandbyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except AWS_ERRORS as exc:
        failure = aws_failure(exc, "calling AWS")
        print(f"error: {failure}", file=sys.stderr)
        return failure.exit_code
    except psycopg.Error as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        print(f"error: PostgreSQL: {first}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
