"""Evaluate IAM identity policies the way AWS does, for the statements this project writes.

The security rules and the tests ask of a declared role "may it do this?" without a cloud: explicit deny
wins, then any allow, else the implicit deny. Actions match case-insensitively with `*` and `?`,
resources case-sensitively; conditions support the operators the policies here use, and a condition on
a key the request does not carry fails (unless `...IfExists`). Anything else (NotAction, an unknown
operator) raises rather than guess: an evaluator that guesses proves nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final, Literal

Decision = Literal["allowed", "denied", "not allowed"]


@dataclass(frozen=True)
class Request:
    action: str  # "s3:GetObject"
    resource: str  # an ARN, or "*" for actions without resource-level permissions
    context: Mapping[str, str] = field(default_factory=dict)  # condition keys: {"s3:prefix": "backups/"}


class UnsupportedPolicy(ValueError):
    """A policy uses a part of the IAM language this evaluator does not model."""


@cache
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _matches(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return bool(_glob(pattern, ignore_case).match(value))


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


_OPERATORS: Final[dict[str, Callable[[str, str], bool]]] = {
    "StringEquals": lambda want, got: want == got,
    "StringLike": _matches,
    "ArnEquals": lambda want, got: want == got,
    "ArnLike": _matches,
    "Bool": lambda want, got: want.lower() == got.lower(),
}
_NEGATED: Final = {"StringNotEquals": "StringEquals", "StringNotLike": "StringLike", "ArnNotLike": "ArnLike"}


def _condition_holds(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    for operator, tests in condition.items():
        # A set operator over a multivalued key (a request here carries one value): ForAllValues holds
        # when the key is absent, as on AWS; ForAnyValue does not.
        qualifier, _, name = operator.rpartition(":") if operator.startswith("For") else ("", "", operator)
        name = name.removesuffix("IfExists")
        negate = name in _NEGATED
        compare = _OPERATORS.get(_NEGATED.get(name, name))
        if compare is None or qualifier not in ("", "ForAllValues", "ForAnyValue"):
            raise UnsupportedPolicy(f"condition operator {operator!r}")
        for key, wanted in tests.items():
            got = next((v for k, v in context.items() if k.lower() == key.lower()), None)
            if got is None:
                if qualifier == "ForAnyValue":
                    return False  # no value to match, negated or not
                if operator.endswith("IfExists") or negate or qualifier == "ForAllValues":
                    continue
                return False
            hit = any(compare(w, got) for w in _listed(wanted))
            if hit == negate:
                return False
    return True


def _applies(statement: Mapping[str, Any], request: Request) -> bool:
    unknown = {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
    if unknown:
        raise UnsupportedPolicy(f"{sorted(unknown)} in {statement}")
    return (
        any(_matches(a, request.action, ignore_case=True) for a in _listed(statement.get("Action", [])))
        and any(_matches(r, request.resource) for r in _listed(statement.get("Resource", [])))
        and _condition_holds(statement.get("Condition", {}), request.context)
    )


def statements_of(documents: Iterable[str | Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The statements of policy documents, given as JSON text or parsed."""
    found: list[Mapping[str, Any]] = []
    for document in documents:
        parsed = json.loads(document) if isinstance(document, str) else document
        statements = parsed.get("Statement", [])
        found.extend([statements] if isinstance(statements, Mapping) else statements)
    return found


def decide(statements: Sequence[Mapping[str, Any]], request: Request) -> Decision:
    applying = [s for s in statements if _applies(s, request)]
    if any(s.get("Effect") == "Deny" for s in applying):
        return "denied"
    return "allowed" if any(s.get("Effect") == "Allow" for s in applying) else "not allowed"


def allows(statements: Sequence[Mapping[str, Any]], request: Request) -> bool:
    return decide(statements, request) == "allowed"
