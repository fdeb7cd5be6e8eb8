"""TextArena games under the rlagent contract (``textarena/<game id>``), with the real package."""

import random
import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import rlagent.envs
from rlagent.tasks import env_class

GAME = "textarena/GuessTheNumber-v0"


def make(game: str = GAME, **kwargs):
    rlagent.envs.register_hub(game)
    return gymnasium.make(game, **kwargs)


def bisect(env, task) -> tuple[list[str], float, dict]:
    """Play a game by bisection; (observations, final reward, final info)."""
    obs, info = env.reset(options={"task": task})
    seen, low, high = [obs], 1, 20
    while True:
        guess = (low + high) // 2
        obs, reward, terminated, truncated, info = env.step(f"I guess [{guess}]")
        seen.append(obs)
        if terminated or truncated:
            return seen, reward, info
        assert obs in ("[GAME] The target number is higher.", "[GAME] The target number is lower.")
        low, high = (guess + 1, high) if obs.endswith("higher.") else (low, guess - 1)


def test_a_game_is_played_from_its_prompt_to_its_reward():
    env = make()
    outer = random.getstate()
    seen, reward, info = bisect(env, {"id": "t1", "seed": 3})
    assert random.getstate() == outer, "the game drew from the process's random state"
    assert seen[0].startswith("You are Player 0. You are playing Guess The Number.")
    assert "I guess" not in "".join(seen)  # the model's own moves are not echoed back
    # bisection over 1..20 wins within 5 guesses, inside the game's 10 turns
    assert reward == 1.0 and info["success"] is True and info["game_reward"] == 1.0
    assert info["reason"].startswith("Congratulations") and 1 <= info["turn"] <= 5


def test_a_task_is_one_game_for_every_sample_and_seeds_differ():
    a1, a2, b = (bisect(make(), task)[0] for task in ({"id": "a"}, {"id": "a"}, {"id": "b", "seed": 11}))
    assert a1 == a2 and a1 != b


def test_invalid_moves_are_reported_and_the_turn_limit_scores_the_game():
    env = make(max_turns=2)
    env.reset(options={"task": {"id": "t", "seed": 3}})
    obs, reward, terminated, _, info = env.step("no brackets here")
    assert info["invalid_move"] is True and not terminated and "invalid move" in obs
    for guess in (20, 19):  # TextArena ends the game at the valid move after max_turns
        obs, _, terminated, _, info = env.step(f"[{guess}]")
        assert obs == "[GAME] The target number is lower." and not terminated and not info["invalid_move"]
    _, reward, terminated, _, info = env.step("[18]")
    # at the turn limit the game scores closeness: 1 - |18 - target| / 19
    target = env.unwrapped.inner.game_number
    assert terminated and info["success"] is False and info["game_reward"] == reward
    assert reward == pytest.approx(1 - abs(18 - target) / 19) and "turn limit" in info["reason"]


def test_check_env_is_clean_and_tasks_are_seeds():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(make().unwrapped)
    generate = env_class(GAME).generate_task
    task = generate(random.Random(0), 0, max_turns=4)  # the sampler passes the env's kwargs
    assert task["id"] == f"textarena/seed-{task['seed']}" and generate(random.Random(0), 0) == task


def test_bad_ids_and_two_player_games_without_an_opponent_are_named():
    with pytest.raises(ValueError, match="no such TextArena game"):
        make("textarena/GuessTheNumbr-v0")
    with pytest.raises(ValueError, match="several players: set env.kwargs.opponent"):
        make("textarena/TicTacToe-v0").reset(options={"task": {"id": "t"}})


def first_free_cell(observation: str) -> str:
    """A fixed opponent for TicTacToe: the lowest-numbered free cell of the board shown."""
    free = [c for c in "012345678" if f" {c} " in observation.rsplit("Available Moves", 1)[0]]
    return f"[{free[0]}]"


def test_two_player_games_against_a_fixed_opponent():
    env = make("textarena/TicTacToe-v0", opponent="tests.unit.test_textarena:first_free_cell")
    obs, _ = env.reset(options={"task": {"id": "t", "seed": 1}})
    done, moves, reward = False, 0, None
    for cell in (4, 8, 2, 6, 1, 3, 5, 7, 0):  # the model's moves; taken cells are invalid
        obs, reward, done, _, info = env.step(f"[{cell}]")
        moves += 1
        if done:
            break
    assert done and reward in (-1.0, 0.0, 1.0) and moves <= 9
    board = env.unwrapped.inner.state.game_state["board"]
    assert sum(row.count("O") for row in board) >= 1, board  # the opponent moved
