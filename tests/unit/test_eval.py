"""Held-out evaluation: a fixed task file, ``rlagent eval`` of the untrained model and of a
trained checkpoint (real Ray, vLLM and DeepSpeed, the tiny model on Echo-v0), bad inputs."""

import json

from support.evalcase import _config, _lines

from rlagent.cli import main
from rlagent.records import Episode, Task, Turn, succeeded
from rlagent.tracking import success_counts


def test_heldout_task_file_is_deterministic(tmp_path, capsys):
    config = _config(tmp_path, "unused")
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        assert main(["tasks", config, "--n", "12", "--seed", seed, "--out", str(tmp_path / name)]) == 0
    a, b, c = ((tmp_path / n).read_text() for n in "abc")
    assert a == b and a != c
    tasks = [json.loads(line) for line in a.splitlines()]
    assert len(tasks) == 12 and all(t["env"] == "rlagent/Echo-v0" for t in tasks)
    assert all(len(t["letters_seq"]) == 2 for t in tasks)  # env.kwargs shape the tasks
    # the training stream's seed is refused
    assert main(["tasks", config, "--n", "3", "--seed", "1", "--out", str(tmp_path / "d")]) == 2
    assert "--seed 1: the same as run.seed" in capsys.readouterr().err


def test_difficulties_are_taken_in_turn(tmp_path):
    config = _config(tmp_path, "unused")
    out = tmp_path / "calc.jsonl"
    assert (
        main(
            [
                "tasks",
                config,
                "env.id=rlagent/Calculator-v0",
                "--n",
                "5",
                "--difficulties",
                "1",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert [t["difficulty"] for t in _lines(out)] == [1, 3, 1, 3, 1]


def _episode(termination: str, info: dict, reward: float | None) -> Episode:
    task = Task(id="t", env="rlagent/Echo-v0", prompt="a")
    return Episode(
        task=task,
        group=0,
        messages=[],
        token_ids=[],
        loss_mask=[],
        logprobs=[],
        prompt_len=0,
        turns=[Turn("a", None, 0.0, info, (0, 0), "stop")],
        termination=termination,
        policy_version=0,
        reward=reward,
    )


def test_success_is_the_env_flag_else_a_full_reward_and_env_failures_are_not_judged():
    assert succeeded(_episode("terminated", {"success": True}, 0.0)) is True
    assert succeeded(_episode("terminated", {"success": False}, 1.0)) is False
    assert succeeded(_episode("max_turns", {}, 1.0)) is True
    assert succeeded(_episode("max_turns", {}, 0.5)) is False
    assert succeeded(_episode("max_turns", {}, None)) is None  # a weighted plugin failed
    assert succeeded(_episode("env_error", {"error": "boom"}, None)) is None
    m = success_counts([True, False, None, True], "success")
    assert (m["success/rate"], m["success/scored"], m["success/unscored"]) == (2 / 3, 3, 1)


def test_bad_inputs_are_named_before_anything_starts(tmp_path, capsys):
    config = _config(tmp_path, "unused")
    missing = tmp_path / "nope.jsonl"
    assert main(["eval", config, f"tasks={missing}"]) == 2
    assert f"eval.tasks: {missing}: no such file" in capsys.readouterr().err
    tasks = tmp_path / "heldout.jsonl"
    assert main(["tasks", config, "--n", "2", "--out", str(tasks)]) == 0
    empty = tmp_path / "run-without-model"
    (empty / "checkpoints").mkdir(parents=True)
    assert main(["eval", config, f"tasks={tasks}", f"checkpoint={empty}"]) == 2
    err = capsys.readouterr().err
    assert f"eval.checkpoint: {empty}: no model there" in err
    other = tmp_path / "calc.jsonl"
    other.write_text('{"id": "x", "prompt": "1 + 1", "env": "rlagent/Calculator-v0"}\n')
    assert main(["eval", config, f"tasks={other}"]) == 2
    assert "holds tasks for rlagent/Calculator-v0" in capsys.readouterr().err
