"""Where the actors run: one Ray placement group per role, created in one place, checked
against the cluster first and waited on with a timeout whose error names what is missing.

Roles: the rollout workers (a bundle each: CPUs and the engine's GPUs; spread over nodes),
the learner ranks (a bundle each; packed, so ranks share nodes and fast links), and the
reward service actors (CPU only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray

from rlagent.config import Config


class PlacementError(RuntimeError):
    """The cluster cannot hold the actors the config asks for."""


@dataclass
class Role:
    name: str  # as the config says it: "rollout workers", ...
    count: int
    bundle: dict[str, float]  # resources of one actor
    strategy: str  # Ray placement strategy for the group
    keys: str  # the config keys that set it, for error messages


def roles(cfg: Config, only: tuple[str, ...] | None = None) -> list[Role]:
    """The run's roles (``only``: just those named, e.g. no learner for an evaluation)."""
    r, lc, rw = cfg.rollout, cfg.learner, cfg.rewards

    def bundle(cpus: float, gpus: float) -> dict[str, float]:
        return {k: v for k, v in (("CPU", cpus), ("GPU", gpus)) if v > 0} or {"CPU": 0.01}

    every = [
        Role(
            "rollout workers",
            r.num_workers,
            bundle(r.num_cpus, r.num_gpus),
            "SPREAD",
            "rollout.num_workers x (rollout.num_cpus, rollout.num_gpus)",
        ),
        Role(
            "learner ranks",
            lc.num_ranks,
            bundle(lc.num_cpus, lc.num_gpus),
            "PACK",
            "learner.num_ranks x (learner.num_cpus, learner.num_gpus)",
        ),
        Role(
            "reward service",
            rw.num_actors,
            bundle(rw.num_cpus, 0),
            "PACK",
            "rewards.num_actors x rewards.num_cpus",
        ),
    ]
    return [role for role in every if only is None or role.name in only]


def check_resources(cfg: Config, cluster: dict[str, float], only: tuple[str, ...] | None = None) -> None:
    """Fail before anything starts when the whole cluster is too small."""
    wanted: dict[str, float] = {}
    for role in roles(cfg, only):
        for k, v in role.bundle.items():
            wanted[k] = wanted.get(k, 0.0) + v * role.count
    short = {k: v for k, v in wanted.items() if v > cluster.get(k, 0.0) + 1e-9}
    if short:
        parts = "; ".join(f"{r.name}: {r.count} x {r.bundle} ({r.keys})" for r in roles(cfg, only))
        have = ", ".join(f"{k} {cluster.get(k, 0.0):g}" for k in sorted(short))
        need = ", ".join(f"{k} {v:g}" for k, v in sorted(short.items()))
        raise PlacementError(f"the config needs {need} but the cluster has {have} in all ({parts})")


class Placement:
    """The placement groups of a run; ``options(role, i)`` places the i-th actor of a role.
    ``only`` reserves just the named roles."""

    def __init__(self, cfg: Config, only: tuple[str, ...] | None = None):
        from ray.util.placement_group import placement_group

        check_resources(cfg, ray.cluster_resources(), only)
        self.timeout_s = cfg.ray.placement_timeout_s
        self.groups = {
            role.name: (role, placement_group([role.bundle] * role.count, strategy=role.strategy))
            for role in roles(cfg, only)
        }
        pending = {g.ready(): name for name, (_, g) in self.groups.items()}
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=self.timeout_s)
        missing = [pending[ref] for ref in pending if ref not in ready]
        if missing:
            self.remove()
            detail = "; ".join(
                f"{n}: {self.groups[n][0].count} x {self.groups[n][0].bundle} ({self.groups[n][0].keys})"
                for n in missing
            )
            raise PlacementError(
                f"waited {self.timeout_s:.0f} s (ray.placement_timeout_s) for the cluster to "
                f"place {detail}; available now: {ray.available_resources()}"
            )

    def options(self, role: str, index: int) -> dict[str, Any]:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        _, group = self.groups[role]
        return {
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                placement_group=group, placement_group_bundle_index=index
            )
        }

    def __enter__(self) -> Placement:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()  # also ends the actors placed in the groups

    def remove(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for _, group in self.groups.values():
            remove_placement_group(group)
