"""Every way a reward total is computed, in one pure module (no Ray, no plugins).

- ``total``: the weighted sum of an episode's components (the reward service, per episode);
- ``group_normalized``: the same sum over components z-scored within the task's group (the
  driver, once a group is complete: ``rewards.combine: group_normalized``);
- ``split_process``: the scalar without the per-turn (process) components, which become
  turn-level credit (``algo.turn_level_coef``; the batch builder);
- ``reward_metrics``: what is logged of them.

A component is a plugin's score: a float, a list of per-turn floats (a process reward, whose
scalar is its mean), or None (not applicable). A failed plugin is an error, never a 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rlagent.config import RewardSpec
from rlagent.records import FAILURES, Episode

Score = float | list[float | None] | None


def scalar(value: Any) -> float | None:
    """One number per episode: a per-turn (process) score counts as its mean.

    >>> scalar([1.0, None, 0.0]), scalar(0.5), scalar(None), scalar([])
    (0.5, 0.5, None, None)
    """
    if isinstance(value, list):
        vals = [v for v in value if v is not None]
        return float(sum(vals)) / len(vals) if vals else None
    return None if value is None else float(value)


def total(
    components: Mapping[str, Any],
    errors: Mapping[str, str],
    termination: str,
    specs: list[RewardSpec],
    on_error: str = "exclude",
    values: Mapping[str, float | None] | None = None,
) -> float | None:
    """The weighted sum of the components that scored; None when there is nothing to learn
    from: the env broke, no weighted plugin applied, or (``on_error: exclude``) a weighted
    plugin failed. ``values`` replaces the components' own scalars (group normalisation).

    >>> specs = [RewardSpec("a", 1.0), RewardSpec("b", 0.5), RewardSpec("c", 0.0)]
    >>> total({"a": 1.0, "b": [1.0, 0.0], "c": 9.0}, {}, "terminated", specs)
    1.25
    >>> total({"a": 1.0}, {"b": "ValueError: x"}, "terminated", specs) is None
    True
    >>> total({"a": 1.0}, {"b": "ValueError: x"}, "terminated", specs, "drop_component")
    1.0
    """
    if termination in FAILURES:
        return None  # the env or the agent broke: nothing to learn from this episode
    result, applied = 0.0, False
    for spec in specs:
        if spec.weight == 0:
            continue
        if spec.name in errors:
            if on_error == "exclude":
                return None
            continue
        value = values[spec.name] if values is not None else scalar(components.get(spec.name))
        if value is not None:
            result, applied = result + spec.weight * value, True
    return result if applied else None  # no weighted plugin applied: not a score of 0


def group_normalized(episodes: list[Episode], specs: list[RewardSpec], on_error: str) -> None:
    """Re-total each episode from components z-normalised within its group: for component
    c, (x - mean_g) / (std_g + 1e-6) over the group's episodes where c scored (population
    std; a component equal across the group contributes 0). Sets ``episode.reward``."""
    by_group: dict[int, list[Episode]] = {}
    for e in episodes:
        by_group.setdefault(e.group, []).append(e)
    for group in by_group.values():
        normed: list[dict[str, float | None]] = [{} for _ in group]
        for spec in specs:
            xs = [
                scalar(e.rewards.get(spec.name)) if spec.name not in e.reward_errors else None for e in group
            ]
            nums = [x for x in xs if x is not None]
            mean = sum(nums) / len(nums) if nums else 0.0
            std = (sum((x - mean) ** 2 for x in nums) / len(nums)) ** 0.5 if nums else 0.0
            for d, x in zip(normed, xs):
                d[spec.name] = None if x is None else (0.0 if std == 0 else (x - mean) / (std + 1e-6))
        for e, values in zip(group, normed):
            e.reward = total(e.rewards, e.reward_errors, e.termination, specs, on_error, values)


def split_process(episode: Episode, specs: list[RewardSpec]) -> tuple[float | None, list[float]]:
    """(scalar reward without the per-turn components, weighted per-turn reward sums).

    Components whose score is a list (process rewards) leave the episode's total and
    become one reward per assistant turn; an unscored turn counts 0. Only defined for
    ``weighted_sum`` totals (the config refuses turn-level credit with group_normalized).
    """
    turns = [0.0] * len(episode.turns)
    if episode.reward is None:
        return None, turns
    rest = episode.reward
    for spec in specs:
        value = episode.rewards.get(spec.name)
        if spec.weight == 0 or not isinstance(value, list):
            continue
        rest -= spec.weight * (scalar(value) or 0.0)
        for k, v in enumerate(value[: len(turns)]):
            turns[k] += spec.weight * (v or 0.0)
    return rest, turns


def reward_metrics(episodes: list[Episode], specs: list[RewardSpec]) -> dict[str, float]:
    """``reward/mean`` and, per plugin, ``reward/<name>/mean``, ``/std``, ``/errors``,
    ``/none`` (not applicable) and ``/latency_s`` (mean seconds per call)."""
    totals = [e.reward for e in episodes if e.reward is not None]
    out = {
        "reward/mean": sum(totals) / len(totals) if totals else float("nan"),
        "reward/invalid": float(len(episodes) - len(totals)),
    }
    for spec in specs:
        vals = [scalar(e.rewards.get(spec.name)) for e in episodes if spec.name not in e.reward_errors]
        nums = [v for v in vals if v is not None]
        mean = sum(nums) / len(nums) if nums else float("nan")
        lat = [e.reward_latency[spec.name] for e in episodes if spec.name in e.reward_latency]
        out[f"reward/{spec.name}/mean"] = mean
        out[f"reward/{spec.name}/std"] = (
            (sum((v - mean) ** 2 for v in nums) / len(nums)) ** 0.5 if nums else float("nan")
        )
        out[f"reward/{spec.name}/errors"] = float(sum(spec.name in e.reward_errors for e in episodes))
        out[f"reward/{spec.name}/none"] = float(len(vals) - len(nums))
        out[f"reward/{spec.name}/latency_s"] = sum(lat) / len(lat) if lat else float("nan")
    return out
