"""Curriculum: which tasks each step trains on, decided from how the policy did so far.

A sampler has ``sample(n) -> tasks`` and ``update(groups) -> metrics`` (``groups``: every
group of episodes the step rolled out, one list per task), and a JSON-able state that the
checkpoint stores, so a resumed run draws the same next tasks. ``curriculum.name`` picks:

- ``uniform``: a uniformly drawn dataset task, or a generated task at a uniform level.
- ``ladder``: train at one level; move up when its success rate rises above the band
  ``[target_low, target_high]``, back when it falls below (``review_share`` of the tasks
  come from the levels below).
- ``learning_progress``: prefer tasks (dataset) or levels (generator) whose success rate is
  changing (fast minus slow moving average) or near 0.5, where GRPO groups carry signal.

Any of them can also replay recently failed tasks (``replay_share``) and, self-evolving,
make new tasks like the ones the policy failed (``evolve_share``; the env's generator).
"""

from __future__ import annotations

import random
from collections import Counter, deque
from typing import Any

from rlagent.checkpoint import rng_from_json, rng_to_json
from rlagent.config import Config, ConfigError
from rlagent.records import Episode, Task, succeeded
from rlagent.tasks import TaskSource


class Sampler:
    """Shared parts: replay, self-evolving tasks, metrics and state. Subclasses pick the
    rest of each step's tasks (``_pick``) and learn from group success rates (``_observe``)."""

    name = "base"

    def __init__(self, cfg: Config, source: TaskSource | None = None):
        self.cc = cfg.curriculum
        self.source = source or TaskSource(cfg)
        self.rng = random.Random(cfg.run.seed)
        self.replay: deque[Task] = deque(maxlen=self.cc.replay_size)
        self.failed: deque[Task] = deque(maxlen=self.cc.evolve_pool)
        self.drawn: Counter[str] = Counter()  # tasks handed out since the last update, by origin
        # replayed or generated draws since the last update, by task id (a picked task may
        # share an id with one: groups come back in draw order, these first)
        self.origin: Counter[str] = Counter()
        self.evolve_errors = 0
        if self.cc.evolve_share > 0 and not self.source.can_generate:
            raise ConfigError(
                f"curriculum.evolve_share: {cfg.env.id} has no task generator "
                f"(generate_task or similar_task) to make new tasks with"
            )

    # ---- sampling
    def sample(self, n: int) -> list[Task]:
        n_replay = min(len(self.replay), int(n * self.cc.replay_share))
        n_evolve = min(len(self.failed), int(n * self.cc.evolve_share))
        replayed = [self._take(self.replay) for _ in range(n_replay)]
        generated = [t for t in (self._evolve() for _ in range(n_evolve)) if t is not None]
        for origin, ts in (("replayed", replayed), ("generated", generated)):
            self.drawn[origin] += len(ts)
            self.origin.update(t.id for t in ts)
        tasks = replayed + generated
        picked = self._pick(n - len(tasks))
        self.drawn["picked"] += len(picked)
        return tasks + picked

    def _take(self, pool: deque[Task]) -> Task:
        i = self.rng.randrange(len(pool))
        task = pool[i]
        del pool[i]
        return task

    def _evolve(self) -> Task | None:
        parent = self._take(self.failed)
        levels = self.source.levels
        at = levels.index(parent.difficulty) if parent.difficulty in levels else 0
        level = levels[max(at - self.rng.randrange(2), 0)]  # same level or the one below
        try:
            child = self.source.similar(self.rng, parent, level)
        except Exception as err:  # noqa: BLE001 - a generator's failure is counted, not fatal
            self.evolve_errors += 1
            print(f"[rlagent] curriculum: no task like {parent.id} at level {level}: {err}", flush=True)
            return None
        return child

    def _pick(self, n: int) -> list[Task]:
        raise NotImplementedError

    def _at(self, level: int) -> Task:
        """A task at ``level``, for samplers that learn per level: the task must say so."""
        task = self.source.draw(self.rng, level)
        if task.difficulty != level:
            raise ConfigError(
                f"data.difficulties: asked {self.source.env_id} for a task at level {level} and "
                f"got difficulty {task.difficulty} (do its env.kwargs fix the difficulty?); "
                f"list only the levels it makes, e.g. data.difficulties=[{task.difficulty}]"
            )
        return task

    # ---- learning from outcomes
    def update(self, groups: list[list[Episode]]) -> dict[str, float]:
        by_level: dict[int, list[bool]] = {}
        outcomes: list[tuple[Task, list[bool], bool]] = []
        zero_var = 0
        for group in groups:
            rewards = [e.reward for e in group if e.reward is not None]
            zero_var += len(rewards) > 0 and max(rewards) == min(rewards)
            wins = [w for w in (succeeded(e, self.cc.success_reward) for e in group) if w is not None]
            if not wins:
                continue
            task = group[0].task
            chosen = self.origin[task.id] > 0  # replayed or generated: chosen for being hard
            if chosen:
                self.origin[task.id] -= 1
            by_level.setdefault(task.difficulty, []).extend(wins)
            rate = sum(wins) / len(wins)
            outcomes.append((task, wins, chosen))
            if rate < 0.5 and self.cc.replay_share > 0:
                self.replay.append(task)
            if rate == 0 and self.cc.evolve_share > 0:
                self.failed.append(task)
        level = self.level(groups)  # the level this step trained at, before any move
        self._observe(outcomes)
        drawn = max(sum(self.drawn.values()), 1)
        metrics = {f"curriculum/success_d{d}": sum(w) / len(w) for d, w in sorted(by_level.items())}
        metrics |= {
            "curriculum/level": level,
            "curriculum/zero_variance_share": zero_var / max(len(groups), 1),
            "curriculum/generated_share": self.drawn["generated"] / drawn,
            "curriculum/replayed_share": self.drawn["replayed"] / drawn,
            "curriculum/evolve_errors": float(self.evolve_errors),
        }
        self.drawn.clear()
        self.origin.clear()
        return metrics

    def _observe(self, outcomes: list[tuple[Task, list[bool], bool]]) -> None:
        """Learn from each group's successes (in the order the groups came); the flag says
        whether the task was replayed or generated rather than picked."""

    def level(self, groups: list[list[Episode]]) -> float:
        """The level trained at: here the mean difficulty of the step's tasks."""
        levels = [g[0].task.difficulty for g in groups if g]
        return sum(levels) / max(len(levels), 1)

    # ---- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rng": rng_to_json(self.rng.getstate()),
            "replay": [t.to_dict() for t in self.replay],
            "failed": [t.to_dict() for t in self.failed],
            "drawn": dict(self.drawn),
            "origin": dict(self.origin),
            "evolve_errors": self.evolve_errors,
            **self._state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name", "uniform") != self.name:  # older checkpoints: uniform
            raise ConfigError(
                f"curriculum.name: the checkpoint's sampler is "
                f"{state.get('name', 'uniform')!r}, "
                f"the config asks for {self.name!r}"
            )
        self.rng.setstate(rng_from_json(state["rng"]))
        self.replay = deque((Task.from_dict(d) for d in state.get("replay", [])), maxlen=self.cc.replay_size)
        self.failed = deque((Task.from_dict(d) for d in state.get("failed", [])), maxlen=self.cc.evolve_pool)
        self.drawn = Counter(state.get("drawn", {}))
        self.origin = Counter(state.get("origin", {}))
        self.evolve_errors = state.get("evolve_errors", 0)
        self._load(state)

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, state: dict[str, Any]) -> None:
        pass


