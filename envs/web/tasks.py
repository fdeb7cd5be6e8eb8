"""Which MiniWoB++ tasks ``rlagent/Web-v0`` runs, their difficulty tiers, and the generator."""

from __future__ import annotations

import random
from functools import cache
from typing import Any

ENV_ID = "rlagent/Web-v0"
MAX_SEED = 2**31 - 1

# Tiers over tasks that element clicks, typing and key presses can solve (no drag, no
# coordinates, no canvas), easiest first. Every task of the package stays available by name.
TIERS: dict[int, tuple[str, ...]] = {
    # one click on the element the utterance names
    1: (
        "click-button",
        "click-link",
        "click-test",
        "click-test-2",
        "click-dialog",
        "click-dialog-2",
        "focus-text",
        "click-tab",
        "click-widget",
    ),
    # pick among choices: checkboxes, radio buttons, tabs, sequences of clicks
    2: (
        "click-checkboxes",
        "click-checkboxes-large",
        "click-checkboxes-soft",
        "click-option",
        "click-button-sequence",
        "click-collapsible-nodelay",
        "click-tab-2-easy",
    ),
    # type text into fields, then submit
    3: (
        "enter-text",
        "enter-text-2",
        "enter-text-dynamic",
        "enter-password",
        "focus-text-2",
        "login-user",
        "simple-arithmetic",
        "use-autocomplete-nodelay",
    ),
    # several steps across a changing page
    4: (
        "login-user-popup",
        "email-inbox-delete",
        "email-inbox-forward-nl",
        "search-engine",
        "navigate-tree",
        "click-collapsible-2-nodelay",
        "social-media",
        "terminal",
    ),
}
DIFFICULTIES = tuple(sorted(TIERS))


@cache
def all_tasks() -> tuple[str, ...]:
    """Every task the installed ``miniwob`` package registers with Gymnasium, by name."""
    import gymnasium
    import miniwob  # noqa: F401  (registers the miniwob/<task>-v1 ids)

    names = [
        env_id[len("miniwob/") :].rsplit("-v", 1)[0]
        for env_id in gymnasium.registry
        if env_id.startswith("miniwob/")
    ]
    return tuple(sorted(names))


def check_task_name(name: Any) -> str:
    """``name`` if the miniwob package has such a task, else a ValueError naming close ones."""
    if isinstance(name, str) and name in all_tasks():
        return name
    import difflib

    close = difflib.get_close_matches(str(name), all_tasks(), n=5)
    hint = f"; did you mean {', '.join(close)}?" if close else f" (tiers: {tier_listing()})"
    raise ValueError(f"{ENV_ID}: unknown MiniWoB task {name!r}{hint}")


def tier_listing() -> str:
    return "; ".join(f"{d}: {', '.join(names)}" for d, names in TIERS.items())


def tier_of(name: str) -> int | None:
    return next((d for d, names in TIERS.items() if name in names), None)


def generate_task(
    rng: random.Random,
    difficulty: int,
    task: str | None = None,
    tasks: list[str] | None = None,
    **_env_kwargs: Any,
) -> dict[str, Any]:
    """A task at ``difficulty``: a MiniWoB task of that tier (or the env's fixed ``task``, or
    one of its ``tasks``) and a page seed. The prompt is informative only: the model reads the
    task from the page.

    >>> generate_task(random.Random(0), 1)["task"] in TIERS[1]
    True
    """
    if difficulty not in TIERS:
        raise ValueError(f"{ENV_ID}: difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    if task is not None:
        pool = [check_task_name(task)]
    elif tasks:
        pool = [check_task_name(t) for t in tasks]
    else:
        pool = list(TIERS[difficulty])
    name = rng.choice(pool)
    seed = rng.randrange(MAX_SEED)
    return {
        "id": f"web-{name}-{seed}",
        "env": ENV_ID,
        "prompt": f"MiniWoB++ task {name} (page seed {seed})",
        "task": name,
        "seed": seed,
        "difficulty": difficulty,
    }


def similar_task(
    rng: random.Random, task: dict[str, Any], difficulty: int, **env_kwargs: Any
) -> dict[str, Any]:
    """A new task with the skill of ``task`` (self-evolving curricula): the same MiniWoB task
    on a new page seed; its tier is its difficulty, whatever level was asked for."""
    name = task.get("task")
    if not name:
        return generate_task(rng, difficulty, **env_kwargs)
    return generate_task(rng, tier_of(name) or difficulty, task=name)
