"""Placement: the cluster is checked before anything starts, and a group that cannot be
placed ends in an error naming the role, its config keys and the resources."""

import time

import pytest

from rlagent.config import load_config
from rlagent.placement import Placement, PlacementError


def _settled_cpus(timeout_s: float = 60.0) -> float:
    """Free CPUs once every actor of an earlier test has gone (they leave asynchronously)."""
    import ray

    total = ray.cluster_resources().get("CPU", 0)
    deadline = time.time() + timeout_s
    while ray.available_resources().get("CPU", 0) < total - 1e-6 and time.time() < deadline:
        time.sleep(0.2)
    return ray.available_resources().get("CPU", 0)


@pytest.mark.slow
def test_placement_reserves_bundles_and_times_out_with_a_clear_error(ray_cluster):
    import ray

    cfg = load_config(None, ["rollout.num_cpus=1", "learner.num_cpus=1", "rewards.num_cpus=0.5"])
    before = _settled_cpus()
    with Placement(cfg):
        # 1 + 1 + 0.5 CPUs reserved for the three roles
        assert ray.available_resources().get("CPU", 0) == pytest.approx(before - 2.5)
    # Fits the cluster's total (4 CPUs) but not what is free while another run holds 2.5.
    big = load_config(None, ["rollout.num_cpus=2", "learner.num_cpus=1", "ray.placement_timeout_s=3"])
    with Placement(cfg), pytest.raises(PlacementError) as err:
        Placement(big)
    assert "ray.placement_timeout_s" in str(err.value) and "rollout workers" in str(err.value)
    assert _settled_cpus() == pytest.approx(before)  # nothing leaked