class UniformSampler(Sampler):
    """A uniformly drawn dataset task, or a generated task at a uniformly drawn level."""

    name = "uniform"

    def _pick(self, n: int) -> list[Task]:
        src = self.source
        if src.dataset is not None:
            return [self.rng.choice(src.dataset) for _ in range(n)]
        return [src.draw(self.rng, self.rng.choice(src.levels)) for _ in range(n)]


class LadderSampler(Sampler):
    """One level at a time, easiest first; up above the target band, back below it.

    A decision needs ``min_episodes`` outcomes at the current level since the last move; the
    rate is taken over those (at most ``window`` of them). Review tasks from lower levels
    keep what was learnt but do not count towards the decision.
    """

    name = "ladder"

    def __init__(self, cfg: Config, source: TaskSource | None = None):
        super().__init__(cfg, source)
        levels = self.source.levels
        start = self.cc.start_level if self.cc.start_level is not None else levels[0]
        if start not in levels:
            raise ConfigError(f"curriculum.start_level: {start} is not a level (allowed: {levels})")
        self.index = levels.index(start)
        self.recent: deque[bool] = deque(maxlen=self.cc.window)  # outcomes since the last move

    def _pick(self, n: int) -> list[Task]:
        levels, out = self.source.levels, []
        for _ in range(n):
            review = self.index > 0 and self.rng.random() < self.cc.review_share
            level = self.rng.choice(levels[: self.index]) if review else levels[self.index]
            out.append(self._at(level))
        return out

    def _observe(self, outcomes: list[tuple[Task, list[bool], bool]]) -> None:
        current = self.source.levels[self.index]
        for task, wins, chosen in outcomes:
            # replayed and generated tasks are chosen for being hard: they would bias the rate
            if task.difficulty == current and not chosen:
                self.recent.extend(wins)
        if len(self.recent) < self.cc.min_episodes:
            return
        rate = sum(self.recent) / len(self.recent)
        top = len(self.source.levels) - 1
        if rate > self.cc.target_high and self.index < top:
            self.index += 1
            self.recent.clear()
        elif rate < self.cc.target_low and self.index > 0:
            self.index -= 1
            self.recent.clear()

    def level(self, groups: list[list[Episode]]) -> float:
        return float(self.source.levels[self.index])

    def _state(self) -> dict[str, Any]:
        return {"index": self.index, "recent": list(self.recent)}

    def _load(self, state: dict[str, Any]) -> None:
        if not 0 <= state["index"] < len(self.source.levels):
            raise ConfigError(
                f"data.difficulties: the checkpoint's ladder is at level index "
                f"{state['index']}, but the levels are now {self.source.levels}"
            )
        self.index = state["index"]
        self.recent = deque(state["recent"], maxlen=self.cc.window)


