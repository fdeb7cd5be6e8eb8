"""build_batch: scored episodes -> right-padded rows, masks, advantages and stats."""

from __future__ import annotations

import math

import pytest

from rlagent.batch import build_batch
from rlagent.config import AlgoConfig, Config, load_config
from rlagent.learner.tensors import batch_advantages, target_tensors
from rlagent.records import Episode, Task, Turn

PAD = 1  # not 0, so padding of ids cannot be confused with padding of masks
A = 0.5 / math.sqrt(1 / 3)  # [1, 0, 0, 1]: mean 0.5, sample std sqrt(1/3) -> ±0.86603


def episode(
    group: int,
    prompt: list[int],
    gen: list[int],
    reward: float | None,
    lp: float = -0.5,
    termination: str = "terminated",
) -> Episode:
    ids = prompt + gen
    turn = Turn("text", None, 0.0, {}, (len(prompt), len(ids)), "stop")
    return Episode(
        task=Task(id=f"t{group}", env="Echo", prompt="p"),
        group=group,
        messages=[],
        token_ids=ids,
        loss_mask=[0] * len(prompt) + [1] * len(gen),
        logprobs=[0.0] * len(prompt) + [lp] * len(gen),
        prompt_len=len(prompt),
        turns=[turn],
        termination=termination,
        policy_version=0,
        reward=reward,
    )


CFG = Config()


class Advantages(list):
    """Per-episode advantages of a built batch under the estimator the learner runs."""

    def __init__(self, batch, algo: AlgoConfig | None = None):
        algo = algo or AlgoConfig()
        t = target_tensors(batch)
        adv, _ = batch_advantages(batch, algo, t.mask, t.sampling)
        # outcome estimators give every token of an episode the same advantage
        super().__init__(float(row[m.bool()][0]) if m.any() else 0.0 for row, m in zip(adv, t.mask))
        self.tokens = adv


def test_rows_are_right_padded():
    eps = [
        episode(0, [5, 6], [7, 8, 9], 1.0, lp=-0.1),
        episode(0, [5, 6], [7], 0.0, lp=-0.2),
        episode(0, [5, 6, 7], [8, 9, 10], 0.0, lp=-0.3),
        episode(0, [5], [9, 9], 1.0, lp=-0.4),
    ]
    batch, stats = build_batch(eps, CFG, pad_id=PAD)
    assert len(batch) == 4 and batch.pad_id == PAD
    assert batch.lengths == [5, 3, 6, 3]
    assert batch.input_ids == [
        [5, 6, 7, 8, 9, PAD],
        [5, 6, 7, PAD, PAD, PAD],
        [5, 6, 7, 8, 9, 10],
        [5, 9, 9, PAD, PAD, PAD],
    ]
    assert batch.loss_mask == [[0, 0, 1, 1, 1, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], [0, 1, 1, 0, 0, 0]]
    assert batch.old_logprobs == [
        [0.0, 0.0, -0.1, -0.1, -0.1, 0.0],
        [0.0, 0.0, -0.2, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, -0.3, -0.3, -0.3],
        [0.0, -0.4, -0.4, 0.0, 0.0, 0.0],
    ]
    # rewards [1, 0, 0, 1] in one group -> ±0.86603
    assert Advantages(batch) == pytest.approx([A, -A, -A, A], abs=1e-5)
    assert (stats.episodes, stats.invalid, stats.zero_variance_groups) == (4, 0, 0.0)


def test_two_groups_advantages_and_stats():
    # group 0: [1, 0, 0, 1] -> ±0.86603; group 1: [0.5, 0.5] all equal -> 0, no signal
    rewards = [(0, 1.0), (1, 0.5), (0, 0.0), (0, 0.0), (1, 0.5), (0, 1.0)]
    eps = [episode(g, [5], [6] * (i + 1), r) for i, (g, r) in enumerate(rewards)]
    batch, stats = build_batch(eps, CFG, pad_id=PAD)
    assert Advantages(batch) == pytest.approx([A, 0, -A, -A, 0, A], abs=1e-5)
    assert stats.zero_variance_groups == 0.5  # 1 of 2 groups
    assert batch.rewards == [1.0, 0.5, 0.0, 0.0, 0.5, 1.0] and batch.groups == [0, 1, 0, 0, 1, 0]


def test_dr_grpo_setting_reaches_the_advantages():
    eps = [episode(0, [5], [6], r) for r in (1.0, 0.0, 0.0, 1.0)]
    cfg = load_config(None, ["algo.name=dr_grpo"])
    batch, _ = build_batch(eps, cfg, pad_id=PAD)
    assert Advantages(batch, cfg.algo) == pytest.approx([0.5, -0.5, -0.5, 0.5], abs=1e-6)


