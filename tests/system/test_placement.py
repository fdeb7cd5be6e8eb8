"""Placement: the cluster is checked before anything starts, and a group that cannot be
placed ends in an error naming the role, its config keys and the resources."""

import pytest

from rlagent.config import load_config
from rlagent.placement import Placement, PlacementError


@pytest.mark.slow
def test_placement_reserves_bundles_and_times_out_with_a_clear_error(ray_cluster):
    import ray

    cfg = load_config(None, ["rollout.num_cpus=1", "learner.num_cpus=1", "rewards.num_cpus=0.5"])
    before = ray.available_resources().get("CPU", 0)
    with Placement(cfg):
        # 1 + 1 + 0.5 CPUs reserved for the three roles
        assert ray.available_resources().get("CPU", 0) == pytest.approx(before - 2.5)
    # Fits the cluster's total (4 CPUs) but not what is free while another run holds 2.5.
    big = load_config(None, ["rollout.num_cpus=2", "learner.num_cpus=1", "ray.placement_timeout_s=3"])
    with Placement(cfg), pytest.raises(PlacementError) as err:
        Placement(big)
    assert "ray.placement_timeout_s" in str(err.value) and "rollout workers" in str(err.value)
    import time

    deadline = time.time() + 10  # groups are released asynchronously
    while ray.available_resources().get("CPU", 0) < before - 1e-6 and time.time() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == pytest.approx(before)  # nothing leaked
