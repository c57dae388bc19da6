"""Configs to and from plain data: JSON/TOML/command-line values coerced to the annotated types, dotted-path
changes, and the hash payload (defaults left out, so a new field keeps old run directories addressable)."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import field
from typing import Any

from ticketlab.errors import ConfigError


def settable_fields(cls: type) -> dict[str, Any]:
    """Field name -> annotated type of a config class, in order: its own `settable_fields()` where it has one (the
    experiment config, whose task sections are registered at run time), else its dataclass fields."""
    own = getattr(cls, "settable_fields", None)
    if own is not None:
        return own()
    hints = typing.get_type_hints(cls)
    return {spec.name: hints[spec.name] for spec in dataclasses.fields(cls)}


def unhashed(default: Any) -> Any:
    """A field that does not change results (paths, download switches), so it stays out of the hash."""
    return field(default=default, metadata={"hash": False})


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    return value


def hashable_dict(instance: Any) -> dict[str, Any]:
    """The fields of a config dataclass that change results and differ from their defaults (nested sections
    likewise, left out when empty): the payload of the run directory's hash."""
    result = {}
    for spec in dataclasses.fields(instance):
        if spec.metadata.get("hash", True) is False:
            continue
        value = getattr(instance, spec.name)
        if dataclasses.is_dataclass(value):
            nested = hashable_dict(value)
            if nested:
                result[spec.name] = nested
        elif value != spec.default:
            result[spec.name] = to_jsonable(value)
    return result


def set_dotted(values: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    target = values
    for part in parts[:-1]:
        if not isinstance(target.get(part), dict):
            raise ConfigError(f"unknown config key {dotted!r}")
        target = target[part]
    target[parts[-1]] = value


def _pair(text: str, label: str) -> list[str]:
    name, equals, value = text.rpartition("=")
    if not equals or not name.strip() or not value.strip():
        raise ConfigError(f"{label} item {text!r} must be NAME=VALUE, e.g. layers.0.weight=0.3")
    return [name.strip(), value.strip()]


def type_text(annotation: Any) -> str:
    return str(annotation).replace("typing.", "")


def build(cls: type, values: dict[str, Any], prefix: str, strict: bool) -> Any:
    """An instance of config class `cls` from plain data; ConfigError naming the first unknown key or bad value."""
    if not isinstance(values, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or 'top level'!r} must be a table/object")
    hints = settable_fields(cls)
    known = set(hints)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}; allowed in this section: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, raw in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build(hint, raw, prefix=f"{prefix}{name}.", strict=strict)
        else:
            kwargs[name] = coerce(raw, hint, prefix + name, strict)
    return cls(**kwargs)


def coerce(raw: Any, hint: Any, label: str, strict: bool = False) -> Any:
    """Convert JSON/TOML/CLI text values to the annotated type, with a one-line error on failure.

    `strict` (values parsed from JSON or TOML): the value must already have the field's JSON type, since text there
    is a mistake rather than the command line's only form; "none"/"null" still unset an optional field (TOML has no
    null)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", "")):
            return None
        inner = [arg for arg in args if arg is not type(None)][0]
        return coerce(raw, inner, label, strict)
    if strict:
        _check_json_type(raw, hint, label)
    if origin is tuple:
        if isinstance(raw, str):
            text = raw.strip()
            if text.startswith(("[", "(")):
                try:
                    raw = json.loads(text.replace("(", "[").replace(")", "]"))
                except json.JSONDecodeError:
                    raise ConfigError(f"{label} value {raw!r} is not a list") from None
            else:
                raw = [item.strip() for item in text.split(",") if item.strip()]
                if len(args) == 2 and typing.get_origin(args[0]) is tuple:  # pairs: name=value,name2=value2
                    raw = [_pair(item, label) for item in raw]
        if not isinstance(raw, (list, tuple)):
            raise ConfigError(f"{label} value {raw!r} must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(item, args[0], label, strict) for item in raw)
        if len(raw) != len(args):
            raise ConfigError(f"{label} value {raw!r} must have {len(args)} items")
        return tuple(coerce(item, arg, label, strict) for item, arg in zip(raw, args))
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return raw.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{label} value {raw!r} must be true or false")
    if hint in (int, float):
        if isinstance(raw, bool):
            raise ConfigError(f"{label} value {raw!r} must be a number")
        try:
            number = hint(raw) if not (hint is int and isinstance(raw, float)) else None
        except (TypeError, ValueError):
            number = None
        if number is None or (hint is int and isinstance(raw, str) and not re.fullmatch(r"\s*-?\d+\s*", raw)):
            kind = "an integer" if hint is int else "a number"
            raise ConfigError(f"{label} value {raw!r} must be {kind}")
        return number
    if hint is str:
        if isinstance(raw, (dict, list)):
            raise ConfigError(f"{label} value {raw!r} must be text")
        return str(raw)
    return raw


def _check_json_type(raw: Any, hint: Any, label: str) -> None:
    """ConfigError unless a parsed JSON/TOML value has the JSON type of `hint` (an integer is a number too)."""
    if typing.get_origin(hint) is tuple:
        ok, kind = isinstance(raw, (list, tuple)), "a list"
    elif hint is bool:
        ok, kind = isinstance(raw, bool), "true or false"
    elif hint is int:
        ok, kind = isinstance(raw, int) and not isinstance(raw, bool), "an integer"
    elif hint is float:
        ok, kind = isinstance(raw, (int, float)) and not isinstance(raw, bool), "a number"
    elif hint is str:
        ok, kind = isinstance(raw, str), "text"
    else:
        return
    if not ok:
        quoted = " (not text in quotes)" if isinstance(raw, str) else ""
        raise ConfigError(f"{label} value {raw!r} must be {kind}{quoted}")
