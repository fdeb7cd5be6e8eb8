"""Third-party text envs: the generic GymText-v0 adapter and the TextWorld-v0 env.

TextWorld games are the committed fixtures in tests/fixtures/textworld (made once with tw-make).
"""

from __future__ import annotations

import asyncio
import doctest
import json
import random
import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env
from support import REPO

import rlagent.envs
import rlagent.envs.gym_text
import rlagent.envs.textworld_env
from rlagent.config import ConfigError, RolloutConfig, load_config
from rlagent.curriculum import UniformSampler
from rlagent.envs.gym_text import GymTextEnv, task_seed, to_text
from rlagent.envs.textworld_env import TextWorldEnv
from rlagent.rewards.outcome import EnvReward
from rlagent.rollout.chat import ChatTokens
from rlagent.rollout.engine import Generation
from rlagent.rollout.episodes import EpisodeRunner
from rlagent.tasks import env_class, load_tasks

FIXTURES = REPO / "tests" / "fixtures" / "textworld"
TASKS = FIXTURES / "tasks.jsonl"
TOY = "support.toy_text_env:toy/Guess-v0"  # "module:id": gymnasium imports the module that registers it


def walkthrough(game: str) -> list[str]:
    """The winning commands tw-make stored with the game."""
    return json.loads((FIXTURES / game).with_suffix(".json").read_text())["metadata"]["walkthrough"]


def no_warnings_check(env):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert [str(w.message) for w in caught] == []


@pytest.fixture(scope="module")
def tw_env():
    env = TextWorldEnv(games_dir=str(FIXTURES))
    yield env
    env.close()


# ---------------------------------------------------------------- contract
def test_ids_are_registered():
    assert rlagent.envs.BUILTIN_ENVS["rlagent/GymText-v0"] == "rlagent.envs.gym_text:GymTextEnv"
    assert rlagent.envs.BUILTIN_ENVS["rlagent/TextWorld-v0"] == "rlagent.envs.textworld_env:TextWorldEnv"
    assert {"rlagent/GymText-v0", "rlagent/TextWorld-v0"} <= set(gymnasium.registry)


def test_check_env_textworld():
    env = gymnasium.make("rlagent/TextWorld-v0", game="custom_small.z8", games_dir=str(FIXTURES))
    no_warnings_check(env.unwrapped)
    env.close()


def test_check_env_gym_text():
    env = gymnasium.make("rlagent/GymText-v0", env_id=TOY)
    no_warnings_check(env.unwrapped)


@pytest.mark.parametrize("module", [rlagent.envs.gym_text, rlagent.envs.textworld_env])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- TextWorld
@pytest.mark.parametrize("task", load_tasks(TASKS, "rlagent/TextWorld-v0"), ids=lambda t: t.id)
def test_walkthrough_wins_with_full_score(tw_env, task):
    obs, info = tw_env.reset(options={"task": task.to_dict()})
    assert obs.startswith("You are playing a text adventure game.") and task.prompt in obs
    assert "$$" not in obs and "-= " in obs  # the ASCII title is gone, the room is shown
    assert info["score"] == 0 and info["won"] is False and info["max_score"] >= 1
    total, steps = 0.0, walkthrough(task.fields["game"])
    for i, command in enumerate(steps):
        obs, reward, terminated, truncated, info = tw_env.step(f"<command>{command}</command>")
        total += reward
        assert info["command"] == command and not info["invalid_action"]
        assert terminated is (i == len(steps) - 1) and not truncated
    assert total == info["score"] == info["max_score"]
    assert info["won"] is True and info["success"] is True and info["lost"] is False
    assert info["moves"] == len(steps) and "*** The End ***" in obs and "RESTART" not in obs
    with pytest.raises(RuntimeError):
        tw_env.step("look")


def test_dense_rewards_and_first_line_rule(tw_env):
    tw_env.reset(options={"task": {"id": "t", "prompt": "", "game": "simple_dense.z8"}})
    first, second = walkthrough("simple_dense.z8")[:2]
    # No tag: the first non-empty line, up to the first period, is the command.
    obs, reward, *_, info = tw_env.step(f"\n{first}. {second}\nwhy not")
    assert info["command"] == first and reward == 1.0 and info["moves"] == 1
    obs, reward, *_, info = tw_env.step(f"Next I take it.\n<command>{second}</command>")
    assert info["command"] == second and reward == 1.0 and info["score"] == 2


