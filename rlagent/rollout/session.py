"""One agent session's tokens: what the endpoint gives the engine, and the episodes it becomes.

The session owns tokenisation. A call whose messages extend an earlier call's (its messages
and the reply it got, message by message) continues that call's sample: only the new
messages' template ids are appended (loss mask 0), after the ids the engine generated, which
are kept as they are (mask 1, with their sampling logprobs). A call that does not extend any
sample (the agent rewrote or dropped earlier turns, or sends two calls at once) starts a new
sample from its whole rendered prompt. Each sample is an exact record of what the engine saw
and produced, and becomes one training episode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rlagent.records import Episode, Task, Turn
from rlagent.rollout.chat import ChatTokens
from rlagent.rollout.openai_format import BadRequest, ChatRequest, template_messages


@dataclass
class Sample:
    """One exact token sequence of a session."""

    tools: list[dict[str, Any]]
    history: list[dict[str, Any]] = field(default_factory=list)  # canonical messages, replies included
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    prompt_len: int = 0
    turns: list[Turn] = field(default_factory=list)
    busy: bool = False  # a call on it is being generated


@dataclass
class Pending:
    """A call between ``Session.begin`` and ``Session.finish``."""

    sample: Sample
    prompt: list[int]  # every id the engine is given
    added: list[int]  # the template ids this call appended (the whole prompt for a new sample)
    new_messages: list[dict[str, Any]]
    request: ChatRequest
    arrived: float  # seconds since the rollout began


class Session:
    """Token bookkeeping of one agent episode (runs on the rollout worker's event loop)."""

    def __init__(self, chat: ChatTokens, task: Task, group: int, uid: str, max_tokens: int, started: float):
        self.chat, self.task, self.group, self.uid = chat, task, group, uid
        self.max_tokens, self.started = max_tokens, started
        self.samples: list[Sample] = []
        self.calls = 0

    def now(self) -> float:
        return time.time() - self.started

    def begin(self, req: ChatRequest) -> Pending:
        """The ids to generate from for ``req``: appended to the sample it extends, or a new
        sample. Raises ``BadRequest`` when they leave no room to generate."""
        best: Sample | None = None
        for s in self.samples:
            n = len(s.history)
            if s.busy or s.tools != req.tools or len(req.messages) <= n or req.messages[:n] != s.history:
                continue
            if best is None or n > len(best.history):
                best = s
        if best is not None:
            new = req.messages[len(best.history) :]
            span = best.turns[-1].span
            added = self.chat.append(template_messages(new), best.ids[span[0] : span[1]])
            pending = Pending(best, best.ids + added, added, new, req, self.now())
        else:
            prompt = self.chat.prompt(template_messages(req.messages, req.tools))
            pending = Pending(Sample(tools=req.tools), prompt, prompt, req.messages, req, self.now())
        if len(pending.prompt) >= self.max_tokens:
            raise BadRequest(
                "messages",
                f"the conversation is {len(pending.prompt)} tokens, and an episode may hold "
                f"{self.max_tokens} (rollout.max_episode_tokens)",
                code="context_length_exceeded",
            )
        pending.sample.busy = True
        return pending

    def finish(
        self,
        p: Pending,
        generation: Any,
        text: str,
        reply: dict[str, Any],
        info: dict[str, Any],
        generate_end: float,
        version: int,
    ) -> None:
        """Record a generated reply (``reply``: the canonical assistant message returned)."""
        s = p.sample
        s.busy = False
        if not s.turns:
            self.samples.append(s)
            s.prompt_len = len(p.prompt)
        else:
            last = s.turns[-1]
            last.observation = "\n".join(m["content"] for m in template_messages(p.new_messages))
            last.env_end = p.arrived
        s.ids = p.prompt + list(generation.token_ids)
        s.mask = s.mask + [0] * len(p.added) + [1] * len(generation.token_ids)
        s.logprobs = s.logprobs + [0.0] * len(p.added) + list(generation.logprobs)
        start = len(p.prompt)
        versions = [(v, start + a, start + b) for v, a, b in generation.versions]
        first = versions[0][0] if versions else version
        s.turns.append(
            Turn(
                text,
                None,
                0.0,
                info,
                (start, len(s.ids)),
                generation.finish_reason,
                first,
                versions if len({v for v, _, _ in versions}) > 1 else [],
                p.arrived,
                generate_end,
                env_start=generate_end,
                env_end=generate_end,
            )
        )
        s.history = p.request.messages + [reply]
        self.calls += 1

    def cancel(self, p: Pending) -> None:
        """The call failed before a reply: its sample is as it was."""
        p.sample.busy = False

    def episodes(self, termination: str, agent_reward: float | None, error: str | None) -> list[Episode]:
        """One episode per sample; the agent's return value on each one's last turn
        (``info["agent_reward"]``, which the ``agent`` reward plugin reads)."""
        end = self.now()
        out = []
        for k, s in enumerate(self.samples):
            last = s.turns[-1]
            last.env_end = max(last.env_end, end)
            if agent_reward is not None:
                last.info = {**last.info, "agent_reward": agent_reward}
            if error is not None:
                last.info = {**last.info, "error": error}
            episode = Episode(
                task=self.task,
                group=self.group,
                messages=template_messages(s.history, s.tools),
                token_ids=s.ids,
                loss_mask=s.mask,
                logprobs=s.logprobs,
                prompt_len=s.prompt_len,
                turns=s.turns,
                termination=termination,
                policy_version=0,
                uid=self.uid if len(self.samples) == 1 else f"{self.uid}.{k}",
            )
            episode.policy_version = min(episode.versions_used())
            out.append(episode)
        return out
