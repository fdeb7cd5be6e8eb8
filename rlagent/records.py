"""Typed records passed between the stages of the training loop.

Shapes are noted as comments: T = tokens in one episode, B = episodes in a batch.
Everything here pickles (Ray) and serialises to JSON (rollout files).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Task:
    """One task: a JSON object from a dataset file or a generator.

    ``fields`` holds whatever else the env needs (it receives the whole task as a dict).
    """

    id: str
    env: str
    prompt: str
    answer: Any = None
    difficulty: int = 0
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "fields"}
        return {**self.fields, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        known = {"id", "env", "prompt", "answer", "difficulty"}
        missing = {"id", "prompt"} - {k for k, v in d.items() if v is not None}
        if missing:
            raise ValueError(f"task is missing field(s) {sorted(missing)}: {d!r:.200}")
        try:
            difficulty = int(d.get("difficulty", 0))
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"task {d['id']!r}: difficulty must be an integer, got {d.get('difficulty')!r:.50}"
            ) from err
        return cls(
            id=str(d["id"]),
            env=str(d.get("env", "")),
            prompt=str(d["prompt"]),
            answer=d.get("answer"),
            difficulty=difficulty,
            fields={k: v for k, v in d.items() if k not in known},
        )


@dataclass
class Turn:
    """One assistant turn and the env's answer to it."""

    action: str  # the assistant's whole reply, as decoded text
    observation: str | None  # the env's next observation (None once the episode ended)
    env_reward: float
    info: dict[str, Any]  # env facts for rewards (never scores)
    span: tuple[int, int]  # [start, end) of this turn's generated tokens in Episode.token_ids
    finish_reason: str  # "stop" (end of turn) or "length" (hit max_new_tokens)
    policy_version: int = 0  # weights version that generated this turn's first token
    # (version, start, end) over Episode.token_ids: which weights generated which of this
    # turn's tokens; several spans when new weights landed mid-generation (partial rollout).
    # Empty: every token is ``policy_version``'s.
    versions: list[tuple[int, int, int]] = field(default_factory=list)
    # Seconds since the rollout began (the step's, for a batch): when this turn's
    # generation started and ended, and when the env step started and ended.
    generate_start: float = 0.0
    generate_end: float = 0.0
    env_start: float = 0.0
    env_end: float = 0.0


@dataclass
class Episode:
    """The record of one multi-turn interaction, token-in/token-out.

    ``token_ids`` are exactly the ids the engine was given and produced: the prompt, then
    each turn's generated ids, then the observation ids appended after it. They are never
    re-tokenised from the rendered chat.
    """

    task: Task
    group: int  # index of the task in the step; the G samples of a task share it
    messages: list[dict[str, str]]  # the chat as text (system, user, assistant, user, ...)
    token_ids: list[int]  # [T]
    loss_mask: list[int]  # [T] 1 on tokens the policy generated, 0 on prompt/observations
    logprobs: list[float]  # [T] sampling logprob of each generated token, 0.0 elsewhere
    prompt_len: int  # tokens before the first generated one
    turns: list[Turn]
    termination: str  # "terminated" | "truncated" | "max_turns" | "max_tokens" | one of FAILURES
    policy_version: int  # oldest weights version among its tokens
    rewards: dict[str, Any] = field(default_factory=dict)  # plugin name -> score (None: n/a)
    reward_errors: dict[str, str] = field(default_factory=dict)  # plugin name -> error text
    reward_latency: dict[str, float] = field(default_factory=dict)  # plugin name -> seconds
    reward: float | None = None  # weighted total; None when a weighted component failed
    # unique per attempt (a replayed episode gets a new one); the env's reset gets it as
    # ``options["episode_id"]``, so an env's own logs can be joined with the rollout records
    uid: str = ""

    @property
    def num_generated(self) -> int:
        return sum(self.loss_mask)

    @classmethod
    def failed(
        cls, task: Task, group: int, termination: str, error: str, version: int = 0, uid: str = ""
    ) -> Episode:
        """An episode that never got to a turn (its env failed to reset, its agent never called
        the model): no tokens, one empty turn whose ``info["error"]`` says why."""
        turn = Turn("", None, 0.0, {"error": error}, (0, 0), "")
        return cls(task, group, [], [], [], [], 0, [turn], termination, version, uid=uid)

    def take(self, scores: Scores) -> None:
        """Record what the reward service returned for this episode."""
        self.rewards, self.reward_errors = dict(scores.components), dict(scores.errors)
        self.reward_latency, self.reward = dict(scores.latency), scores.total

    def token_versions(self) -> list[int]:
        """[T] the weights version that generated each token; -1 on prompt and observation
        tokens. Weights that land while an episode plays (async mode) give its later tokens,
        even those of the same turn, a newer version."""
        out = [-1] * len(self.token_ids)
        for t in self.turns:
            for version, start, end in t.versions or [(t.policy_version, *t.span)]:
                out[start:end] = [version] * (end - start)
        return out

    def versions_used(self) -> set[int]:
        """The weights versions that generated this episode's tokens."""
        return {v for t in self.turns for v, _, _ in (t.versions or [(t.policy_version, 0, 0)])}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["task"] = self.task.to_dict()
        return d


