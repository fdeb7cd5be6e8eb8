"""The package's architecture as rules on its import graph (docs/architecture.md).

Parses the imports of every module under rlagent/, envs/ (imported as rlagent.envs) and
rewards/ (rlagent.rewards) with ``ast``, function-level imports included (a lazy import is
still a dependency; only ``if TYPE_CHECKING:`` blocks are left out), and checks:
- there is no cycle;
- the stage packages (rollout, scoring, learner) import neither each other nor the driver's
  modules (trainer, weight_sync, schedule, batch, ...); the reward plugins (rewards/) run in
  the scoring stage and count as part of it, with one named exception (``ALLOWED``);
- the shared bottom layer (records, the plugin view, config, algorithms, tags, remote)
  imports no stage package and no driver module, and ``remote`` nothing of the project;
- the built-in envs import no reward code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"rlagent": REPO / "rlagent", "rlagent.envs": REPO / "envs", "rlagent.rewards": REPO / "rewards"}
STAGES = ("rlagent.rollout", "rlagent.scoring", "rlagent.learner")
DRIVER = (
    "rlagent.trainer",
    "rlagent.weight_sync",
    "rlagent.schedule",
    "rlagent.batch",
    "rlagent.evaluate",
    "rlagent.cli",
    "rlagent.control",
    "rlagent.tracking",
    "rlagent.plot",
)
# Reward plugins run in the reward service's process: they belong to the scoring stage.
PLUGINS = {"rlagent.rewards": "rlagent.scoring"}
# The LLM judge runs its own vLLM engine through the one vLLM adapter, so that every vLLM
# call of the project stays in rlagent/rollout/engine.py (docs/architecture.md).
ALLOWED = {("rlagent.rewards.judge", "rlagent.rollout.engine")}
SHARED = (
    "rlagent.records",
    "rlagent.episode_view",
    "rlagent.config",
    "rlagent.stage_config",
    "rlagent.typed_config",
    "rlagent.algos",
    "rlagent.shaping",
    "rlagent.tags",
    "rlagent.remote",
    "rlagent.imports",
)


def module_files() -> dict[str, Path]:
    out = {}
    for prefix, root in ROOTS.items():
        for path in root.rglob("*.py"):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([prefix, *parts])
            if prefix == "rlagent" and parts and parts[0] in ("envs", "rewards"):
                continue  # an installed copy would shadow the mapped folders; none in the repo
            out[name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (``from pkg import mod`` counts as ``pkg.mod``
    when that is a module, else as ``pkg``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    add(full if full in known else base)
            visit(child)

    visit(tree)
    return found


def graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imports(path, name, known) for name, path in files.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            strong(v)
    return out


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def stage_of(module: str) -> str | None:
    for package, stage in PLUGINS.items():
        if _in(module, package):
            return stage
    return next((s for s in STAGES if _in(module, s)), None)


def stage_violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in g.items():
        mine = stage_of(mod)
        if mine is None:
            continue
        for dep in deps:
            if (mod, dep) in ALLOWED:
                continue
            other = next((s for s in STAGES if _in(dep, s) and s != mine), None)
            if other or any(_in(dep, d) for d in DRIVER):
                bad.append(f"{mod} imports {dep}")
    return sorted(bad)


def test_the_graph_sees_the_packages():
    g = graph()
    assert "rlagent.envs.calculator" in g and "rlagent.rewards.format" in g
    assert "rlagent.trainer" in g
    assert any(_in(m, "rlagent.rollout") for m in g)


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_stage_packages_import_neither_each_other_nor_the_driver():
    assert stage_violations(graph()) == []


def shared_violations(g: dict[str, set[str]]) -> list[str]:
    bad = [
        f"{m} imports {d}" for m in SHARED for d in g.get(m, ()) if any(_in(d, p) for p in STAGES + DRIVER)
    ]
    bad += [f"rlagent.remote imports {d}" for d in g.get("rlagent.remote", ())]
    return sorted(bad)


def env_violations(g: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} imports {d}"
        for m, deps in g.items()
        if _in(m, "rlagent.envs")
        for d in deps
        if _in(d, "rlagent.rewards")
    )


def test_the_shared_layer_imports_no_stage_and_no_driver():
    assert shared_violations(graph()) == []


def test_envs_import_no_reward_code():
    assert env_violations(graph()) == []


# The checks themselves can fail: on small graphs with the faults they look for.
def test_a_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize(
    "deps, bad",
    [
        ({"rlagent.rollout.pool": {"rlagent.learner.worker"}}, True),
        ({"rlagent.learner.worker": {"rlagent.scoring.combine"}}, True),
        ({"rlagent.scoring.service": {"rlagent.trainer"}}, True),
        ({"rlagent.rollout.pool": {"rlagent.rollout.engine", "rlagent.records"}}, False),
        ({"rlagent.trainer": {"rlagent.rollout.pool", "rlagent.learner.group"}}, False),
        ({"rlagent.rewards.format": {"rlagent.learner.models"}}, True),
        ({"rlagent.rewards.format": {"rlagent.evaluate"}}, True),
        ({"rlagent.rewards.format": {"rlagent.rollout.engine"}}, True),
        ({"rlagent.rewards.judge": {"rlagent.rollout.engine"}}, False),
        ({"rlagent.rewards.format": {"rlagent.scoring.combine"}}, False),
    ],
)
def test_a_stage_importing_another_is_found(deps, bad):
    assert bool(stage_violations(deps)) == bad


@pytest.mark.parametrize(
    "deps, bad",
    [
        ({"rlagent.records": {"rlagent.rollout.episodes"}}, True),
        ({"rlagent.config": {"rlagent.trainer"}}, True),
        ({"rlagent.remote": {"rlagent.records"}}, True),
        ({"rlagent.algos": {"rlagent.records"}, "rlagent.remote": set()}, False),
    ],
)
def test_a_shared_module_importing_upwards_is_found(deps, bad):
    assert bool(shared_violations(deps)) == bad


def test_an_env_importing_reward_code_is_found():
    assert env_violations({"rlagent.envs.tool": {"rlagent.rewards.format"}}) == [
        "rlagent.envs.tool imports rlagent.rewards.format"
    ]
    assert env_violations({"rlagent.envs.tool": {"rlagent.tags"}}) == []
