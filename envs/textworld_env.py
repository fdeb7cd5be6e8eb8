"""``rlagent/TextWorld-v0``: play TextWorld text-adventure games (``textworld==1.7.0``).

Games are Z-machine files (``.z1``-``.z8``) made by ``tw-make``, each with the ``.json``
sidecar ``tw-make`` writes next to it; the sidecar carries what the score, win/loss facts and
admissible commands are computed from, so a game without one is refused. (TextWorld 1.7
dropped Glulx: ``.ulx`` games need TextWorld < 1.7.) Generating a game takes 3-15 s, so games
are made once, ahead of training, and tasks point at them.

**Task**: ``{"id", "prompt", "game": <path>}``; a relative ``game`` is resolved against the
``games_dir`` kwarg. Without ``data.path`` the sampler's tasks are the games in ``games_dir``.

**Default game**: with neither a ``game`` nor a ``games_dir`` kwarg, and no ``game`` in the
task, the env plays ``DEFAULT_GAME``, a small game shipped as package data
(``textworld_games/custom_small.z8``, a copy of the test fixture made with ``tw-make custom
--world-size 2 --nb-objects 3 --quest-length 2 --seed 2``: two rooms, max score 1, won in two
commands). So a bare ``gymnasium.make(ENV_ID)`` resets like every registered env, and a run
with no ``data.path`` and no ``games_dir`` trains on it (its generated tasks carry no ``game``
field: each process resolves the default in its own installed copy). With ``games_dir`` set,
a game still has to be named (by the task or the ``game`` kwarg).

**Action**: the reply's first ``<command>...</command>``, else its first non-empty line. Only
one game command runs per turn: text after a period or a ``then`` is dropped (Inform would
run it as a further command), and game-control verbs (``quit``, ``restart``, ``save``, ...)
are refused. An empty, over-long or refused command is answered with an ``invalid action:``
observation and costs a turn, but no game move.

**Reward**: the change of the game's score (``normalize_reward``: as a share of the game's
maximum score). The episode terminates when the game is won or lost, and is truncated after
``max_steps`` turns. ``info``: ``score``, ``max_score``, ``won``, ``lost``, ``moves``,
``admissible_commands``, ``command`` (what was sent, None if nothing), ``invalid_action``,
``turn``; when the episode ends also ``success`` (the game was won).

TextWorld's own step API is the old ``(state, score, done)`` one: this env adapts it to
Gymnasium's ``(obs, reward, terminated, truncated, info)``.
"""

from __future__ import annotations

import functools
import json
import random
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import gymnasium

from rlagent.envs.text import AnyText

# The runner resets envs in threads; TextWorld's loader (its logic parser) fails when two
# games load at once ("pop from empty list"), so loads and resets take turns.
_LOAD_LOCK = threading.Lock()

ENV_ID = "rlagent/TextWorld-v0"
INSTRUCTIONS = (
    "You are playing a text adventure game. Reply with one command per turn, "
    "for example <command>open door</command> or just: open door"
)
MAX_COMMAND_CHARS = 200
# Interpreter commands that end, restart or rewind the game rather than act in it.
META_VERBS = frozenset(
    {
        "quit",
        "q",
        "restart",
        "restore",
        "save",
        "undo",
        "oops",
        "script",
        "unscript",
        "transcript",
        "noscript",
        "superbrief",
        "verbose",
        "brief",
        "notify",
        "pronouns",
        "version",
    }
)
GAME_SUFFIXES = tuple(f".z{i}" for i in range(1, 9))
# Package data (pyproject.toml): played when nothing names a game, see the module docstring.
DEFAULT_GAME = Path(__file__).resolve().parent / "textworld_games" / "custom_small.z8"

_COMMAND_TAG = re.compile(r"<command>(.*?)</command>", re.DOTALL | re.IGNORECASE)
_SECOND_COMMAND = re.compile(r"\.|;|\bthen\b", re.IGNORECASE)
# A line of TextWorld's ASCII-art title: nothing but these drawing characters.
_BANNER_LINE = re.compile(r"[ _$|\\/<>]*[_$|][ _$|\\/<>]*")
_END_PROMPT = "Would you like to RESTART, RESTORE a saved game, QUIT or UNDO the last command?"


def parse_command(reply: str) -> str:
    """The one game command in a reply ("" when there is none).

    >>> parse_command("I should look around.\\n<command> take the  key </command>")
    'take the key'
    >>> parse_command("\\n> open door. go east\\n")
    'open door'
    >>> parse_command("Let me think.\\ngo north")
    'Let me think'
    >>> parse_command("\\\\q")
    'q'
    """
    match = _COMMAND_TAG.search(reply)
    text = match.group(1) if match else next((ln for ln in reply.splitlines() if ln.strip()), "")
    text = _SECOND_COMMAND.split(text, maxsplit=1)[0]
    # The interpreter reads a leading backslash as one of its own escapes, never as game input.
    text = "".join(c if c.isprintable() and c != "\\" else " " for c in text)
    return " ".join(text.split()).strip("`'\"> ")


