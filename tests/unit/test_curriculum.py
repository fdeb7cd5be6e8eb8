"""Curriculum samplers decide from scripted success histories; their state resumes exactly."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from support import REPO
from support.episodes import episode

from rlagent.config import ConfigError, load_config
from rlagent.curriculum import SAMPLERS, make_sampler
from rlagent.records import Episode, Task, succeeded

ECHO = ["env.id=rlagent/Echo-v0", "env.kwargs={}"]
FIXTURES = REPO / "tests" / "fixtures"


def play(tasks: list[Task], solve, group_size: int = 4) -> list[list[Episode]]:
    """Groups for ``tasks``: ``solve(task, i)`` says whether sample i of the group succeeds."""
    return [[episode(t, solve(t, i), g) for i in range(group_size)] for g, t in enumerate(tasks)]


def sampler(name: str, *overrides: str, env=ECHO):
    return make_sampler(load_config(None, [*env, f"curriculum.name={name}", *overrides]))


def test_success_comes_from_the_env_else_the_reward():
    task = Task(id="t", env="e", prompt="p")
    assert succeeded(episode(task, True, reward=0.0), 1.0) is True
    assert succeeded(episode(task, None, reward=0.7), 0.5) is True
    assert succeeded(episode(task, None, reward=0.7), 1.0) is False
    failed = episode(task, None, reward=None)
    assert succeeded(failed, 1.0) is None
    failed.termination, failed.reward = "env_error", 0.0
    assert succeeded(failed, 1.0) is None  # a crashed env says nothing about the policy


def test_ladder_moves_up_above_the_band_and_back_below_it():
    s = sampler("ladder", "curriculum.min_episodes=8", "curriculum.window=8", "curriculum.review_share=0")
    levels = []
    # 8 episodes (2 groups of 4) are enough for a decision: solved, failed, solved, then 50%.
    for solve in [lambda t, i: True, lambda t, i: False, lambda t, i: True] + [lambda t, i: i < 2] * 3:
        tasks = s.sample(2)
        assert {t.difficulty for t in tasks} == {s.source.levels[s.index]}, "all at the current level"
        levels.append(s.update(play(tasks, solve))["curriculum/level"])
    # up after level 1 was solved, back after level 2 was failed, up again; 50% stays in the band
    assert levels == [1, 2, 1, 2, 2, 2], levels


def test_ladder_waits_for_min_episodes_and_ignores_replayed_tasks():
    s = sampler(
        "ladder",
        "curriculum.min_episodes=16",
        "curriculum.window=16",
        "curriculum.start_level=4",
        "curriculum.review_share=0",
        "curriculum.replay_share=0.5",
    )
    s.update(play(s.sample(2), lambda t, i: False))  # 8 failures, below min_episodes
    assert s.index == 3 and len(s.replay) == 2
    tasks = s.sample(4)
    assert sum(t.id in s.origin for t in tasks) == 2
    # The two replayed tasks fail again, the two new ones succeed: only the new ones count.
    m = s.update(play(tasks, lambda t, i: t.id not in s.origin))
    assert list(s.recent) == [False] * 8 + [True] * 8 and m["curriculum/replayed_share"] == 0.5


def test_picked_tasks_sharing_an_id_with_replayed_ones_still_count():
    # Echo level 1 has 4 distinct tasks: picked and replayed tasks share ids.
    s = sampler(
        "ladder",
        "curriculum.min_episodes=64",
        "curriculum.window=64",
        "curriculum.review_share=0",
        "curriculum.replay_share=0.5",
    )
    s.update(play(s.sample(4), lambda t, i: False))
    tasks = s.sample(4)
    assert {t.id for t in tasks[2:]} & {t.id for t in tasks[:2]}, "this seed collides"
    s.update(play(tasks, lambda t, i: True))
    # 16 failures, then the 2 picked groups; the 2 replayed groups are left out.
    assert list(s.recent) == [False] * 16 + [True] * 8


def test_ladder_reviews_lower_levels():
    s = sampler("ladder", "curriculum.start_level=3", "curriculum.review_share=0.5")
    counts = Counter(t.difficulty for t in s.sample(400))
    assert set(counts) == {1, 2, 3} and 150 < counts[3] < 250 and counts[1] > 50 and counts[2] > 50


def test_learning_progress_prefers_changing_and_uncertain_levels():
    s = sampler("learning_progress", "curriculum.explore_share=0.2")
    histories = {1: [1.0] * 6, 2: [0, 0, 0.25, 0.5, 0.75, 1.0], 3: [0.0] * 6}  # 4: never tried
    for k in range(6):
        tasks = [s.source.draw(s.rng, d) for d in histories]
        s.update(play(tasks, lambda t, i, k=k: i < 4 * histories[t.difficulty][k]))
    assert s.score(4) > s.score(2) > s.score(1) == s.score(3) == 0
    first = Counter(t.difficulty for t in s.sample(200))
    assert first.most_common(1)[0][0] == 4  # the untried level is explored first
    s.update(play([s.source.draw(s.rng, 4)], lambda t, i: i < 2))  # level 4 at 0.5
    counts = Counter(t.difficulty for t in s.sample(400))
    assert counts[2] > 100 and counts[4] > 100, counts
    assert counts[1] < 40 and counts[3] < 40, counts  # solved and hopeless: exploration only


def test_learning_progress_tracks_dataset_tasks(tmp_path):
    data = tmp_path / "tasks.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"t{i}", "prompt": "p", "answer": "a", "difficulty": i % 2 + 1}) + "\n"
            for i in range(6)
        )
    )
    s = sampler(
        "learning_progress",
        f"data.path={data}",
        "curriculum.explore_share=0",
        env=["env.id=rlagent/Calculator-v0"],
    )
    assert s.arms == [f"t{i}" for i in range(6)]
    s.update(play([s.tasks[f"t{i}"] for i in range(5)], lambda t, i: t.id == "t0" and i < 2))
    # t5 untried, t0 at 0.5, the others hopeless
    counts = Counter(t.id for t in s.sample(300))
    assert counts["t5"] > counts["t0"] > 30 and sum(counts[f"t{i}"] for i in range(1, 5)) < 10


def test_ladder_on_a_dataset_draws_the_current_level(tmp_path):
    data = tmp_path / "tasks.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"t{i}", "prompt": "p", "answer": 1, "difficulty": 10 * (i % 3)}) + "\n"
            for i in range(9)
        )
    )
    s = sampler(
        "ladder",
        f"data.path={data}",
        "curriculum.review_share=0",
        "curriculum.min_episodes=4",
        "curriculum.window=4",
        env=["env.id=rlagent/Calculator-v0"],
    )
    assert s.source.levels == [0, 10, 20] and {t.difficulty for t in s.sample(20)} == {0}
    s.update(play(s.sample(1), lambda t, i: True))
    assert {t.difficulty for t in s.sample(20)} == {10}


def test_replay_brings_back_failed_tasks_only():
    s = sampler("uniform", "curriculum.replay_share=0.25")
    tasks = s.sample(8)
    s.update(play(tasks, lambda t, i: tasks.index(t) % 2 == 0 or i == 0))  # odd ones: 1 of 4
    failed = {t.id for k, t in enumerate(tasks) if k % 2}
    assert {t.id for t in s.replay} == failed
    again = s.sample(8)
    assert sum(t.id in failed for t in again[:2]) == 2 and len(again) == 8 and len(s.replay) == 2


def test_evolving_makes_tasks_like_the_failed_ones_within_the_cap():
    env = ["env.id=rlagent/Tool-v0", "env.kwargs={datasets: [gcd, lcm]}"]
    s = sampler("uniform", "curriculum.evolve_share=0.25", "data.difficulties=[3, 4]", env=env)
    tasks = s.sample(8)
    failed = [t for t in tasks if t.fields["dataset"] == "gcd"]
    s.update(play(tasks, lambda t, i: t.fields["dataset"] == "lcm"))
    assert len(s.failed) == len(failed) >= 2
    nxt = s.sample(8)
    made = nxt[:2]  # generated tasks come first
    assert sum(s.origin.values()) == 2 and all(s.origin[t.id] for t in made), "evolve_share of the step"
    # same skill (dataset), same level or the one below
    assert all(t.fields["dataset"] == "gcd" for t in made)
    parents = {t.difficulty for t in failed}
    assert all(t.difficulty in parents | {d - 1 for d in parents if d > 3} for t in made)
    m = s.update(play(nxt, lambda t, i: True))
    assert m["curriculum/generated_share"] == 0.25 and m["curriculum/evolve_errors"] == 0


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_state_round_trip_continues_exactly(name):
    extra = [
        "curriculum.replay_share=0.25",
        "curriculum.evolve_share=0.25",
        "curriculum.min_episodes=4",
        "curriculum.window=4",
    ]
    a = sampler(name, *extra)
    for k in range(5):
        tasks = a.sample(4)
        a.update(play(tasks, lambda t, i, k=k: (i + k + t.difficulty) % 3 == 0))
    state = json.loads(json.dumps(a.state_dict()))  # the checkpoint stores it as JSON
    b = sampler(name, *extra)
    b.load_state_dict(state)
    for _ in range(3):
        ta, tb = a.sample(6), b.sample(6)
        assert [t.to_dict() for t in ta] == [t.to_dict() for t in tb]
        ma = a.update(play(ta, lambda t, i: i % 2 == 0))
        assert ma == b.update(play(tb, lambda t, i: i % 2 == 0))


ENVS = {
    "calculator": ["env.id=rlagent/Calculator-v0"],
    "echo": ECHO,
    "search": ["env.id=rlagent/Search-v0"],
    "tool": ["env.id=rlagent/Tool-v0"],
    "web": ["env.id=rlagent/Web-v0"],
    "textworld": ["env.id=rlagent/TextWorld-v0", f"env.kwargs={{games_dir: {FIXTURES / 'textworld'}}}"],
    "gymtext": [
        "env.id=rlagent/GymText-v0",
        "env.kwargs={env_id: 'tests.support.toy_text_env:toy/Guess-v0'}",
    ],
}


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_env_works_with_every_sampler(env, name):
    s = sampler(
        name, "curriculum.evolve_share=0.5", "curriculum.min_episodes=2", "curriculum.window=2", env=ENVS[env]
    )
    generated = []
    for _ in range(3):
        tasks = s.sample(4)
        assert len(tasks) == 4 and all(t.difficulty in s.source.levels for t in tasks)
        generated.append(s.update(play(tasks, lambda t, i: False))["curriculum/generated_share"])
    assert s.evolve_errors == 0 and generated == [0.0, 0.5, 0.5]  # from the failures of step 1 on


def test_bad_curriculum_settings_name_the_key():
    with pytest.raises(ConfigError, match="curriculum.start_level"):
        sampler("ladder", "curriculum.start_level=9")
    with pytest.raises(ConfigError, match="curriculum.target_low"):
        load_config(None, ["curriculum.target_low=0.9", "curriculum.target_high=0.5"])
    with pytest.raises(ConfigError, match="curriculum.replay_share"):
        load_config(None, ["curriculum.replay_share=0.8", "curriculum.evolve_share=0.5"])
    with pytest.raises(ConfigError, match="curriculum.name"):
        load_config(None, ["curriculum.name=hardest_first"])
    s = sampler("ladder")
    with pytest.raises(ConfigError, match="curriculum.name"):
        sampler("uniform").load_state_dict(s.state_dict())
    # Echo with num_turns fixed makes every task at that difficulty: per-level samplers say so.
    with pytest.raises(ConfigError, match=r"data.difficulties: .* got difficulty 2 .*\[2\]"):
        sampler("ladder", env=["env.id=rlagent/Echo-v0", "env.kwargs={num_turns: 2}"]).sample(1)
    fixed = sampler(
        "ladder", "data.difficulties=[2]", env=["env.id=rlagent/Echo-v0", "env.kwargs={num_turns: 2}"]
    )
    assert {t.difficulty for t in fixed.sample(4)} == {2}
