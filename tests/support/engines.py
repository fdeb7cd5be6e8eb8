"""Engine stand-ins for the episode runner's tests (the real vLLM engine has its own
tests): ``OneWordEngine`` answers every turn with one word. ``play`` runs the runner's
coroutine to its end."""

from __future__ import annotations

import asyncio

from rlagent.config import RolloutConfig
from rlagent.records import Task
from rlagent.rollout.chat import ChatTokens
from rlagent.rollout.engine import Generation
from rlagent.rollout.episodes import EpisodeRunner
from rlagent.testing import ENV_ID

ECHO_TASK = Task(id="echo-a-b", env=ENV_ID, prompt="a", answer="a b", fields={"letters_seq": ["a", "b"]})


class OneWordEngine:
    """Replies ``word`` to every prompt; calls ``before_reply`` first (a fault hook)."""

    version = 0  # the weights version it runs

    def __init__(self, tok, word: str = "a", before_reply=None, delay_s: float = 0.0):
        self.ids = tok.encode(word, add_special_tokens=False) + [tok.eos_token_id]
        self.before_reply = before_reply or (lambda: None)
        self.delay_s = delay_s

    async def generate(self, prompt, max_tokens, *, temperature, top_p=1.0, stop=None):
        self.before_reply()
        await asyncio.sleep(self.delay_s)
        n = len(self.ids)
        return Generation(list(self.ids), [-0.5] * n, "stop", [(self.version, 0, n)])


def play(runner, tasks, group_size: int, **kwargs):
    """``runner.run(...)`` on a fresh event loop: the episodes."""
    return asyncio.run(runner.run(tasks, group_size, **kwargs))


def runner(tok, env_id, kwargs, engine=None, **cfg):
    rollout = RolloutConfig(**{"max_new_tokens": 4, "max_episode_tokens": 256, "max_turns": 2, **cfg})
    return EpisodeRunner(engine or OneWordEngine(tok), ChatTokens(tok), env_id, kwargs, rollout)
