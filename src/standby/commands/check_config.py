"""`scripts/check_config.py`: validate stack files the way `pulumi up` will, without Pulumi."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from standby.config.loading import from_stack_file
from standby.config.models import PrimaryConfig
from standby.config.replacement import replacing_changes, unapplied_changes
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
    parser.add_argument(
        "--deployed",
        type=Path,
        help="the primary stack's outputs as deployed (`pulumi stack output -s primary --json`): a change that "
        "would replace the Heroku app or its database is refused",
    )
    args = parser.parse_args(argv)
    try:
        deployed = _deployed(args.deployed)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    status = 0
    for path in args.stack_files:
        try:
            config = from_stack_file(path)
            if isinstance(config, PrimaryConfig) and deployed is not None:
                for note in unapplied_changes(config, deployed):
                    print(f"note: {note}", file=sys.stderr)
                refused = replacing_changes(config, deployed)
                if refused:
                    raise ConfigError(refused, str(path))
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = EXIT_INVALID
        else:
            print(f"{path}: valid {config.role} stack configuration")
    return status


def _deployed(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            [f"--deployed {path} is not the JSON of `pulumi stack output --json` ({type(exc).__name__})."]
        ) from None
    if not isinstance(doc, dict):
        raise ConfigError([f"--deployed {path} is not a JSON object of stack outputs."])
    return doc
