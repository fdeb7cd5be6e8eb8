"""The engine's sampling logprobs are the learner's logprobs of the same tokens, at the
temperature and nucleus the results configs sample with (the importance ratio rests on it):
the engine returns them after temperature and top-p (``processed_logprobs``), the learner
divides its logits by the temperature and renormalises over the same nucleus."""

import pytest
import torch

from rlagent.config import load_config
from rlagent.curriculum import UniformSampler
from rlagent.learner.logprobs import token_logprobs
from rlagent.model_source import resolve_model
from rlagent.rollout.pool import RolloutPool
from rlagent.scoring.service import start_reward_service

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    from transformers import AutoModelForCausalLM

    path = resolve_model("SmolLM2-135M-Instruct")
    return path, AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@pytest.mark.parametrize("temperature, top_p", [(0.7, 1.0), (0.7, 0.9)])
def test_engine_and_learner_logprobs_agree(ray_cluster, smollm, temperature, top_p):
    path, model = smollm
    cfg = load_config(
        "launch/configs/quickstart.yaml",
        [
            "algo.tasks_per_step=2",
            "algo.group_size=2",
            "rollout.max_new_tokens=32",
            "rollout.max_turns=2",
            f"rollout.temperature={temperature}",
            f"rollout.top_p={top_p}",
        ],
    )
    pool = RolloutPool(cfg, path, start_reward_service(cfg.rewards))
    try:
        episodes = pool.run(UniformSampler(cfg).sample(2), 2)
    finally:
        pool.shutdown()
    gaps, plain_gaps = [], []
    for e in episodes:
        ids = torch.tensor([e.token_ids])
        mask = torch.tensor([e.loss_mask])
        with torch.no_grad():
            lp, _ = token_logprobs(
                model, ids, torch.ones_like(ids), mask, temperature=temperature, top_p=top_p
            )
            plain, _ = token_logprobs(model, ids, torch.ones_like(ids), mask)
        sampled = torch.tensor([x for x, m in zip(e.logprobs, e.loss_mask) if m])
        gaps += (lp - sampled).abs().tolist()
        plain_gaps += (plain - sampled).abs().tolist()
    assert len(gaps) > 40, "too few generated tokens to compare"
    mean = sum(gaps) / len(gaps)
    assert mean < 1e-4 and max(gaps) < 1e-3, (mean, max(gaps))
    # and the plain (temperature 1, full vocabulary) logprobs are clearly not what was sampled
    assert sum(plain_gaps) / len(plain_gaps) > 20 * mean
