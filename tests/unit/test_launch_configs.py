"""Every example config in launch/configs loads, and asks for no more GPUs than its cluster has."""

import re
from pathlib import Path

import pytest
from support import REPO

from rlagent.config import load_config

CONFIGS = sorted((REPO / "launch" / "configs").glob("*.yaml"))
# The cluster a GPU config is written for, stated in a comment: "# cluster: 2 nodes x 8 GPUs".
CLUSTER = re.compile(r"^#\s*cluster:\s*(\d+)\s*nodes?\s*x\s*(\d+)\s*GPUs\b", re.M)


def cluster(path: Path) -> tuple[int, int] | None:
    m = CLUSTER.search(path.read_text())
    return (int(m[1]), int(m[2])) if m else None


def test_the_examples_are_there():
    assert {p.name for p in CONFIGS} >= {"quickstart.yaml", "gpu-1node-8.yaml", "gpu-2nodes-16.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_fits_its_cluster(path):
    cfg = load_config(path)  # as written: placeholders included, every key must exist
    r, lc = cfg.rollout, cfg.learner
    gpus = r.num_workers * r.num_gpus + lc.num_ranks * lc.num_gpus
    stated = cluster(path)
    if stated is None:  # a CPU config
        assert gpus == 0, f"{path.name} asks for {gpus} GPUs but states no '# cluster: N nodes x M GPUs'"
        return
    nodes, per_node = stated
    assert 0 < gpus <= nodes * per_node, f"{path.name}: {gpus} GPUs asked, the cluster has {nodes * per_node}"
    # Ray places each actor on one node: no actor may ask for more GPUs than a node has.
    assert r.num_gpus <= per_node and lc.num_gpus <= per_node
    assert cfg.model.dtype == "bfloat16"
    # The run directory is written by the driver on the head node: it must be an absolute path
    # (shared storage), not a folder inside Ray's temporary copy of the repository.
    assert Path(cfg.run.output_dir).is_absolute()
    # The learner splits each step's episodes over its ranks.
    assert cfg.episodes_per_step % lc.num_ranks == 0


@pytest.mark.parametrize("path", [p for p in CONFIGS if cluster(p)], ids=lambda p: p.name)
def test_gpu_config_takes_a_model_override(path, tmp_path):
    cfg = load_config(path, [f"model.path={tmp_path}", "run.steps=1"])
    assert cfg.model.path == str(tmp_path) and cfg.run.steps == 1


def test_gpu_configs_state_their_cluster():
    by_name = {p.name: cluster(p) for p in CONFIGS}
    assert by_name["gpu-1node-8.yaml"] == (1, 8)
    assert by_name["gpu-2nodes-16.yaml"] == (2, 8)
    assert by_name["quickstart.yaml"] is None


@pytest.mark.parametrize("path", [p for p in CONFIGS if "\nagent:" in p.read_text()], ids=lambda p: p.name)
def test_agent_configs_name_an_agent_that_loads(path):
    from rlagent.rollout.agents import load_entrypoint

    cfg = load_config(path)
    assert cfg.agent is not None and "agent" in {c.name for c in cfg.rewards.components}
    assert callable(load_entrypoint(cfg.agent.entrypoint, str(REPO)))
