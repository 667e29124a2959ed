"""`scripts/check_config.py`: validate stack files the way `pulumi up` will, without Pulumi."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from standby.config.loading import from_stack_file
from standby.errors import ConfigError

EXIT_INVALID = ConfigError.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="check_config.py",
        description="Validate Pulumi stack files of the standby project. Exit 0 when all are valid, "
        "2 with one message per problem when not.",
    )
    parser.add_argument(
        "stack_files", nargs="+", type=Path, help="e.g. Pulumi.primary.yaml Pulumi.standby.yaml"
    )
    args = parser.parse_args(argv)
    status = 0
    for path in args.stack_files:
        try:
            config = from_stack_file(path)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = EXIT_INVALID
        else:
            print(f"{path}: valid {config.role} stack configuration")
    return status
