"""The weight transports: the gloo group on its own (threads of this process stand in for
the members), then learner -> vLLM engine through Ray with the collective transport."""

import pytest
from support.runs import tiny_run_config

from rlagent.weight_group import WeightTransportError


def _tiny_config(tiny_model):
    return tiny_run_config(
        tiny_model,
        None,
        "env.kwargs={num_turns: 1}",
        "rollout.max_new_tokens=4",
        "rollout.max_turns=1",
        "learner.weight_sync=collective",
    )


@pytest.fixture(scope="module")
def parts(tiny_model, ray_cluster):
    from rlagent.learner.group import LearnerGroup
    from rlagent.rollout.pool import RolloutPool
    from rlagent.scoring.service import start_reward_service

    cfg = _tiny_config(tiny_model)
    pool = RolloutPool(cfg, tiny_model, start_reward_service(cfg.rewards))
    learner = LearnerGroup(cfg, tiny_model)
    yield cfg, pool, learner
    pool.shutdown()


def _gaps(learner, episodes):
    """|learner logprob - engine sampling logprob| on every generated token."""
    gaps = []
    for e in episodes:
        scored = learner.score([e.token_ids], 1)[0]
        gaps += [abs(scored[i - 1] - e.logprobs[i]) for i in range(1, len(e.token_ids)) if e.loss_mask[i]]
    return gaps


def _update(cfg, learner, pool, episodes):
    from rlagent.batch import build_batch

    batch, _ = build_batch(episodes, cfg, pool.pad_id)
    batch.advantages = [1.0 if i % 2 else -1.0 for i in range(len(batch))]  # a real update
    assert learner.train_step(batch)["grad_norm"] > 0


@pytest.mark.slow
def test_collective_transport_moves_the_learners_weights_into_the_engine(parts):
    from rlagent.curriculum import UniformSampler
    from rlagent.weight_sync import WeightSync

    cfg, pool, learner = parts
    sync = WeightSync(learner, pool, timeout_s=60, tol=3e-4, transport=cfg.learner.sync_transport)
    assert sync.transport.name == "collective" and sync.transport.address.backend == "gloo"
    sampler = UniformSampler(cfg)
    episodes = pool.run(sampler.sample(2), 2)
    for version in (1, 2):
        _update(cfg, learner, pool, episodes)
        stale = _gaps(learner, episodes)
        assert sum(stale) / len(stale) > 1e-3, "the update did not change the weights"
        probe = max(episodes, key=lambda e: e.num_generated)
        out = sync.push(probe.token_ids, probe.prompt_len)  # raises WeightSyncError beyond tol
        assert out["policy_version"] == version and out["sync/logprob_gap_max"] < 3e-4
        episodes = pool.run(sampler.sample(2), 2)
        assert {e.policy_version for e in episodes} == {version}
        gaps = _gaps(learner, episodes)
        assert max(gaps) < 3e-4 and sum(gaps) / len(gaps) < 1e-4, (max(gaps), sum(gaps) / len(gaps))


@pytest.mark.slow
def test_an_engine_that_never_joins_ends_the_setup_with_a_clear_error(parts):
    import ray

    from rlagent.weight_sync import CollectiveTransport

    @ray.remote(num_cpus=0.1)
    class Absent:
        """A rollout worker whose engine never joins the group."""

        def weight_group_members(self):
            return 1

        def join_weight_group(self, address, first_rank):
            return None

    _, pool, learner = parts
    absent = Absent.remote()

    class PoolAndAbsent:
        """The pool's weight-group methods, with one more worker that never joins."""

        def weight_group_members(self):
            return pool.weight_group_members() | {"absent": absent.weight_group_members.remote()}

        def join_weight_group(self, address, firsts):
            return pool.join_weight_group(address, firsts[:-1]) | {
                "absent": absent.join_weight_group.remote(address, firsts[-1])
            }

    transport = CollectiveTransport(learner, PoolAndAbsent(), timeout_s=3)
    with pytest.raises(
        WeightTransportError,
        match=r"the weight-update gloo group of 3 at "
        r"[\d.]+:\d+ to form: .*could not form .* within 3 s \(learner\.sync_timeout_s\)",
    ):
        transport.setup()
    ray.kill(absent)