def test_invalid_reward_gets_no_loss_and_no_advantage():
    # valid rewards [1, 0, 1]: mean 2/3, deviations 1/3, -2/3, 1/3, variance (1/9+4/9+1/9)/2 = 1/3,
    # std 0.57735 -> 0.57735, -1.15470, 0.57735; the invalid episode is left out and gets 0.
    eps = [
        episode(0, [5], [6, 7], 1.0),
        episode(0, [5], [6, 7, 8], None, lp=-0.9),
        episode(0, [5], [6], 0.0),
        episode(0, [5], [6], 1.0),
    ]
    batch, stats = build_batch(eps, CFG, pad_id=PAD)
    assert Advantages(batch) == pytest.approx([0.57735, 0.0, -1.154701, 0.57735], abs=1e-5)
    assert batch.loss_mask[1] == [0, 0, 0, 0]
    assert batch.input_ids[1] == [5, 6, 7, 8] and batch.lengths[1] == 4  # the row is kept
    assert batch.old_logprobs[1] == [0.0, -0.9, -0.9, -0.9]
    assert batch.loss_mask[0] == [0, 1, 1, 0]  # valid rows keep their masks
    assert stats.invalid == 1 and stats.episodes == 4
    assert batch.valid == [True, False, True, True] and batch.rewards[1] == 0.0


def test_episode_without_tokens_becomes_one_pad_token():
    failed = episode(1, [], [], None, termination="env_error")
    eps = [episode(0, [5, 6], [7], 1.0), episode(0, [5, 6], [8], 0.0), failed]
    batch, stats = build_batch(eps, CFG, pad_id=PAD)
    assert batch.lengths == [3, 3, 1]
    assert batch.input_ids[2] == [PAD, PAD, PAD]
    assert batch.loss_mask[2] == [0, 0, 0] and batch.old_logprobs[2] == [0.0, 0.0, 0.0]
    assert Advantages(batch)[2] == 0.0 and stats.invalid == 1
    # group 0: [1, 0] -> ±0.70711
    assert Advantages(batch)[:2] == pytest.approx([0.707107, -0.707107], abs=1e-5)


def test_only_empty_episodes_still_give_rows_of_width_one():
    eps = [episode(0, [], [], None, termination="env_error") for _ in range(2)]
    batch, stats = build_batch(eps, CFG, pad_id=PAD)
    assert batch.input_ids == [[PAD], [PAD]] and batch.loss_mask == [[0], [0]]
    assert batch.lengths == [1, 1] and Advantages(batch) == [0.0, 0.0]
    assert stats.invalid == 2 and stats.zero_variance_groups == 0.0


def test_zero_variance_share_counts_groups():
    # groups 0 and 3 have signal, groups 1 and 2 have all-equal rewards -> 2 / 4 = 0.5
    rewards = {0: [1.0, 0.0], 1: [1.0, 1.0], 2: [0.0, 0.0], 3: [0.2, 0.4]}
    eps = [episode(g, [5], [6], r) for g, rs in rewards.items() for r in rs]
    _, stats = build_batch(eps, CFG, pad_id=PAD)
    assert stats.zero_variance_groups == 0.5
    eps = [episode(g, [5], [6], r) for g, rs in rewards.items() if g in (1, 2) for r in rs]
    batch, stats = build_batch(eps, CFG, pad_id=PAD)
    assert stats.zero_variance_groups == 1.0 and Advantages(batch) == [0.0] * 4


def test_zero_variance_group_has_zero_advantages():
    # A group the stats count as "no signal" must not train: e.g. every sample earned only
    # a 0.1-weighted format reward. Float32 rounding of the mean must not leak through.
    eps = [episode(0, [5], [6], 0.1) for _ in range(8)]
    batch, stats = build_batch(eps, CFG, pad_id=PAD)
    assert stats.zero_variance_groups == 1.0
    assert max(abs(a) for a in Advantages(batch)) < 1e-6, Advantages(batch)


def test_signal_is_judged_on_the_shaped_reward():
    """Both episodes of group 0 earn 1.0, but the longer one is past the overlong buffer
    (6 generated tokens, max 6, buffer 4: penalty -(6 - 2) / 4 = -1; 2 tokens: 0), so the
    estimator sees [1, 0]: the group has signal, and the stats say so."""
    cfg = load_config(None, ["algo.overlong_buffer=4", "algo.overlong_max_tokens=6"])
    eps = [
        episode(0, [5], [7, 8], 1.0),
        episode(0, [5], [7, 8, 9, 9, 9, 9], 1.0),
        episode(1, [5], [7, 8], 1.0),
        episode(1, [5], [7, 9], 1.0),
    ]
    batch, stats = build_batch(eps, cfg, pad_id=PAD)
    assert batch.rewards == [1.0, 0.0, 1.0, 1.0]
    assert stats.zero_variance_groups == 0.5  # group 1 only
    assert Advantages(batch)[:2] == pytest.approx([0.707107, -0.707107], abs=1e-5)