@pytest.mark.parametrize(
    "reply, refused",
    [
        ("", True),
        ("   \n  ", True),
        ("quit", True),
        ("<command>restart</command>", True),
        ("\\q", True),
        ("x" * 500, True),
        (None, True),
        ("xyzzy", False),
        ("eat the moon", False),
        ("中文 é → ⚠", False),
        ("<command>", False),
    ],
)
def test_malformed_reply_is_an_observation(tw_env, reply, refused):
    obs0, info0 = tw_env.reset(options={"task": {"id": "t", "prompt": "", "game": "custom_small.z8"}})
    obs, reward, terminated, truncated, info = tw_env.step(reply)
    assert isinstance(obs, str) and obs and obs in tw_env.observation_space
    assert (reward, terminated, truncated, info["won"]) == (0.0, False, False, False)
    assert info["invalid_action"] is refused
    if refused:
        assert obs.startswith("invalid action: ") and info["command"] is None
        assert info["moves"] == 0  # nothing reached the game
    else:
        assert not obs.startswith("invalid action") and info["command"]
    # The game still plays on.
    for command in walkthrough("custom_small.z8"):
        *_, terminated, _, info = tw_env.step(command)
    assert terminated and info["success"] is True


def test_truncated_after_max_steps_and_game_switch():
    env = TextWorldEnv(game="simple_dense.z8", games_dir=str(FIXTURES), max_steps=2)
    first = env.reset(seed=0)[0]
    assert env.step("look")[3] is False
    _, _, terminated, truncated, info = env.step("look")
    assert (terminated, truncated, info["success"]) == (False, True, False)
    env.reset(options={"task": {"id": "t", "prompt": "", "game": "custom_small.z8"}})
    assert env.reset(seed=1)[0] == first  # back to the kwarg's game, from its start
    env.close()


def test_show_admissible_and_normalized_reward():
    env = TextWorldEnv(
        game="simple_dense.z8",
        games_dir=str(FIXTURES),
        show_admissible=True,
        normalize_reward=True,
        instructions=None,
    )
    obs, info = env.reset()
    assert obs.splitlines()[-1] == "Admissible commands: " + ", ".join(info["admissible_commands"])
    assert walkthrough("simple_dense.z8")[0] in info["admissible_commands"]
    assert env.step(walkthrough("simple_dense.z8")[0])[1] == 1 / 8
    env.close()


def test_bad_games_are_clear_errors(tmp_path):
    env = TextWorldEnv(games_dir=str(tmp_path))
    with pytest.raises(ValueError, match="no game to play"):
        env.reset()
    with pytest.raises(FileNotFoundError, match="game not found"):
        env.reset(options={"task": {"id": "t", "prompt": "", "game": "missing.z8"}})
    (tmp_path / "bare.z8").write_bytes((FIXTURES / "custom_small.z8").read_bytes())
    with pytest.raises(FileNotFoundError, match="sidecar bare.json is missing"):
        env.reset(options={"task": {"id": "t", "prompt": "", "game": "bare.z8"}})
    with pytest.raises(ValueError, match="Glulx"):
        env.reset(options={"task": {"id": "t", "prompt": "", "game": "old.ulx"}})
    with pytest.raises(ValueError, match="no games in games_dir"):
        TextWorldEnv.generate_task(random.Random(0), 0, games_dir=str(tmp_path))


def test_default_game_is_played_without_game_or_games_dir():
    from rlagent.envs.textworld_env import DEFAULT_GAME

    # The package's copy of a fixture game (tests are not shipped; the package data is).
    assert DEFAULT_GAME.name == "custom_small.z8"
    assert DEFAULT_GAME.read_bytes() == (FIXTURES / "custom_small.z8").read_bytes()
    env = gymnasium.make("rlagent/TextWorld-v0").unwrapped
    try:
        env.reset(seed=0)
        for command in walkthrough("custom_small.z8"):
            *_, terminated, _, info = env.step(command)
        assert terminated and info["success"] is True
    finally:
        env.close()


def test_tasks_without_a_dataset_or_games_dir_play_the_default_game():
    cfg = load_config(None, ["env.id=rlagent/TextWorld-v0"])
    tasks = UniformSampler(cfg).sample(3)
    objective = json.loads((FIXTURES / "custom_small.json").read_text())["objective"]
    assert {(t.id, t.prompt) for t in tasks} == {("textworld/custom_small", objective)}
    env = gymnasium.make("rlagent/TextWorld-v0", **cfg.env.kwargs).unwrapped
    try:
        obs, _ = env.reset(options={"task": tasks[0].to_dict()})
        assert objective in obs
    finally:
        env.close()