class LearningProgressSampler(Sampler):
    """Prefer arms (dataset tasks, or generator levels) where the policy is learning.

    Each arm keeps a fast and a slow moving average of its groups' success rates; its score
    is ``|fast - slow| + fast * (1 - fast)`` (change, plus GRPO signal, largest at 0.5). An arm
    never tried scores above any tried one. ``explore_share`` of the picks are uniform.
    """

    name = "learning_progress"
    UNSEEN = 2.0  # above the largest possible score (1 + 0.25)

    def __init__(self, cfg: Config, source: TaskSource | None = None):
        super().__init__(cfg, source)
        src = self.source
        self.by_task = src.dataset is not None
        self.arms: list[Any] = [t.id for t in src.dataset] if self.by_task else list(src.levels)
        self.tasks = {t.id: t for t in src.dataset} if self.by_task else {}
        self.stats: dict[Any, list[float]] = {}  # arm -> [fast, slow]

    def score(self, arm: Any) -> float:
        if arm not in self.stats:
            return self.UNSEEN
        fast, slow = self.stats[arm]
        return abs(fast - slow) + fast * (1 - fast)

    def _pick(self, n: int) -> list[Task]:
        weights = [self.score(a) + 1e-3 for a in self.arms]
        out = []
        for _ in range(n):
            if self.rng.random() < self.cc.explore_share:
                arm = self.rng.choice(self.arms)
            else:
                arm = self.rng.choices(self.arms, weights)[0]
            out.append(self.tasks[arm] if self.by_task else self._at(arm))
        return out

    def _observe(self, outcomes: list[tuple[Task, list[bool], bool]]) -> None:
        for task, wins, _ in outcomes:
            rate = sum(wins) / len(wins)
            arm = task.id if self.by_task else task.difficulty
            if arm not in self.stats:
                if (arm in self.tasks) if self.by_task else (arm in self.arms):
                    self.stats[arm] = [rate, rate]
                continue
            s = self.stats[arm]
            s[0] += self.cc.lp_fast * (rate - s[0])
            s[1] += self.cc.lp_slow * (rate - s[1])

    def _state(self) -> dict[str, Any]:
        return {"stats": [[arm, *s] for arm, s in self.stats.items()]}

    def _load(self, state: dict[str, Any]) -> None:
        self.stats = {arm: [fast, slow] for arm, fast, slow in state["stats"]}


SAMPLERS: dict[str, type[Sampler]] = {
    s.name: s for s in (UniformSampler, LadderSampler, LearningProgressSampler)
}


def make_sampler(cfg: Config) -> Sampler:
    """The sampler ``curriculum.name`` names (fails fast on a bad dataset or env id)."""
    return SAMPLERS[cfg.curriculum.name](cfg)
