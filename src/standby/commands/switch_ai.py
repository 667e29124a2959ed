"""`scripts/switch_ai.py`: switch the app's AI provider, probed first."""

from __future__ import annotations

import argparse

from standby import cli
from standby.ai_probe import PROBE_TIMEOUT
from standby.commands.runbook_command import StandbySideFactory, add_runbook_arguments, run_runbook
from standby.runbooks.ai_switch import ai_switch_steps
from standby.standby_side import AwsStandby
from standby.vocabulary import AiProvider


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switch_ai.py",
        description="Switch the app's AI provider: probe the target through its SDK, refuse if it fails, then "
        "set the app's settings on the live side (Heroku config vars, or the standby's secret and a new ECS "
        "deployment) and wait until they are live. Exit 0 done, 1 failed, 2 bad usage, 3 refused.",
    )
    add_runbook_arguments(parser)
    add_ai_arguments(parser, required=True)
    return parser


def add_ai_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    flag = "--to" if required else "--ai-provider"
    parser.add_argument(flag, dest="ai_provider", choices=[p.value for p in AiProvider], required=required,
                        help="the AI provider the app should use")  # fmt: skip
    parser.add_argument(
        "--probe-timeout", type=float, default=PROBE_TIMEOUT, help="seconds the probe may take"
    )


def main(argv: list[str] | None = None, standby_side: StandbySideFactory = AwsStandby) -> int:
    args = build_parser().parse_args(argv)
    target = AiProvider(args.ai_provider)
    return cli.run(
        lambda: run_runbook(
            "switch_ai",
            args,
            lambda env: ai_switch_steps(env, target, args.probe_timeout),
            standby_side=standby_side,
        )
    )
