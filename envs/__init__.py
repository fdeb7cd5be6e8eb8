"""Built-in Gymnasium environments (imported as ``rlagent.envs``)."""

from __future__ import annotations

import gymnasium

from rlagent.envs.text import AnyText

# env id -> "module:Class". Entry points are strings so that importing this package stays
# cheap: an env's module is imported only when gymnasium.make builds it.
BUILTIN_ENVS = {
    "rlagent/Calculator-v0": "rlagent.envs.calculator:CalculatorEnv",
    "rlagent/Echo-v0": "rlagent.envs.echo:EchoEnv",
    "rlagent/GymText-v0": "rlagent.envs.gym_text:GymTextEnv",
    "rlagent/Latency-v0": "rlagent.envs.latency:make",
    "rlagent/Search-v0": "rlagent.envs.search.env:SearchEnv",
    "rlagent/TextWorld-v0": "rlagent.envs.textworld_env:TextWorldEnv",
    "rlagent/Tool-v0": "rlagent.envs.tool:ToolEnv",
    "rlagent/Web-v0": "rlagent.envs.web.env:WebEnv",
}

for _env_id, _entry_point in BUILTIN_ENVS.items():
    # A second import (e.g. a Ray worker re-importing, or importlib.reload) must not
    # re-register: gymnasium warns when an id is overridden.
    if _env_id not in gymnasium.registry:
        gymnasium.register(id=_env_id, entry_point=_entry_point)

__all__ = ["AnyText", "BUILTIN_ENVS"]
