"""Held-out evaluation: a fixed task file, ``rlagent eval`` of the untrained model and of a
trained checkpoint (real Ray, vLLM and DeepSpeed, the tiny model on Echo-v0), bad inputs."""

import hashlib
import json

import pytest
from support.evalcase import _config, _lines

from rlagent.cli import main
from rlagent.config import load_config


def _recompute(episodes: list[dict]) -> tuple[int, int]:
    """(successes, scored) from the episodes as written, by the documented rule."""
    successes = scored = 0
    for e in episodes:
        if e["termination"] in ("env_error", "env_timeout"):
            continue
        info = e["turns"][-1]["info"]
        ok = (
            bool(info["success"])
            if info.get("success") is not None
            else (None if e["reward"] is None else e["reward"] >= 1.0)
        )
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
def test_trained_checkpoint_beats_the_untrained_model(base_eval, echo_grpo_run):
    tmp, config, tasks, base_out = base_eval
    base = json.loads((base_out / "eval.json").read_text())["metrics"]["success/rate"]
    # The learning family's GRPO run (conftest), trained with what this eval config says.
    run_dir = echo_grpo_run
    trained_with = load_config(str(run_dir / "config.yaml"))
    evaluated_with = load_config(config)
    for section in ("env", "rollout", "rewards", "algo"):
        assert getattr(trained_with, section) == getattr(evaluated_with, section), section
    assert main(["eval", config, f"tasks={tasks}", "samples=2", f"checkpoint={run_dir}"]) == 0
    trained = json.loads((run_dir / "eval" / "heldout" / "eval.json").read_text())
    assert trained["model"] == str(run_dir / "checkpoints" / "final")
    assert trained["metrics"]["success/rate"] > max(0.7, base + 0.5), (base, trained["metrics"])
    # greedy, a checkpoint directory, another output directory
    greedy_out = tmp / "greedy"
    assert (
        main(
            [
                "eval",
                config,
                f"tasks={tasks}",
                "samples=2",
                "temperature=0",
                f"checkpoint={run_dir / 'checkpoints' / 'final'}",
                f"out={greedy_out}",
            ]
        )
        == 0
    )
    greedy = json.loads((greedy_out / "eval.json").read_text())
    assert greedy["temperature"] == 0 and greedy["metrics"]["success/rate"] > 0.7
    by_task: dict[int, set] = {}
    for e in _lines(greedy_out / "episodes.jsonl"):
        by_task.setdefault(e["group"], set()).add(tuple(t["action"] for t in e["turns"]))
    assert all(len(actions) == 1 for actions in by_task.values())  # greedy: both samples agree