def test_tasks_without_a_dataset_come_from_games_dir():
    cfg = load_config(None, ["env.id=rlagent/TextWorld-v0", f"env.kwargs.games_dir={FIXTURES}"])
    tasks = UniformSampler(cfg).sample(20)
    assert {t.fields["game"] for t in tasks} == {"custom_small.z8", "simple_dense.z8"}
    by_id = {t.id: t for t in load_tasks(TASKS, "rlagent/TextWorld-v0")}
    for t in tasks:  # the same tasks as the committed file, objective as the prompt
        assert (t.prompt, t.fields["game"]) == (by_id[t.id].prompt, by_id[t.id].fields["game"])


# ---------------------------------------------------------------- GymText-v0
def test_gym_text_seeds_from_the_task_and_converts_observations():
    env = gymnasium.make("rlagent/GymText-v0", env_id=TOY)
    inner = env.unwrapped.inner.unwrapped
    obs, _ = env.reset(options={"task": {"id": "a", "prompt": "", "seed": 3}})
    assert obs == "Guess a number from 1 to 9." and inner.last_options is None
    secret = inner.secret
    env.reset(options={"task": {"id": "a", "prompt": "", "seed": 3}})
    assert inner.secret == secret  # every sample of a task plays the same episode
    secrets = {}
    for i in list(range(20)) * 2:  # no seed field: a stable hash of the id
        env.reset(options={"task": {"id": f"task-{i}", "prompt": ""}})
        assert secrets.setdefault(i, inner.secret) == inner.secret
    assert len(set(secrets.values())) > 3
    # Replies the inner Text space would reject (spaces, punctuation) still reach the env.
    obs, reward, terminated, truncated, info = env.step("I guess... five?")
    assert obs == "Please reply with a number." and (reward, terminated) == (0.0, False)
    for guess in range(1, 10):
        obs, reward, terminated, truncated, info = env.step(str(guess))
        if terminated:
            break
    assert (obs, reward, guess) == ("Correct!", 1.0, inner.secret)


@pytest.mark.parametrize(
    "mode, expected",
    [("fields", {"level": 2}), ("task", {"task": {"id": "a", "prompt": "p", "level": 2}}), ("none", None)],
)
def test_gym_text_options_modes(mode, expected):
    env = GymTextEnv(TOY, options=mode)
    env.reset(options={"task": {"id": "a", "prompt": "p", "level": 2}})
    assert env.inner.unwrapped.last_options == expected


def test_gym_text_time_limit_and_kwargs_reach_the_inner_env():
    env = GymTextEnv(TOY, env_kwargs={"high": 1000, "max_episode_steps": 2})
    env.reset(options={"task": {"id": "a", "prompt": ""}})
    assert env.inner.unwrapped.high == 1000
    assert env.step("0")[3] is False and env.step("0")[3] is True  # TimeLimit: truncated


def test_gym_text_errors_are_specific():
    with pytest.raises(ValueError, match="package.module:"):
        GymTextEnv("nobody/Unregistered-v0")
    with pytest.raises(ValueError, match="cannot wrap itself"):
        GymTextEnv("rlagent/GymText-v0")
    with pytest.raises(ValueError, match="options: must be one of"):
        GymTextEnv(TOY, options="all")
    with pytest.raises(TypeError, match="observation_key or observation_format"):
        to_text({"a": "x", "b": "y"})
    with pytest.raises(KeyError, match="'room' is not in the observation"):
        to_text({"text": "x"}, key="room")
    with pytest.raises(TypeError, match="not text"):
        to_text(3)
    with pytest.raises(ValueError, match="seed must be an int"):
        task_seed({"id": "a", "seed": "7"})
    assert to_text({"text": "x", "turn": 1}, key="text") == "x" and to_text(b"caf\xc3\xa9") == "café"


def test_module_prefixed_id_resolves_in_the_sampler_too():
    from support.toy_text_env import GuessEnv

    assert env_class(TOY) is GuessEnv  # as gymnasium.make resolves it in the runner
    with pytest.raises(ConfigError, match="no task generator"):
        UniformSampler(load_config(None, [f"env.id={TOY}"]))
    with pytest.raises(ConfigError, match="cannot import 'no_such_module'"):
        env_class("no_such_module:toy/Guess-v0")


