"""The learner's arithmetic: chunked logprobs equal the plain computation, and two
data-parallel ranks take the step one rank takes on the whole batch."""
import pytest
import torch

from rlagent.config import load_config
from rlagent.logprobs import token_logprobs
from rlagent.records import TrainBatch


def _model(path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def test_chunked_logprobs_match_full_logits(tiny_model):
    model = _model(tiny_model)
    ids = torch.randint(7, 17, (3, 12))
    attn = torch.ones_like(ids)
    attn[2, 9:] = 0                                   # a right-padded row
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


def _batch() -> TrainBatch:
    g = torch.Generator().manual_seed(0)
    rows, masks, olds, lengths = [], [], [], []
    for n in (10, 14, 9, 12, 14, 11):
        ids = torch.randint(7, 17, (n,), generator=g).tolist()
        mask = [0] * 4 + [1] * (n - 4)
        rows.append(ids + [1] * (14 - n))
        masks.append(mask + [0] * (14 - n))
        olds.append([(-2.8 if m else 0.0) for m in mask] + [0.0] * (14 - n))  # ~ -log(17)
        lengths.append(n)
    return TrainBatch(rows, masks, olds, lengths, pad_id=1,
                      advantages=[1.0, -1.0, 0.5, -0.5, 2.0, -2.0])


def _train_once(tiny_model, ranks: int, stage) -> tuple[dict, dict]:
    from rlagent.actors import LearnerGroup

    cfg = load_config(None, [f"learner.num_ranks={ranks}", f"learner.zero_stage={stage}",
                             "learner.lr=0.01", "learner.micro_batch_size=2", "learner.threads=1",
                             "learner.num_cpus=0.5", "learner.grad_clip=0"])
    group = LearnerGroup(cfg, tiny_model)
    metrics = group.train_step(_batch())
    import ray
    weights = dict(ray.get(group.named_weights_refs()[0]))
    for r in group.ranks:
        ray.kill(r)
    return metrics, weights


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2])
def test_two_ranks_take_the_single_rank_step(tiny_model, ray_cluster, stage):
    one_m, one_w = _train_once(tiny_model, 1, 0)
    two_m, two_w = _train_once(tiny_model, 2, stage)
    assert one_m["train/tokens"] == two_m["train/tokens"] == sum(n - 4 for n in (10, 14, 9, 12, 14, 11))
    assert abs(one_m["loss/policy"] - two_m["loss/policy"]) < 1e-6
    # Adam's first step is blind to the gradient's scale; the norm is not.
    assert abs(one_m["grad_norm"] - two_m["grad_norm"]) < 1e-4 * one_m["grad_norm"]
    base = _model(tiny_model).state_dict()
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(one_w[name], base[name]), "the update changed nothing"
    for k, v in one_w.items():
        # Adam's first step is ~lr * sign(g): where |g| ~ 1e-8 rounding can move an element.
        close = torch.isclose(v, two_w[k], atol=1e-6)
        assert close.float().mean() > 0.999, k
