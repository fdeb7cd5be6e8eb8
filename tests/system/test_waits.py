"""Every wait of the driver has a deadline, and the error says what it waited for; of several
things waited on, the first failure ends the wait at once (real Ray)."""

from __future__ import annotations

import json
import os
import time

import pytest
import ray
from support.runs import tiny_run_config

from rlagent.curriculum import UniformSampler
from rlagent.remote import WaitTimeout, wait
from rlagent.rollout.pool import RolloutPool
from rlagent.scoring.service import start_reward_service

pytestmark = pytest.mark.slow


@ray.remote(num_cpus=0.1)
class Sleeper:
    def sleep(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def die(self) -> None:
        os._exit(1)


def test_wait_times_out_naming_what_it_waited_for(ray_cluster):
    sleeper = Sleeper.remote()
    assert wait(sleeper.sleep.remote(0), 30, "a nap") == 0
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"timed out after 1 s waiting for the sleeper to wake"):
        wait(sleeper.sleep.remote(60), 1, "the sleeper to wake")
    assert time.monotonic() - t0 < 10
    ray.kill(sleeper)


def test_a_dead_actor_ends_a_wait_on_several_at_once(ray_cluster):
    sleeper, doomed = Sleeper.remote(), Sleeper.remote()
    t0 = time.monotonic()
    with pytest.raises(ray.exceptions.RayActorError) as info:
        wait([sleeper.sleep.remote(60), doomed.die.remote()], 120, "the learner ranks")
    assert time.monotonic() - t0 < 30  # not after the sleeper's minute, nor the 120 s deadline
    assert "(while waiting for the learner ranks)" in getattr(info.value, "__notes__", [""])[0]
    ray.kill(sleeper)


def test_rollout_past_its_deadline_names_the_setting(tiny_model, ray_cluster, tmp_path):
    env = {"delay_s": 1.5, "log": str(tmp_path / "faults.log")}  # every env step is slow
    cfg = tiny_run_config(
        tiny_model,
        None,
        "env.id=rlagent.testing:faults/FaultyEcho-v0",
        f"env.kwargs={json.dumps(env)}",
        "rollout.timeout_s=2",
    )
    pool = RolloutPool(cfg, tiny_model, start_reward_service(cfg.rewards))
    try:
        with pytest.raises(
            WaitTimeout,
            match=r"timed out after 2 s waiting for the rollout "
            r"workers \(rollout.timeout_s\)",
        ):
            pool.run(UniformSampler(cfg).sample(1), 2)
    finally:
        for w in pool.workers:
            ray.kill(w, no_restart=True)
