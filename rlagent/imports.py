"""User code named in a config (``package.module:function``), imported with a clear error."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from rlagent.typed_config import ConfigError


def import_callable(spec: str, key: str, search_path: str | None = None) -> Callable[..., Any]:
    """``package.module:function``; ``search_path`` (e.g. the driver's working directory) is
    put on ``sys.path`` first. A ``ConfigError`` naming ``key`` when it cannot be loaded."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ConfigError(f"{key}: expected 'package.module:function', got {spec!r}")
    if search_path and search_path not in sys.path:
        sys.path.append(search_path)
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{key}: cannot load {spec!r}: {err}") from err
    if not callable(fn):
        raise ConfigError(f"{key}: {spec!r} is not callable")
    return fn  # type: ignore[no-any-return]
