"""Tensor-parallel engines from the config: the worker's bundle holds every GPU of its engine,
and vLLM is asked to shard over them (the sharded run itself needs GPUs)."""

import pytest

from rlagent.config import ConfigError, load_config
from rlagent.placement import PlacementError, check_resources, roles
from rlagent.rollout.engine import llm_args

ARGS = dict(seed=0, max_model_len=512, dtype="bfloat16", gpu_memory_utilization=0.8, max_num_seqs=64)


def test_engine_is_sharded_only_when_asked():
    one = llm_args("m", tensor_parallel_size=1, cuda=True, **ARGS)
    assert "tensor_parallel_size" not in one and one["gpu_memory_utilization"] == 0.8
    four = llm_args("m", tensor_parallel_size=4, cuda=True, **ARGS)
    assert four["tensor_parallel_size"] == 4 and four["distributed_executor_backend"] == "mp"
    assert "gpu_memory_utilization" not in llm_args("m", tensor_parallel_size=1, cuda=False, **ARGS)


def test_placement_reserves_every_gpu_of_a_sharded_engine():
    cfg = load_config(
        None,
        [
            "rollout.num_workers=2",
            "rollout.num_gpus=4",
            "rollout.tensor_parallel_size=4",
            "learner.num_gpus=1",
            "learner.num_ranks=8",
        ],
    )
    rollout = next(r for r in roles(cfg) if r.name == "rollout workers")
    assert rollout.count == 2 and rollout.bundle["GPU"] == 4
    check_resources(cfg, {"CPU": 64, "GPU": 16})
    with pytest.raises(PlacementError, match="needs GPU 16 but the cluster has GPU 8"):
        check_resources(cfg, {"CPU": 64, "GPU": 8})


def test_tensor_parallel_needs_the_gpus_in_the_worker():
    with pytest.raises(ConfigError, match="rollout.tensor_parallel_size: 2 needs rollout.num_gpus = 2"):
        load_config(None, ["rollout.tensor_parallel_size=2", "rollout.num_gpus=1"])
    with pytest.raises(ConfigError, match="rollout.tensor_parallel_size"):
        load_config(None, ["rollout.tensor_parallel_size=0"])
