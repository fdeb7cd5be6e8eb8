"""The weight transports: the gloo group on its own (threads of this process stand in for
the members), then learner -> vLLM engine through Ray with the collective transport."""

import threading
import time

import pytest
import torch

from rlagent.config import ConfigError, load_config
from rlagent.weight_group import (
    GroupAddress,
    TensorMeta,
    WeightGroup,
    WeightTransportError,
    backend_for,
    describe,
    open_store,
)

CPU = torch.device("cpu")


def _members(world: int, timeout_s: float, fn):
    """Run ``fn(group)`` in one thread per rank of a fresh gloo group; results by rank."""
    store, address = open_store("127.0.0.1", world, timeout_s, CPU)
    results, errors = {}, {}

    def member(rank):
        try:
            group = WeightGroup(address, rank, CPU, store if rank == 0 else None)
            results[rank] = fn(group)
            group.close()
        except Exception as err:  # noqa: BLE001 - reported by rank below
            errors[rank] = err

    threads = [threading.Thread(target=member, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_gloo_group_broadcasts_every_tensor_in_order():
    embed = torch.randn(7, 5)
    weights = {
        "embed.weight": embed,
        "norm.weight": torch.rand(5).to(torch.bfloat16),
        "steps": torch.arange(3),
        "mlp.t": torch.randn(4, 6).t(),  # not contiguous
        "lm_head.weight": embed,
    }  # tied: sent once
    metas = [TensorMeta.from_wire(m.wire()) for m in describe(weights)]
    assert [m.same_as for m in metas] == [None] * 4 + ["embed.weight"]

    def run(group):
        if group.rank == 0:
            return group.send(weights)
        return dict(group.receive(metas))

    results, errors = _members(3, 10, run)
    assert not errors, errors
    assert results[0] == sum(v.numel() * v.element_size() for v in weights.values()) - 7 * 5 * 4
    for rank in (1, 2):
        got = results[rank]
        assert list(got) == list(weights)
        for k, v in weights.items():
            assert got[k].dtype == v.dtype and torch.equal(got[k], v), k


def test_a_member_that_never_joins_is_a_clear_error():
    store, address = open_store("127.0.0.1", 2, 1.5, CPU)
    t0 = time.monotonic()
    with pytest.raises(
        WeightTransportError,
        match=r"rank 0 could not form the weight-update "
        r"gloo group of 2 at 127\.0\.0\.1:\d+ within 2 s",
    ):
        WeightGroup(address, 0, CPU, store)
    assert time.monotonic() - t0 < 10


def test_a_receiver_that_stops_listening_times_out_the_sender():
    big = {"w": torch.zeros(4_000_000)}

    def run(group):
        if group.rank == 0:
            return group.send(big)
        time.sleep(4)  # joined, but never receives

    results, errors = _members(2, 1.5, run)
    assert isinstance(errors.get(0), WeightTransportError), (results, errors)
    assert "broadcasting w failed" in str(errors[0])


def test_weights_on_cpu_cannot_join_an_nccl_group():
    address = GroupAddress("127.0.0.1", 1, 2, "nccl", 1.0)
    with pytest.raises(WeightTransportError, match="has its weights on cpu, which nccl cannot carry"):
        WeightGroup(address, 1, CPU)
    assert backend_for(torch.device("cuda", 0)) == "nccl" and backend_for(CPU) == "gloo"


def test_weight_sync_key():
    assert load_config(None).learner.sync_transport == "object_store"  # CPU default unchanged
    gpu = load_config(None, ["learner.num_gpus=1", "rollout.num_gpus=1"])
    assert gpu.learner.sync_transport == "collective"
    forced = load_config(None, ["learner.num_gpus=1", "learner.weight_sync=object_store"])
    assert forced.learner.sync_transport == "object_store"
    assert load_config(None, ["learner.weight_sync=collective"]).learner.sync_transport == "collective"
    with pytest.raises(
        ConfigError,
        match="learner.weight_sync: must be one of 'auto', 'object_store', 'collective', got 'nccl'",
    ):
        load_config(None, ["learner.weight_sync=nccl"])
