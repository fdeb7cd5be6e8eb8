"""Held-out evaluation: a fixed task file, ``rlagent eval`` of the untrained model and of a
trained checkpoint (real Ray, vLLM and DeepSpeed, the tiny model on Echo-v0), bad inputs."""
import hashlib
import json

import pytest
import yaml

from rlagent.cli import main
from rlagent.config import load_config
from rlagent.evaluate import success_counts
from rlagent.records import Episode, Task, Turn, succeeded
from rlagent.trainer import train

# The learning tests' settings (echo_learning.py): a stable curve, 80 steps.
ECHO = {
    "run": {"name": "echo", "steps": 80, "seed": 1},
    "env": {"id": "rlagent/Echo-v0", "kwargs": {"num_turns": 2}},
    "rollout": {"max_new_tokens": 2, "max_episode_tokens": 64, "max_turns": 2, "kv_cache_gib": 1},
    "algo": {"group_size": 8, "tasks_per_step": 8, "entropy_coef": 0.01},
    "learner": {"lr": 0.003, "micro_batch_size": 64},
    # env_success (weight 0) is only reported: each component shows in the eval
    "rewards": {"components": [{"name": "env_reward", "weight": 1.0},
                               {"name": "env_success", "weight": 0.0}]},
    "tracking": {"wandb_mode": "disabled", "save_rollouts": False},
}


def _config(tmp_path, model: str) -> str:
    cfg = {**ECHO, "model": {"path": model}, "run": {**ECHO["run"], "output_dir": str(tmp_path / "runs")}}
    path = tmp_path / "echo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


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
    assert main(["tasks", config, "env.id=rlagent/Calculator-v0", "--n", "5",
                 "--difficulties", "1", "3", "--out", str(out)]) == 0
    assert [t["difficulty"] for t in _lines(out)] == [1, 3, 1, 3, 1]


def _episode(termination: str, info: dict, reward: float | None) -> Episode:
    task = Task(id="t", env="rlagent/Echo-v0", prompt="a")
    return Episode(task=task, group=0, messages=[], token_ids=[], loss_mask=[], logprobs=[],
                   prompt_len=0, turns=[Turn("a", None, 0.0, info, (0, 0), "stop")],
                   termination=termination, policy_version=0, reward=reward)


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


def _recompute(episodes: list[dict]) -> tuple[int, int]:
    """(successes, scored) from the episodes as written, by the documented rule."""
    successes = scored = 0
    for e in episodes:
        if e["termination"] in ("env_error", "env_timeout"):
            continue
        info = e["turns"][-1]["info"]
        ok = bool(info["success"]) if info.get("success") is not None else (
            None if e["reward"] is None else e["reward"] >= 1.0)
        if ok is not None:
            scored += 1
            successes += ok
    return successes, scored


@pytest.fixture(scope="module")
def base_eval(tiny_model, ray_cluster, tmp_path_factory):
    """The untrained tiny model on 32 held-out tasks, 2 samples each."""
    tmp = tmp_path_factory.mktemp("eval")
    config = _config(tmp, tiny_model)
    tasks = tmp / "heldout.jsonl"
    assert main(["tasks", config, "--n", "32", "--out", str(tasks)]) == 0
    assert main(["eval", config, f"tasks={tasks}", "samples=2"]) == 0
    (out,) = (tmp / "runs").glob("base-*/eval/heldout")  # base-<model dir name>
    return tmp, config, tasks, out


@pytest.mark.slow
def test_untrained_eval_matches_its_episodes(base_eval):
    _, _, tasks, out = base_eval
    report = json.loads((out / "eval.json").read_text())
    episodes = _lines(out / "episodes.jsonl")
    m = report["metrics"]
    assert report["checkpoint"] == "base" and report["samples"] == 2 and len(episodes) == 64
    assert report["tasks_sha256"] == hashlib.sha256(tasks.read_bytes()).hexdigest()
    assert sorted(e["group"] for e in episodes) == sorted(list(range(32)) * 2)
    successes, scored = _recompute(episodes)
    assert (m["success/successes"], m["success/scored"]) == (successes, scored) and scored == 64
    assert m["success/rate"] == pytest.approx(successes / scored)
    assert m["success/d2/rate"] == m["success/rate"]  # num_turns=2: every task is level 2
    assert [e["success"] for e in episodes].count(True) == successes
    rewards = [e["reward"] for e in episodes]
    assert m["reward/mean"] == pytest.approx(sum(rewards) / len(rewards))
    assert m["reward/env_success/mean"] == pytest.approx(successes / scored)
    assert m["episode/turns_mean"] == pytest.approx(sum(len(e["turns"]) for e in episodes) / 64)
    assert "info/correct" in m and m["env/errors"] == 0
    assert m["success/rate"] < 0.3  # chance: 4 of the 17 tokens are letters


@pytest.mark.slow
def test_trained_checkpoint_beats_the_untrained_model(base_eval, run_seed):
    tmp, config, tasks, base_out = base_eval
    base = json.loads((base_out / "eval.json").read_text())["metrics"]["success/rate"]
    run_dir = train(load_config(config, [f"run.seed={run_seed}"]))
    assert main(["eval", config, f"tasks={tasks}", "samples=2", f"checkpoint={run_dir}"]) == 0
    trained = json.loads((run_dir / "eval" / "heldout" / "eval.json").read_text())
    assert trained["model"] == str(run_dir / "checkpoints" / "final")
    assert trained["metrics"]["success/rate"] > max(0.7, base + 0.5), (base, trained["metrics"])
    # greedy, a checkpoint directory, another output directory
    greedy_out = tmp / "greedy"
    assert main(["eval", config, f"tasks={tasks}", "samples=2", "temperature=0",
                 f"checkpoint={run_dir / 'checkpoints' / 'final'}", f"out={greedy_out}"]) == 0
    greedy = json.loads((greedy_out / "eval.json").read_text())
    assert greedy["temperature"] == 0 and greedy["metrics"]["success/rate"] > 0.7
    by_task: dict[int, set] = {}
    for e in _lines(greedy_out / "episodes.jsonl"):
        by_task.setdefault(e["group"], set()).add(tuple(t["action"] for t in e["turns"]))
    assert all(len(actions) == 1 for actions in by_task.values())  # greedy: both samples agree
