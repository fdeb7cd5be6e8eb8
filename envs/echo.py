"""``rlagent/Echo-v0``: repeat the letter you are shown.

A sanity check for trainers, not a benchmark. Every observation is a single word from a tiny
alphabet and nothing else, so a randomly initialised model with a word-level tokenizer that
knows only those words can learn it within a few hundred steps; a trainer that cannot is
broken. Reward is dense (1/num_turns per correct turn), which makes learning fast to show.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import gymnasium

from rlagent.envs.text import AnyText

ENV_ID = "rlagent/Echo-v0"
DEFAULT_LETTERS = "a b c d"
DIFFICULTIES = (1, 2, 3, 4)  # the number of turns


def _alphabet(letters: str | Sequence[str]) -> list[str]:
    words = letters.split() if isinstance(letters, str) else [str(w) for w in letters]
    if not words or any(len(w.split()) != 1 for w in words):
        raise ValueError(f"expected a non-empty list of single words, got {letters!r}")
    return words


def generate_task(
    rng: random.Random,
    difficulty: int,
    num_turns: int | None = None,
    letters: str | Sequence[str] = DEFAULT_LETTERS,
    **_env_kwargs: Any,
) -> dict[str, Any]:
    """A task showing letters drawn uniformly from ``letters``, one per turn: ``difficulty``
    turns, or ``num_turns`` when the env fixes it (then that is the task's difficulty). The
    sampler passes the env's constructor kwargs; the ones that do not shape tasks are ignored."""
    if num_turns is None and difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    turns = num_turns if num_turns is not None else difficulty
    alphabet = _alphabet(letters)
    seq = [rng.choice(alphabet) for _ in range(turns)]
    # The id is the content: identical sequences are the same task for curriculum stats.
    return {
        "id": "echo-" + "-".join(seq),
        "env": ENV_ID,
        "prompt": seq[0],
        "answer": " ".join(seq),
        "difficulty": turns,
        "letters_seq": seq,
    }


class EchoEnv(gymnasium.Env[str, str]):
    """Show one letter per turn; a turn is correct if the reply's first word is that letter.

    ``reset(options={"task": task})`` shows ``task["letters_seq"]`` in order (the episode has
    that many turns); without a task, ``num_turns`` letters are drawn from ``self.np_random``.
    Step reward is ``1/turns`` when correct; the last step sets ``terminated`` and reports
    ``success`` (every turn correct). ``info["correct"]`` counts correct turns so far.
    """

    metadata = {"render_modes": []}
    difficulties = DIFFICULTIES
    generate_task = staticmethod(generate_task)

    def __init__(
        self, num_turns: int = 2, letters: str | Sequence[str] = DEFAULT_LETTERS, max_text_length: int = 8192
    ):
        if num_turns < 1:
            raise ValueError(f"num_turns must be >= 1, got {num_turns}")
        self.num_turns = num_turns
        self.letters = _alphabet(letters)
        self.observation_space = AnyText(max_length=max_text_length)
        self.action_space = AnyText(max_length=max_text_length)
        self._seq: list[str] = []
        self._turn = 0
        self._correct = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = (options or {}).get("task")
        if task is None:
            idx = self.np_random.integers(len(self.letters), size=self.num_turns)
            seq = [self.letters[i] for i in idx]
        else:
            seq = _alphabet(task.get("letters_seq") or [])
        self._seq, self._turn, self._correct = seq, 0, 0
        return seq[0], {"turn": 0, "correct": 0}

    def step(self, action: str):
        if not self._seq or self._turn >= len(self._seq):
            raise RuntimeError("step() called before reset() or after the episode ended")
        words = action.split() if isinstance(action, str) else []
        correct = bool(words) and words[0] == self._seq[self._turn]
        self._correct += correct
        self._turn += 1
        info: dict[str, Any] = {"turn": self._turn, "correct": self._correct}
        terminated = self._turn == len(self._seq)
        if terminated:
            info["success"] = self._correct == len(self._seq)
        observation = "" if terminated else self._seq[self._turn]
        reward = 1.0 / len(self._seq) if correct else 0.0
        return observation, reward, terminated, False, info
