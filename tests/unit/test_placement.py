"""Placement: the cluster is checked before anything starts, and a group that cannot be
placed ends in an error naming the role, its config keys and the resources."""

import pytest

from rlagent.config import load_config
from rlagent.placement import PlacementError, check_resources


def test_more_gpus_than_the_cluster_has_is_named_before_anything_starts():
    cfg = load_config(
        None, ["rollout.num_workers=4", "rollout.num_gpus=1", "learner.num_ranks=4", "learner.num_gpus=1"]
    )
    with pytest.raises(PlacementError) as err:
        check_resources(cfg, {"CPU": 64.0, "GPU": 4.0})
    msg = str(err.value)
    # 4 workers x 1 GPU + 4 ranks x 1 GPU = 8 GPUs asked, 4 there
    assert "needs GPU 8" in msg and "cluster has GPU 4" in msg
    assert "rollout.num_workers x (rollout.num_cpus, rollout.num_gpus)" in msg
    check_resources(cfg, {"CPU": 64.0, "GPU": 8.0})  # fits: no error
    # an evaluation places no learner: the rollout workers' 4 GPUs are enough
    check_resources(cfg, {"CPU": 64.0, "GPU": 4.0}, only=("rollout workers", "reward service"))
