"""verifiers environments under the rlagent contract (``verifiers/<environment id>``), with the
real package (verifiers 0.4.0) and the two small environments of tests/support/verifiers_envs:
``vf-say-word`` (single-turn) and ``vf-guess-number`` (multi-turn, the env answers each guess)."""

import asyncio
import random
import threading
import warnings
from pathlib import Path

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

from rlagent.envs import verifiers_env
from rlagent.tasks import env_class

ENVS = str(Path(__file__).resolve().parents[1] / "support" / "verifiers_envs")
WORD, GUESS = "verifiers/vf-say-word", "verifiers/vf-guess-number"


def make(env_id: str = WORD, **kwargs):
    verifiers_env.register(env_id)
    return gymnasium.make(env_id, search_path=ENVS, **kwargs)


def in_thread(fn, *args):
    """``fn(*args)`` in a thread of its own, as the trainer's episode runner calls env methods."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn(*args)))
    thread.start()
    thread.join(60)
    assert out, "the call raised or hung"
    return out[0]


def guess_game(env, task, first=1, last=20) -> tuple[list[str], float, dict, bool]:
    """Play ``vf-guess-number`` by bisection: (observations, reward, last info, truncated)."""
    obs, _ = env.reset(options={"task": task})
    seen = [obs]
    while True:
        guess = (first + last) // 2
        obs, reward, terminated, truncated, info = env.step(f"My guess is {guess}.")
        seen.append(obs)
        if terminated or truncated:
            return seen, reward, info, truncated
        assert obs in ("higher", "lower")
        first, last = (guess + 1, last) if obs == "higher" else (first, guess - 1)


def test_a_single_turn_task_is_scored_by_its_weighted_rewards():
    env = make()
    obs, info = env.reset(options={"task": {"id": "t", "index": 1}})
    assert obs == "Answer with a single word.\n\nReply with the word 'river' and nothing else."
    assert info["system_prompt"] == "Answer with a single word." and info["turn"] == 0
    obs, reward, terminated, truncated, info = env.step("River.")
    assert (obs, reward, terminated, truncated) == ("", 1.5, True, False)  # exact 1 + 0.5 * brief 1
    assert info["reward/exact"] == 1.0 and info["reward/brief"] == 1.0
    assert info["reward_weights"] == {"exact": 1.0, "brief": 0.5}
    assert info["metric/reply_chars"] == 6.0 and info["verifiers_reward"] == 1.5
    assert info["success"] is True and info["stop_condition"] == "agent_completed" and info["turn"] == 1

    env.reset(options={"task": {"id": "t", "index": 1}})
    _, reward, terminated, _, info = env.step("I would say that the word is a lake")
    assert reward == 0.0 and terminated and info["success"] is False
    assert info["reward/exact"] == 0.0 and info["reward/brief"] == 0.0


def test_the_system_prompt_can_be_left_to_the_trainer():
    env = make(system_in_observation=False)
    obs, info = env.reset(options={"task": {"id": "t", "index": 0}})
    assert obs == "Reply with the word 'apple' and nothing else."
    assert info["system_prompt"] == "Answer with a single word."


def test_a_multi_turn_game_is_played_to_its_reward():
    seen, reward, info, truncated = guess_game(make(GUESS), {"id": "g", "index": 2})
    assert seen[0].startswith("You are playing a guessing game.\n\nI am thinking of a whole number")
    assert seen[-1] == "" and not truncated
    # bisection over 1..20 finds it within 5 guesses; the env's metric counts them
    assert reward == 1.0 and info["reward/found"] == 1.0 and info["success"] is True
    assert info["stop_condition"] == "user_closed" and 1 <= info["turn"] <= 5
    assert info["metric/guesses"] == info["turn"] == len(seen) - 1


def test_the_turn_limit_and_stop_hooks_end_the_exchange():
    env = make(GUESS, max_turns=2)
    secret = random.Random(0).randint(1, 20)  # the task at index 0 (see vf_guess_number)
    wrong = 21 if secret < 20 else 0
    env.reset(options={"task": {"id": "g", "index": 0}})
    obs, _, terminated, truncated, _ = env.step(str(wrong))
    assert obs == ("lower" if wrong > secret else "higher") and not terminated and not truncated
    obs, reward, terminated, truncated, info = env.step(str(wrong))
    # verifiers refuses the third model call: the exchange is over, scored as it stands
    assert truncated and not terminated and reward == 0.0 and info["stop_condition"] == "max_turns"
    assert info["success"] is False and info["metric/guesses"] == 2

    env = make(GUESS)
    obs, _ = env.reset(options={"task": {"id": "g", "index": 0}})
    for _ in range(2):
        obs, _, terminated, _, _ = env.step("no idea")
        assert obs == "Reply with one whole number." and not terminated
    obs, reward, terminated, _, info = env.step("still no idea")
    assert terminated and reward == 0.0 and info["stop_condition"] == "no_numbers"  # the task's @stop


def test_tasks_are_drawn_seeded_and_each_is_one_episode():
    generate = env_class(WORD).generate_task  # what the trainer's task sampler calls
    task = generate(random.Random(0), 0, search_path=ENVS, max_turns=3)  # it gets env.kwargs
    assert task == generate(random.Random(0), 0, search_path=ENVS)
    word = ["apple", "river", "stone", "cloud", "maple"][task["index"]]
    assert task["id"] == f"{WORD}/{task['index']}" and task["answer"] == word
    assert task["prompt"] == f"Reply with the word '{word}' and nothing else." and len(task["key"]) == 64
    env = make()
    first = [env.reset(options={"task": task})[0] for _ in range(2)]
    assert first[0] == first[1] and f"'{word}'" in first[0]
    assert env.step(word)[1] == 1.5
    # a task without an index (a task file's) is placed by a stable hash of its id
    by_id = [make().reset(options={"task": {"id": "some-task"}})[1]["task_index"] for _ in range(2)]
    assert by_id[0] == by_id[1]
    # the taskset changed since the task was drawn: its key no longer matches
    with pytest.raises(ValueError, match="is not the one drawn"):
        make(words=["lake", *["apple", "river", "stone", "cloud", "maple"]]).reset(options={"task": task})
    # kwargs pick the tasks too: the generator draws from the taskset they configure
    assert generate(random.Random(1), 0, search_path=ENVS, words=["lake"])["answer"] == "lake"


def test_check_env_is_clean():
    for env_id in (WORD, GUESS):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(make(env_id).unwrapped, skip_render_check=True)


def test_episodes_run_from_worker_threads_and_inside_a_running_event_loop():
    # loaded (new kwargs: a new taskset), reset and stepped each in a thread of its own, as
    # the trainer does
    env = in_thread(lambda: make(GUESS, count=4))
    a = in_thread(lambda: env.reset(options={"task": {"id": "g", "index": 1}}))[0]
    assert in_thread(env.step, "0")[0] == "higher"

    # a caller with its own running loop: the verifiers loop is another one, in its own thread
    async def caller():
        other = make(WORD)
        other.reset(options={"task": {"id": "t", "index": 0}})
        return other.step("apple")[1], asyncio.get_running_loop()

    reward, loop = asyncio.run(caller())
    assert reward == 1.5 and loop.is_closed()
    # the first episode waited meanwhile, untouched; a reset drops it for a new one
    assert env.step("0")[0] == "higher"
    assert env.reset(options={"task": {"id": "g", "index": 1}})[0] == a
    env.close()


def test_a_failed_episode_raises_and_bad_ids_and_kwargs_are_named():
    env = make(taskset={"task": {"fail_scoring": True}})
    env.reset(options={"task": {"id": "t", "index": 0}})
    with pytest.raises(RuntimeError, match=r"vf-say-word: the episode failed \(TaskError: .*scoring broke"):
        env.step("apple")
    with pytest.raises(
        ValueError, match="env.id verifiers/vf-no-such-env: no verifiers environment 'vf_no_such_env'"
    ):
        make("verifiers/vf-no-such-env")
    with pytest.raises(ValueError, match=r"env.kwargs \(env.id verifiers/vf-say-word\): wordz: Extra inputs"):
        make(wordz=["x"])
    with pytest.raises(ValueError, match="env.kwargs.max_turns"):
        make(max_turns=0)
    env = make().unwrapped
    with pytest.raises(RuntimeError, match="before reset"):
        env.step("apple")
    env.reset(options={"task": {"id": "t", "index": 0}})
    env.step("apple")
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step("apple")
