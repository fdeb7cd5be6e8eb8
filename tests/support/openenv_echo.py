"""A small OpenEnv environment for the tests: say a secret word.

Built only from OpenEnv's own parts (``Environment``, ``Action``, ``Observation``, ``State`` and
``create_app``), so that ``openenv/tests.support.openenv_echo`` runs the same server code as any
OpenEnv env. The word comes from the reset seed (or the ``word`` reset argument). Saying it
ends the episode with reward 1; a miss scores 0, and the episode ends after ``max_turns``
misses (a reset argument too). ``helper=True`` at reset starts a process in the server (a
``sleep``), as envs that run a game engine or a browser do.

``app`` is what ``uvicorn tests.support.openenv_echo:app`` serves.
"""

from __future__ import annotations

import random
import subprocess
from typing import Any

from openenv.core.env_server.http_server import create_app
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import Action, Observation, State
from pydantic import Field

WORDS = ("apple", "river", "candle", "garden", "pepper", "silver", "window", "yellow")


class SayAction(Action):
    message: str = Field(..., description="The reply")


class SayObservation(Observation):
    text: str = Field(default="", description="What the env says")
    turn: int = Field(default=0, description="Replies so far")


class SayWordEnvironment(Environment[SayAction, SayObservation, State]):
    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self) -> None:
        super().__init__()
        self._state = State(episode_id="", step_count=0)
        self.word = WORDS[0]
        self.max_turns = 3

    def reset(
        self,
        seed: int | None = None,
        episode_id: str | None = None,
        word: str | None = None,
        max_turns: int = 3,
        helper: bool = False,
        **_: Any,
    ) -> SayObservation:
        if helper:  # a process of the env's own, as envs that run a game or a browser have
            subprocess.Popen(["sleep", "60"])
        self.word = word or random.Random(seed).choice(WORDS)
        self.max_turns = max_turns
        self._state = State(episode_id=episode_id or f"seed-{seed}", step_count=0)
        return SayObservation(text=f"Say the word: {self.word}", reward=0.0)

    def step(self, action: SayAction, timeout_s: float | None = None, **_: Any) -> SayObservation:
        self._state.step_count += 1
        turn = self._state.step_count
        if self.word in action.message.lower():
            text, reward, done = f"Correct: {self.word}.", 1.0, True
        else:
            text, reward, done = f"Not quite. Say the word: {self.word}", 0.0, turn >= self.max_turns
        return SayObservation(text=text, turn=turn, reward=reward, done=done)

    @property
    def state(self) -> State:
        return self._state


app = create_app(SayWordEnvironment, SayAction, SayObservation, env_name="say_word", max_concurrent_envs=4)