def clean_feedback(text: str) -> str:
    """Game text without the interpreter's furniture: the ASCII-art title, the ``>`` prompt
    and status line, the end-of-game RESTART/QUIT question, runs of blank lines.

    >>> clean_feedback("\\nYou take the key.\\n\\n\\n>       -= Hall =-0/3")
    'You take the key.'
    """
    lines = [ln.strip() for ln in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if lines and lines[-1].startswith(">"):  # the prompt, followed by the status line
        lines.pop()
    kept: list[str] = []
    for ln in lines:
        if _BANNER_LINE.fullmatch(ln) or ln == _END_PROMPT:
            continue
        if ln or (kept and kept[-1]):
            kept.append(ln)
    return "\n".join(kept).strip()


@functools.lru_cache(maxsize=256)
def _objective(game: str) -> str:
    """The game's objective from its sidecar (cached: the sampler asks once per task)."""
    return json.loads(_sidecar(Path(game)).read_text()).get("objective", "")


def _sidecar(game: Path) -> Path:
    return game.with_suffix(".json")


def resolve_game(game: str | Path, games_dir: str | Path | None = None) -> Path:
    """The game file for a task, checked: it exists, is a Z-machine file, has its sidecar."""
    path = Path(game)
    if not path.is_absolute() and games_dir is not None:
        path = Path(games_dir) / path
    if path.suffix == ".ulx":
        raise ValueError(
            f"{path}: Glulx (.ulx) games need TextWorld < 1.7; make a Z-machine game (tw-make --format z8)"
        )
    if path.suffix not in GAME_SUFFIXES:
        raise ValueError(f"{path}: not a Z-machine game (expected one of {', '.join(GAME_SUFFIXES)})")
    if not path.is_file():
        raise FileNotFoundError(
            f"TextWorld game not found: {path}" + ("" if games_dir is None else f" (games_dir={games_dir})")
        )
    if not _sidecar(path).is_file():
        raise FileNotFoundError(
            f"{path}: the game's sidecar {_sidecar(path).name} is missing; "
            f"tw-make writes it next to the game and it holds the score "
            f"and win facts"
        )
    return path


def list_games(games_dir: str | Path) -> list[Path]:
    """Z-machine games with a sidecar in ``games_dir``, sorted by name."""
    return sorted(p for p in Path(games_dir).iterdir() if p.suffix in GAME_SUFFIXES and _sidecar(p).is_file())


def generate_task(
    rng: random.Random,
    difficulty: int,
    games_dir: str | None = None,
    game: str | None = None,
    **_env_kwargs: Any,
) -> dict[str, Any]:
    """A task for one of the games in ``games_dir`` (or for ``game``), drawn uniformly; with
    neither, a task for ``DEFAULT_GAME``."""
    if game is None and games_dir is None:
        # No "game" field: the task must not pin this process's install path, which another
        # worker (e.g. a Ray working-dir copy) does not share; reset plays its own default.
        path = resolve_game(DEFAULT_GAME)
        return {"id": f"textworld/{path.stem}", "prompt": _objective(str(path)), "difficulty": difficulty}
    # A given game as is: reset resolves it against games_dir again.
    names = [str(game)] if game is not None else [p.name for p in list_games(games_dir)]
    if not names:
        raise ValueError(
            f"{ENV_ID}: no games in games_dir={games_dir} (expected *.z8 files "
            f"with their .json sidecars, made by tw-make)"
        )
    name = rng.choice(names)
    path = resolve_game(name, games_dir)
    return {
        "id": f"textworld/{path.stem}",
        "prompt": _objective(str(path)),
        "game": name,
        "difficulty": difficulty,
    }


class TextWorldEnv(gymnasium.Env[str, str]):
    """One TextWorld game per episode; the game comes from the task (or the ``game`` kwarg, or
    with neither and no ``games_dir``, ``DEFAULT_GAME``).

    Args:
        game: game played when ``reset`` gets no task.
        games_dir: folder that relative ``game`` paths (kwarg or task) are resolved against;
            when set, ``DEFAULT_GAME`` is never played (a game from that folder must be named).
        max_steps: turns before the episode is truncated.
        instructions: text shown before the game's opening (None: no instructions).
        show_admissible: list the commands the game would accept after each observation
            (an easier variant of the game for small models).
        normalize_reward: reward the score change as a share of the maximum score.
        max_text_length: bound of the ``AnyText`` spaces.
    """

    metadata = {"render_modes": []}
    generate_task = staticmethod(generate_task)

    def __init__(
        self,
        game: str | None = None,
        games_dir: str | None = None,
        max_steps: int = 50,
        instructions: str | None = INSTRUCTIONS,
        show_admissible: bool = False,
        normalize_reward: bool = False,
        max_text_length: int = 65536,
    ):
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.game, self.games_dir, self.max_steps = game, games_dir, max_steps
        self.instructions, self.show_admissible = instructions, show_admissible
        self.normalize_reward = normalize_reward
        self.observation_space = AnyText(max_length=max_text_length)
        self.action_space = AnyText(max_length=max_text_length)
        self._tw: Any = None  # the textworld environment of the loaded game
        self._loaded: Path | None = None
        self._state: Any = None  # textworld GameState after the last move
        self._turn = 0
        self._done = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)  # games are deterministic; the seed only seeds np_random
        task = (options or {}).get("task") or {}
        path = resolve_game(self._game_for(task), self.games_dir)
        with _LOAD_LOCK:  # TextWorld parses the game's logic on load: not thread-safe
            if path != self._loaded:
                self._load(path)
            self._state = self._tw.reset()
        self._turn, self._done = 0, False
        text = clean_feedback(self._state["feedback"])
        if self.instructions:
            text = f"{self.instructions}\n\n{text}"
        return self._observation(text), self._info(command=None, invalid=False)

    def step(self, action: str):
        if self._done:
            raise RuntimeError("step() called before reset() or after the episode ended")
        self._turn += 1
        command = parse_command(action) if isinstance(action, str) else ""
        problem = self._refusal(command)
        reward = 0.0
        if problem is None:
            before = self._state["score"]
            self._state, _, game_over = self._tw.step(command)
            reward = float(self._state["score"] - before)
            if self.normalize_reward and self._state["max_score"]:
                reward /= self._state["max_score"]
            text = clean_feedback(self._state["feedback"])
        else:
            game_over, command, text = False, None, f"invalid action: {problem}"
        terminated = bool(game_over or self._state["won"] or self._state["lost"])
        truncated = not terminated and self._turn >= self.max_steps
        self._done = terminated or truncated
        info = self._info(command=command, invalid=problem is not None)
        if self._done:
            info["success"] = bool(self._state["won"])
        return self._observation(text), reward, terminated, truncated, info

    def close(self) -> None:
        if self._tw is not None:
            self._tw.close()
            self._tw, self._loaded = None, None

    # ------------------------------------------------------------ helpers
    def _game_for(self, task: dict[str, Any]) -> str | Path:
        """The task's game, else the ``game`` kwarg, else (no ``games_dir``) the default."""
        game = task.get("game", self.game)
        if game is not None:
            return game
        if self.games_dir is None:
            return DEFAULT_GAME
        # A games_dir means "play these games": silently playing another would hide the mistake.
        raise ValueError(
            f"{ENV_ID}: no game to play: give the task a 'game' field "
            f"(reset(options={{'task': {{'game': ...}}}})) or the env a game kwarg "
            f"(env.kwargs.game, one of the games in games_dir={self.games_dir})"
        )

    def _load(self, path: Path) -> None:
        try:  # imported here: it takes ~1.5 s and only this env needs it
            import textworld
            from jericho.jericho import UnsupportedGameWarning
        except ImportError as err:
            raise ImportError(
                f"{ENV_ID} needs textworld==1.7.0 (pip install textworld==1.7.0): {err}"
            ) from err

        # Jericho knows scores only of the classic games it ships tables for; here the score
        # and win facts come from TextWorld's sidecar, so its "not fully supported" is noise.
        # (A process-wide filter: catch_warnings is not thread-safe, and envs load in threads.)
        warnings.filterwarnings("ignore", category=UnsupportedGameWarning)
        self.close()
        infos = textworld.EnvInfos(
            feedback=True,
            score=True,
            max_score=True,
            won=True,
            lost=True,
            moves=True,
            admissible_commands=True,
        )
        self._tw = textworld.start(str(path), request_infos=infos)
        self._loaded = path

    @staticmethod
    def _refusal(command: str) -> str | None:
        """Why a command is not sent to the game (None: it is sent)."""
        if not command:
            return "no command; reply with one game command, for example <command>look</command>"
        if len(command) > MAX_COMMAND_CHARS:
            return f"the command is longer than {MAX_COMMAND_CHARS} characters"
        verb = command.split()[0].lower()
        if verb in META_VERBS:
            return f"'{verb}' controls the interpreter, not the game; reply with a game command"
        return None

    def _observation(self, text: str) -> str:
        if self.show_admissible and not self._done:
            text += "\n\nAdmissible commands: " + ", ".join(self._state["admissible_commands"])
        return text[: self.observation_space.max_length]

    def _info(self, command: str | None, invalid: bool) -> dict[str, Any]:
        s = self._state
        return {
            "score": s["score"],
            "max_score": s["max_score"],
            "won": bool(s["won"]),
            "lost": bool(s["lost"]),
            "moves": s["moves"],
            "admissible_commands": list(s["admissible_commands"] or []),
            "command": command,
            "invalid_action": invalid,
            "turn": self._turn,
        }
