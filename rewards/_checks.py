"""Constructor-argument checks shared by the built-in plugins.

A reward is configured from YAML (``rewards.components[i].kwargs``), so a typo there must
fail when the plugin is built, naming the plugin, the bad key and the keys it accepts --
not silently fall back to a default for the whole run.
"""

from __future__ import annotations

import inspect
import math
import re
from typing import Any

_TAG_NAME = re.compile(r"[A-Za-z_][\w.-]*")


def reject_unknown(owner: type, kwargs: dict[str, Any]) -> None:
    """TypeError naming ``owner``, the unknown keys and the options ``owner`` accepts."""
    if not kwargs:
        return
    params = inspect.signature(owner.__init__).parameters.values()
    known = [p.name for p in params if p.name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]
    raise TypeError(
        f"{owner.__name__} got unknown option(s) {sorted(kwargs)}; "
        f"its options are: {', '.join(known) or 'none'}"
    )


def number(owner: type, name: str, value: Any, low: float | None = None) -> float:
    """``value`` as a finite float (``>= low`` when given), or ValueError naming the option."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        raise ValueError(f"{owner.__name__}: {name} must be a finite number{bound}, got {value!r}")
    return float(value)


def tag(owner: type, name: str, value: Any) -> str:
    """``value`` as an XML-ish tag name (``answer``, ``tool_call``), or ValueError."""
    if not isinstance(value, str) or not _TAG_NAME.fullmatch(value):
        raise ValueError(f"{owner.__name__}: {name} must be a tag name such as 'answer', got {value!r}")
    return value


def choice(owner: type, name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{owner.__name__}: {name} must be one of {allowed}, got {value!r}")
    return value
