"""Env faults through the real trainer (Ray, vLLM, DeepSpeed): steps that raise or hang past
``rollout.step_timeout_s`` end their episodes, are counted in ``env/errors`` and
``env/timeouts`` exactly as often as they were injected, and the run goes on.

Rates are such that a run without any fault, or with a step where every episode failed (the
trainer stops on that: a broken setup), is about one in a thousand."""

from __future__ import annotations

import json

import pytest
from support.runs import tiny_run_config

from rlagent.testing import count
from rlagent.trainer import train

FAULTY = "rlagent.testing:faults/FaultyEcho-v0"  # importable in Ray's workers too


@pytest.mark.slow
def test_env_faults_are_counted_as_injected_and_the_run_goes_on(tiny_model, ray_cluster, tmp_path):
    log = tmp_path / "faults.log"
    kwargs = {"raise_rate": 0.15, "hang_rate": 0.15, "hang_s": 3.0, "log": str(log)}
    run_dir = train(
        tiny_run_config(
            tiny_model,
            tmp_path,
            "run.steps=3",
            f"env.id={FAULTY}",
            f"env.kwargs={json.dumps(kwargs)}",
            "rollout.step_timeout_s=0.5",
            "algo.tasks_per_step=6",
            name="faults",
        )
    )
    with open(run_dir / "metrics.jsonl") as f:
        steps = [json.loads(line) for line in f]
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert sum(s["env/errors"] for s in steps) == count(str(log), "raise") > 0
    assert sum(s["env/timeouts"] for s in steps) == count(str(log), "hang") > 0
    for step in (1, 2, 3):
        with open(run_dir / "rollouts" / f"step_{step:05d}.jsonl") as f:
            for e in map(json.loads, f):
                if e["termination"] in ("env_error", "env_timeout"):
                    assert e["reward"] is None  # a broken env is never scored as 0
