"""The learner's arithmetic: chunked logprobs equal the plain computation, a group's shared
prompt computed once gives the same logprobs, gradients and update, and two data-parallel
ranks take the step one rank takes on the whole batch."""

import pytest
import torch
from support.batches import _group_batch, _model

from rlagent.config import load_config
from rlagent.learner.logprobs import prompt_groups, shared_token_logprobs, token_logprobs


def test_chunked_logprobs_match_full_logits(tiny_model):
    model = _model(tiny_model)
    ids = torch.randint(7, 17, (3, 12))
    attn = torch.ones_like(ids)
    attn[2, 9:] = 0  # a right-padded row
    mask = torch.zeros_like(ids)
    mask[:, 5:9] = 1
    mask[1, 10:] = 1
    full = torch.log_softmax(model(input_ids=ids, attention_mask=attn).logits.float(), -1)
    sel = mask[:, 1:].bool()
    want = full[:, :-1].gather(-1, ids[:, 1:, None])[..., 0][sel]
    got, entropy = token_logprobs(model, ids, attn, mask, chunk=5)
    assert got.shape == (int(mask[:, 1:].sum()),)
    assert torch.allclose(got, want, atol=1e-5)
    want_ent = -(full.exp() * full).sum(-1)[:, :-1][sel]
    assert torch.allclose(entropy, want_ent, atol=1e-5)
    # Gradients through the checkpointed chunks equal those of the plain computation.
    got.sum().backward()
    g_chunked = model.model.embed_tokens.weight.grad.clone()
    model.zero_grad()
    full = torch.log_softmax(model(input_ids=ids, attention_mask=attn).logits.float(), -1)
    full[:, :-1].gather(-1, ids[:, 1:, None])[..., 0][sel].sum().backward()
    assert torch.allclose(g_chunked, model.model.embed_tokens.weight.grad, atol=1e-5)


def test_nucleus_logprobs_by_hand():
    # logits (2, 1, 0, -1): probs 0.6439, 0.2369, 0.0871, 0.0321; ascending cumulative sums
    # 0.0321, 0.1192, 0.3561, 1: top_p 0.7 drops those <= 0.3 (tokens 3 and 2). Over the
    # nucleus {0, 1}: log(e^2 + e^1) = 2.313262, so token 0 has 2 - 2.313262 = -0.313262 and
    # token 1 -1.313262. A sampled token the nucleus would drop (rounding) is kept:
    # token 2 over {0, 1, 2} is 0 - log(e^2 + e + 1) = -2.407606.
    from rlagent.learner.logprobs import _chunk_logprobs, nucleus_mask

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]] * 3)
    head = torch.nn.Identity()
    assert nucleus_mask(logits, torch.tensor([0, 1, 2]), 0.7).tolist() == [
        [False, False, True, True],
        [False, False, True, True],
        [False, False, False, True],
    ]
    lp, ent = _chunk_logprobs(head, logits, torch.tensor([0, 1, 2]), 1.0, False, top_p=0.7)
    assert lp.tolist() == pytest.approx([-0.313262, -1.313262, -2.407606], abs=1e-5)
    # the entropy of the renormalised nucleus {0, 1}: p = 0.731059, 0.268941
    assert float(ent[0]) == pytest.approx(0.582203, abs=1e-5)
    full, _ = _chunk_logprobs(head, logits, torch.tensor([0, 1, 2]), 1.0, False)
    assert full.tolist() == pytest.approx([-0.440190, -1.440190, -2.440190], abs=1e-5)


def test_rank_shares_keep_groups_whole_and_balance():
    from rlagent.learner.tensors import rank_shares

    groups = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3]
    rows = list(range(12))
    shares = rank_shares(rows, groups, 2)
    assert sorted(r for s in shares for r in s) == rows
    for s in shares:
        assert s == sorted(s)  # the order within a share is that of rows
    owner = {groups[r]: i for i, s in enumerate(shares) for r in s}
    assert all(owner[groups[r]] == i for i, s in enumerate(shares) for r in s), shares
    # largest first to the emptier rank: group 3 (4) -> 0, group 0 (3) -> 1, group 1 (3) -> 1,
    # group 2 (2) -> 0: 6 rows each
    assert shares == [[6, 7, 8, 9, 10, 11], [0, 1, 2, 3, 4, 5]]
    assert rank_shares([5, 1, 3], [], 2) == [[5, 3], [1]]  # no groups: rows spread one by one


def test_each_rank_trains_whole_groups():
    """Through the learner's own micro-batching (no engine needed): the two ranks' rows share
    no group, so each group's prompt runs once, on one rank."""
    from rlagent.learner.worker import Learner

    groups = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3]
    rows = sorted(range(12), key=lambda r: groups[r])
    cfg = load_config(None, ["learner.num_ranks=2", "learner.micro_batch_size=4"])
    seen = []
    for rank in (0, 1):
        learner = Learner(cfg, "unused", rank)
        learner._groups = groups
        seen.append([r for micro in learner._micro(rows) for r in micro])
    assert {groups[r] for r in seen[0]}.isdisjoint({groups[r] for r in seen[1]}), seen


def test_shared_prompt_logprobs_and_gradients_match(tiny_model):
    batch = _group_batch()
    ids, mask = torch.tensor(batch.input_ids), torch.tensor(batch.loss_mask)
    attn = (torch.arange(14)[None] < torch.tensor(batch.lengths)[:, None]).long()
    assert prompt_groups(ids, mask) == [([0, 1, 2], 5), ([3, 4, 5], 7)]
    grads = []
    for fn in (token_logprobs, shared_token_logprobs):
        model = _model(tiny_model)
        lp, ent = fn(model, ids, attn, mask, chunk=4, entropy_grad=True)
        (lp.sum() + 0.1 * ent.sum()).backward()
        grads.append((lp.detach(), ent.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (lp0, ent0, g0), (lp1, ent1, g1) = grads
    assert lp0.shape == (int(mask[:, 1:].sum()),) and torch.allclose(lp0, lp1, atol=1e-5)
    assert torch.allclose(ent0, ent1, atol=1e-5)
    for name, g in g0.items():
        assert torch.allclose(g, g1[name], atol=1e-6, rtol=1e-4), name
