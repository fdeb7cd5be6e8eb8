"""A plain third-party-style text env, registered on import under ``toy/Guess-v0``.

It is written the way a package outside rlagent would write it: a dict observation, Gymnasium's
default ``spaces.Text`` (no spaces or punctuation in its charset), no ``generate_task``, and a
``reset`` that draws its episode from the seed and ignores ``options`` (it only records them,
so tests can see what it was given). Guess a number from 1 to 9; a reply that is not a number
is answered, never raised on.
"""

from __future__ import annotations

import gymnasium
from gymnasium import spaces


class GuessEnv(gymnasium.Env):
    metadata = {"render_modes": []}

    def __init__(self, high: int = 9):
        self.high = high
        self.observation_space = spaces.Dict({"text": spaces.Text(64), "turn": spaces.Discrete(100)})
        self.action_space = spaces.Text(16)
        self.secret = 0
        self.turn = 0
        self.last_options: dict | None = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.last_options = options
        self.secret = int(self.np_random.integers(1, self.high + 1))
        self.turn = 0
        return {"text": f"Guess a number from 1 to {self.high}.", "turn": 0}, {}

    def step(self, action):
        self.turn += 1
        try:
            guess = int(str(action).strip())
        except ValueError:
            return {"text": "Please reply with a number.", "turn": self.turn}, 0.0, False, False, {}
        if guess == self.secret:
            return {"text": "Correct!", "turn": self.turn}, 1.0, True, False, {"guesses": self.turn}
        hint = "higher" if guess < self.secret else "lower"
        return {"text": hint, "turn": self.turn}, 0.0, False, False, {"guesses": self.turn}


if "toy/Guess-v0" not in gymnasium.registry:
    gymnasium.register(id="toy/Guess-v0", entry_point=GuessEnv, max_episode_steps=20)
