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

# Environments from hubs, named by a prefix: registered with Gymnasium the first time a
# process names one (importing a hub's package for every id up front would cost every process).
HUBS = {
    "textarena/": "rlagent.envs.textarena_env",
    "openenv/": "rlagent.envs.openenv_env",
    "verifiers/": "rlagent.envs.verifiers_env",
}


def register_hub(env_id: str) -> None:
    """Register ``env_id`` if it names a hub's env (``textarena/Wordle-v0``); else nothing."""
    import importlib

    for prefix, module in HUBS.items():
        if env_id.startswith(prefix):
            importlib.import_module(module).register(env_id)


__all__ = ["AnyText", "BUILTIN_ENVS", "HUBS", "register_hub"]
