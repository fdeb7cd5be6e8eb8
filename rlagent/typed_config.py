"""A typed tree of dataclasses from YAML: every key known, every value of its field's type.

Generic (it knows no rlagent section): ``build(cls, raw)`` turns nested mappings into the
dataclass ``cls``, raising ``ConfigError`` with the dotted key of the first bad value, and
the closest known key when one is misspelt.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A bad configuration value; the message starts with the dotted key."""


def parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(err).split())}") from err


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = d.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{key}: {p} is not a section")
        d = nxt
    d[parts[-1]] = value


def build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names, key=str)  # YAML keys may be numbers or null too
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), sorted(names), n=1)
        hint = f"did you mean {_join(where, close[0])}? " if close else ""
        raise ConfigError(
            f"{_join(where, str(unknown[0]))}: unknown key ({hint}allowed: {', '.join(sorted(names))})"
        )
    return cls(**{k: _coerce(hints[k], v, _join(where, k)) for k, v in raw.items()})


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _coerce(tp: Any, value: Any, key: str) -> Any:  # noqa: C901 - one branch per type form
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _coerce(a, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is Literal:
        # Same type too: True == 1 and 1.0 == 1 in Python, but neither is ZeRO stage 1.
        if not any(value == a and type(value) is type(a) for a in args):
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = args or (Any, Any)
        return {_coerce(kt, k, f"{key} (key {k!r})"): _coerce(vt, v, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads `1e-4` (no dot) as a string; accept what Python reads as a float.
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and (
        not isinstance(value, tp) or (tp is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value