@dataclass
class Scores:
    """What the reward service returns for one episode: small, no tokens (the service sees
    the episode's ``EpisodeView``; the tokens stay with the rollout worker)."""

    components: dict[str, Any]  # plugin name -> score: float, per-turn floats, or None (n/a)
    errors: dict[str, str]  # plugin name -> error text (raised, timed out, not a score)
    latency: dict[str, float]  # plugin name -> seconds the call took
    total: float | None  # weighted total; None when a weighted component failed


@dataclass
class TrainBatch:
    """Padded rows for one learner update (built by ``rlagent.batch.build_batch``).

    Kept as plain lists so the driver does not need torch; the learner turns them into
    tensors and computes the advantages (estimators may need its reference logprobs or
    critic values).
    """

    input_ids: list[list[int]]  # [B][T_max] right-padded with pad_id
    loss_mask: list[list[int]]  # [B][T_max] 1 on generated tokens (all 0 when not valid)
    old_logprobs: list[list[float]]  # [B][T_max] sampling logprobs (behaviour policy)
    lengths: list[int]  # [B] real tokens per row (the pad id may also be a real token)
    pad_id: int
    rewards: list[float] = field(default_factory=list)  # [B] scalar reward for the estimator
    valid: list[bool] = field(default_factory=list)  # [B] False: no usable reward
    groups: list[int] = field(default_factory=list)  # [B] task index (group) in the step
    extra_advantages: list[list[float]] | None = None  # [B][T_max] added to the estimator's
    #   (turn-level credit from process rewards)
    advantages: list[float] | None = None  # [B] given advantages: replace the estimator

    def __len__(self) -> int:
        return len(self.input_ids)


ENV_FAILURES = ("env_error", "env_timeout")  # episode ends that are the env's fault, not the policy's
AGENT_FAILURES = ("agent_error", "agent_timeout")  # an agent (agent.entrypoint) raised or hung
FAILURES = ENV_FAILURES + AGENT_FAILURES  # no reward, no success: left out of the update


def succeeded(episode: Episode, success_reward: float = 1.0) -> bool | None:
    """Did the episode solve its task? The env's ``info["success"]`` on the last turn when it
    reports one, else whether the total reward reached ``success_reward``. None when it
    cannot be told: the env or the agent failed, or there is no flag and no
    reward (a weighted plugin failed). Curriculum and evaluation both count this way."""
    if episode.termination in FAILURES:
        return None
    info = episode.turns[-1].info if episode.turns else {}
    if info.get("success") is not None:
        return bool(info["success"])
    if episode.reward is None:
        return None
    return episode.reward >= success_reward
