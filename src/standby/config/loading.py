"""Read stack configuration from a stack file or from the running Pulumi program, and validate it.

Both paths end in `validate()`, so `scripts/check_config.py` and `pulumi up` refuse exactly the same
things with exactly the same messages.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Union

import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from standby.config.models import MODELS, StackConfig
from standby.errors import ConfigError
from standby.names import CONFIG_NAMESPACE

PREFIX: Final = f"{CONFIG_NAMESPACE}:"
ENCRYPTED: Final = "[encrypted]"  # stands in for a `secure:` value we cannot (and need not) decrypt


def validate(raw: Mapping[str, Any], secret_keys: set[str], source: str = "") -> StackConfig:
    """Validate the `standby:` keys of a stack's configuration.

    `raw` maps full keys ("standby:app", "aws:region", ...) to values; other namespaces belong to the
    providers and are left alone. `secret_keys` holds the full keys whose values are Pulumi secrets.
    """
    ours = {k.removeprefix(PREFIX): _decode(v) for k, v in raw.items() if k.startswith(PREFIX)}
    role = ours.get("role")
    if role not in MODELS:
        got = "it is not set" if role is None else f"Got {role!r}"
        raise ConfigError(
            [f"{PREFIX}role: must be one of {', '.join(MODELS)}. {got}. "
             f"Set it with `pulumi config set {PREFIX}role <role>`."],
            source,
        )  # fmt: skip
    model = MODELS[role]
    secret_fields = _secret_fields(model)
    problems = [
        f"{PREFIX}{f}: holds plain text. Secrets must be Pulumi secrets: set each value with "
        f"`pulumi config set --secret --path '{PREFIX}{f}.NAME' <value>`."
        for f in sorted(secret_fields)
        if ours.get(f) and f"{PREFIX}{f}" not in secret_keys
    ]
    try:
        config = model.model_validate(ours)
    except ValidationError as exc:
        problems += [_describe(e, model, secret_fields) for e in exc.errors()]
    if problems:
        raise ConfigError(problems, source)
    return config


def from_stack_file(path: Path) -> StackConfig:
    """Validate a `Pulumi.<stack>.yaml` without Pulumi; `secure:` values count as secrets."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"the stack file is not UTF-8 (byte {exc.start}): save it as UTF-8, as Pulumi expects."],
            str(path),
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        cause = " ".join(str(exc).split())
        raise ConfigError([f"cannot read the stack file: {cause}"], str(path)) from None
    config = (document or {}).get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(["the stack file has no `config:` mapping."], str(path))
    raw: dict[str, Any] = {}
    secret_keys: set[str] = set()
    for key, value in config.items():
        raw[key], all_secure = _strip_secure(value)
        if all_secure:
            secret_keys.add(key)
    return validate(raw, secret_keys, str(path))


def from_pulumi() -> StackConfig:
    """Validate the configuration of the running Pulumi program, before any resource is declared."""
    from pulumi.runtime import config as runtime_config  # the runtime owns this state

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = {k for k in raw if runtime_config.is_config_secret(k)}
    secret_keys |= set(runtime_config.get_config_secret_keys_env())
    return validate(raw, secret_keys, "the stack configuration")


def _decode(value: Any) -> Any:
    # The Pulumi engine hands structured values to the program as JSON text.
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _strip_secure(value: Any) -> tuple[Any, bool]:
    """Replace `{secure: ...}` leaves by a placeholder; tell whether every leaf was one."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return ENCRYPTED, True
        pairs = {k: _strip_secure(v) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, bool(pairs) and all(s for _, s in pairs.values())
    if isinstance(value, list):
        items = [_strip_secure(v) for v in value]
        return [v for v, _ in items], bool(items) and all(s for _, s in items)
    return value, False


# --- messages --------------------------------------------------------------------------------------


def _describe(error: ErrorDetails, model: type[BaseModel], secret_fields: set[str]) -> str:
    loc = error["loc"]
    key = _key(loc)
    secret = bool(loc) and loc[0] in secret_fields
    got = "[secret]" if secret else repr(error.get("input"))
    kind = error["type"]
    if kind == "missing":
        how = f"--path '{key}'" if len(loc) > 1 else key
        return f"{key}: required, but not set. Set it with `pulumi config set {how} <value>`."
    if kind == "extra_forbidden":
        # Never the value: an unknown key is often a misspelled secret one (standby:herokuApikey).
        allowed = _allowed_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]}?" if close else ""
        return f"{key}: unknown key.{hint} Allowed keys here: {', '.join(allowed)}."
    if kind == "value_error":
        # Our validators write complete sentences: "must be one of ... Got ...".
        message = str(error.get("ctx", {}).get("error", error["msg"]))
        return f"{key}: {message}"
    if kind == "enum":
        members = [str(m.value) for m in _type_at(model, loc)]
        return f"{key}: must be one of {', '.join(members)}. Got {got}."
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high = _bounds(model, loc)
        return f"{key}: must be between {low} and {high}. Got {got}."
    message = error["msg"]
    return f"{key}: {message[:1].lower()}{message[1:]}. Got {got}."


def _key(loc: tuple[int | str, ...]) -> str:
    text = PREFIX
    for i, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += part if i == 0 else f".{part}"
    return text


def _secret_fields(model: type[BaseModel]) -> set[str]:
    return {
        field.alias or name
        for name, field in model.model_fields.items()
        if SecretStr in set(_walk_types(field.annotation))
    }


def _allowed_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys a model accepts at `loc`."""
    current = _type_at(model, loc)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(f.alias or n for n, f in current.model_fields.items())
    return []


def _bounds(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[Any, Any]:
    """The (ge, le) constraints of the field at `loc`."""
    parent = _type_at(model, loc[:-1])
    low: Any = "-inf"
    high: Any = "inf"
    if isinstance(parent, type) and issubclass(parent, BaseModel):
        for name, field in parent.model_fields.items():
            if (field.alias or name) == loc[-1]:
                for rule in field.metadata:
                    low = getattr(rule, "ge", low)
                    high = getattr(rule, "le", high)
    return low, high


def _type_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> Any:
    """The type expected at `loc`, found by following the field types down the path."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
            current = field.annotation if field else None
        else:
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[-1] if args else None  # dict[K, V] -> V, list[V] -> V
        while typing.get_origin(current) in (Union, types.UnionType, typing.Annotated):
            current = next(a for a in typing.get_args(current) if a is not type(None))
    return current


def _walk_types(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _walk_types(arg)
