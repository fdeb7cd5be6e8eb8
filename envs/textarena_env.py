"""TextArena games (``pip install rlagent[textarena]``) under the rlagent contract:
``env: {id: textarena/GuessTheNumber-v0, kwargs: {...}}``.

Any game id of TextArena's registry can follow ``textarena/``; ``kwargs`` go to the game
(``max_turns``, ``max_number``, ...), except this adapter's own (``opponent``,
``max_text_length``). A task is a reset seed (``task["seed"]``, else a stable hash of its id),
so a group's samples play the same game; the game's own random draws use a random state of
the env's own, seeded from it, never the process's.

Observations are text: at reset, the game's prompt and opening messages; after each move, the
messages the player has not yet seen (``[GAME] The target number is higher.``), without the
echo of its own move. The game's reward arrives when it ends, as the last step's reward
(``env_reward``); ``info`` holds ``invalid_move``, ``turn`` and, at the end, ``reason`` (the
game's own words), ``game_reward`` and ``success`` (reward of at least 1: a win).

Two-player games need ``opponent: "package.module:function"``, a fixed policy called with
the opponent's new observation text and returning its move; the model is player 0.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import gymnasium

from rlagent.envs.gym_text import task_seed
from rlagent.envs.text import AnyText
from rlagent.imports import import_callable

PREFIX = "textarena/"
PLAYER = 0


def register(env_id: str) -> None:
    """Register ``textarena/<game id>`` with Gymnasium (the game is checked when made)."""
    if env_id not in gymnasium.registry:
        gymnasium.register(
            id=env_id,
            entry_point="rlagent.envs.textarena_env:TextArenaEnv",
            kwargs={"game": env_id.removeprefix(PREFIX)},
        )


def _text(messages: Any, role_names: dict[int, str]) -> str:
    """New messages as lines ``[SPEAKER] text``; the player's own moves left out."""
    import textarena as ta

    if isinstance(messages, str):
        return messages
    lines = []
    for sender, message, kind in messages:
        if sender == PLAYER and kind == ta.ObservationType.PLAYER_ACTION:
            continue  # the model's own reply, which the chat already holds
        if kind == ta.ObservationType.PROMPT:
            lines.append(str(message).strip())
        else:
            lines.append(f"[{role_names.get(sender, sender)}] {str(message).strip()}")
    return "\n".join(lines)


def generate_task(rng: random.Random, difficulty: int, **_game_kwargs: Any) -> dict[str, Any]:
    """A seeded task: the game draws its secret (word, number, board) from the seed."""
    seed = rng.randrange(2**31)
    return {"id": f"textarena/seed-{seed}", "prompt": f"game reset with seed {seed}", "seed": seed}


class TextArenaEnv(gymnasium.Env[str, str]):
    """A TextArena game; see the module's docstring."""

    metadata = {"render_modes": []}
    generate_task = staticmethod(generate_task)

    def __init__(
        self, game: str, opponent: str | None = None, max_text_length: int = 65536, **game_kwargs: Any
    ):
        try:
            import textarena as ta
            from textarena.envs.registration import ENV_REGISTRY
        except ImportError as err:
            raise ValueError(
                f"env.id textarena/{game}: TextArena is not installed (pip install 'rlagent[textarena]')"
            ) from err
        if game not in ENV_REGISTRY:
            close = [g for g in ENV_REGISTRY if g.lower().startswith(game.split("-")[0].lower())][:5]
            raise ValueError(f"env.id textarena/{game}: no such TextArena game (close: {close or 'none'})")
        raw = f"{game}-raw" if f"{game}-raw" in ENV_REGISTRY else game  # no observation wrappers
        self.game = game
        self.inner = ta.make(raw, **game_kwargs)
        self.opponent = import_callable(opponent, "env.kwargs.opponent") if opponent else None
        self.observation_space = AnyText(max_length=max_text_length)
        self.action_space = AnyText(max_length=max_text_length)
        self._random = random.Random(0).getstate()
        self._players: int | None = None
        self.turn = 0

    @contextlib.contextmanager
    def _own_random(self) -> Iterator[None]:
        """TextArena draws from the module ``random`` (and seeds it at reset): give it this
        env's state while it runs, and the process its own back."""
        outer = random.getstate()
        random.setstate(self._random)
        try:
            yield
        finally:
            self._random = random.getstate()
            random.setstate(outer)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = (options or {}).get("task")
        game_seed = task_seed(task) if task is not None else (seed if seed is not None else 0)
        self.turn = 0
        with self._own_random():
            random.seed(game_seed)
            num_players = self._num_players()
            self.inner.reset(num_players=num_players, seed=game_seed)
            text = self._play_opponent()
        return self._fit(text), {"game": self.game, "turn": 0, "invalid_move": False}

    def _num_players(self) -> int:
        """1 for a single-player game; 2 for a two-player one, which needs ``opponent``
        (found out once, by whether the game accepts one player)."""
        if self._players is None:
            try:
                self.inner.reset(num_players=1, seed=0)
                self._players = 1
            except (AssertionError, ValueError):
                self._players = 2
        if self._players > 1 and self.opponent is None:
            raise ValueError(
                f"textarena/{self.game} is a game for several players: set env.kwargs.opponent "
                f"to 'package.module:function' (the other player's policy)"
            )
        return self._players

    def _play_opponent(self) -> str:
        """Let the opponent move until it is the player's turn; the player's new messages."""
        done = False
        pid, messages = self.inner.get_observation()
        while not done and pid != PLAYER:
            assert self.opponent is not None
            done, _ = self.inner.step(str(self.opponent(_text(messages, self._roles()))))
            pid, messages = self.inner.get_observation()
        return _text(messages, self._roles())

    def _errors(self) -> int:
        state = self.inner.state
        count = getattr(state, "error_count", 0)
        return int(sum(count.values()) if isinstance(count, dict) else count)

    def _roles(self) -> dict[int, str]:
        return dict(getattr(self.inner.state, "role_mapping", {}) or {})

    def step(self, action: str):
        self.turn += 1
        rewards: dict[int, float] | None = None
        game_info: dict[int, dict[str, Any]] | None = None
        with self._own_random():
            errors = self._errors()
            done, _ = self.inner.step(action)
            invalid = self._errors() > errors  # a move the game rejected (it asks again)
            text = "" if done else self._play_opponent()
            done = bool(done or self.inner.state.done)
            if done:
                rewards, game_info = self.inner.close()
        info: dict[str, Any] = {"game": self.game, "turn": self.turn, "invalid_move": invalid}
        if not done:
            return self._fit(text), 0.0, False, False, info
        reward = float((rewards or {}).get(PLAYER, 0.0))
        mine = (game_info or {}).get(PLAYER, {})
        info |= {
            "reason": mine.get("reason"),
            "invalid_move": invalid or bool(mine.get("invalid_move")),
            "game_reward": reward,
            "success": reward >= 1.0,
        }
        return self._fit(text or str(mine.get("reason") or "")), reward, True, False, info

    def _fit(self, text: str) -> str:
        cap = self.observation_space.max_length
        return text if len(text) <= cap else text[: cap - 20] + "\n[observation cut]"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.inner.close()