def test_gym_text_generates_seeded_tasks_without_a_dataset():
    cfg = load_config(None, ["env.id=rlagent/GymText-v0", f"env.kwargs.env_id={TOY}"])
    a, b = UniformSampler(cfg).sample(4), UniformSampler(cfg).sample(4)
    assert [t.to_dict() for t in a] == [t.to_dict() for t in b]  # reproducible from run.seed
    assert all(t.id == f"{TOY}/seed-{t.fields['seed']}" and t.env == "rlagent/GymText-v0" for t in a)
    env = GymTextEnv(TOY)
    env.reset(options={"task": a[0].to_dict()})
    assert env.inner.unwrapped.last_options is None  # the seed is not an option


# ---------------------------------------------------------------- the episode runner
class ScriptedEngine:
    """Answers each episode's n-th turn with the n-th scripted reply (the engine interface of
    rlagent.rollout.engine.AsyncEngine; vLLM itself is covered by the slow tests)."""

    version = 0

    def __init__(self, tok, replies: list[str]):
        self.tok, self.replies = tok, replies

    async def generate(self, prompt, max_tokens, *, temperature, top_p=1.0, stop=None):
        turn = prompt.count(self.tok.convert_tokens_to_ids("<|assistant|>")) - 1
        ids = self.tok.encode(self.replies[turn], add_special_tokens=False)
        ids.append(self.tok.eos_token_id)
        return Generation(list(ids), [-0.5] * len(ids), "stop", [(0, 0, len(ids))])


def byte_tokenizer():
    """A byte-level tokenizer (every byte is a token) with tiny.py's chat template."""
    from support.tiny import CHAT_TEMPLATE, SPECIAL
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=SPECIAL[4:],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.mark.parametrize(
    "env_id, kwargs, task_file",
    [
        ("rlagent/TextWorld-v0", {"games_dir": str(FIXTURES)}, TASKS),
        (
            "rlagent/GymText-v0",
            {"env_id": "rlagent/TextWorld-v0", "env_kwargs": {"games_dir": str(FIXTURES)}, "options": "task"},
            TASKS,
        ),
    ],
)
def test_runner_plays_a_game_to_the_win(env_id, kwargs, task_file):
    tok = byte_tokenizer()
    task = load_tasks(task_file, env_id)[1]  # custom_small.z8
    replies = ["What now?"] + [f"<command>{c}</command>" for c in walkthrough("custom_small.z8")]
    cfg = RolloutConfig(max_new_tokens=64, max_episode_tokens=8000, max_turns=6)
    runner = EpisodeRunner(ScriptedEngine(tok, replies), ChatTokens(tok), env_id, kwargs, cfg)
    try:
        episodes = asyncio.run(runner.run([(0, task)], group_size=2))
    finally:
        runner.close()
    assert len(episodes) == 2
    for ep in episodes:
        assert ep.termination == "terminated" and [t.action for t in ep.turns] == replies
        assert ep.turns[0].observation.startswith("That's not a verb")
        assert ep.turns[-1].info["success"] is True and EnvReward().score(ep) == 1.0
        assert sum(ep.loss_mask) == sum(
            len(tok.encode(r, add_special_tokens=False)) + 1 for r in replies
        )  # each reply and its end-of-turn
        assert ep.messages[0] == {"role": "user", "content": ep.messages[0]["content"]}
        assert ep.messages[0]["content"].startswith("You are playing a text adventure game.")
        json.dumps(ep.to_dict())  # rollout files: env infos are plain JSON


def test_textworld_envs_reset_at_once_in_threads():
    # The runner resets every episode's env in its own thread; TextWorld's game loader is
    # not thread-safe ("pop from empty list" when two games load at once).
    import threading

    games = REPO / "tests" / "fixtures" / "textworld"
    tasks = [json.loads(line) for line in open(games / "tasks.jsonl")]
    errors: list[BaseException] = []

    def play(i: int) -> None:
        env = gymnasium.make("rlagent/TextWorld-v0", games_dir=str(games)).unwrapped
        try:
            obs, _ = env.reset(seed=i, options={"task": tasks[i % len(tasks)]})
            assert obs
        except BaseException as err:  # noqa: BLE001 - collected for the assertion below
            errors.append(err)
        finally:
            env.close()

    threads = [threading.Thread(target=play, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
