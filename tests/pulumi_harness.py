"""Run a Pulumi program in-process under mocks, and read back what it declared.

`pulumi.runtime.set_mocks` is global to the process, so tests install it through the `pulumi_mocks`
fixture (conftest), never at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockCallArgs, MockResourceArgs
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await


@dataclass
class Declared:
    typ: str
    name: str
    inputs: dict[str, Any]


# Outputs the real providers compute; the mocks stand in for them so outputs are realistic.
def _computed_outputs(args: MockResourceArgs) -> dict[str, Any]:
    inputs = args.inputs
    if args.typ == "heroku:index/app:App" or args.typ.startswith("heroku:app/app:App"):
        return {
            "uuid": f"uuid-{inputs.get('name')}",
            "webUrl": f"https://{inputs.get('name')}.herokuapp.com/",
        }
    if args.typ.startswith("heroku:domain/domain:Domain"):
        return {"cname": f"{inputs['hostname'].replace('.', '-')}.herokudns.com"}
    if args.typ.startswith("heroku:addon/addon:Addon"):
        return {"name": inputs.get("name") or f"postgresql-{args.name}"}
    return {}


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    declared: list[Declared] = field(default_factory=list)

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.declared.append(Declared(args.typ, args.name, dict(args.inputs)))
        return f"{args.name}-id", {**args.inputs, **_computed_outputs(args)}

    def call(self, args: MockCallArgs) -> dict[str, Any]:
        return {}

    def of_type(self, typ: str) -> list[Declared]:
        return [d for d in self.declared if d.typ == typ]

    def named(self, name: str) -> Declared:
        return next(d for d in self.declared if d.name == name)


def run_program(program: Callable[[], Any]) -> Any:
    """Run `program` as the Pulumi engine would, and wait until every resource is registered."""
    result: dict[str, Any] = {}

    def body() -> None:
        result["value"] = program()

    _sync_await(run_pulumi_func(body))
    return result.get("value")


def resolve(value: Any) -> tuple[Any, bool]:
    """The plain value of an Output (or any input) and whether it is secret."""
    output = pulumi.Output.from_input(value)
    return _sync_await(output.future()), bool(_sync_await(output.is_secret()))
