"""Training batches built by hand: six episodes of two groups, right-padded, with
sampling logprobs near the tiny model's uniform level (-2.8 ~ -log(17))."""

import torch

from rlagent.records import TrainBatch


def _model(path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


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
    return TrainBatch(rows, masks, olds, lengths, pad_id=1, advantages=[1.0, -1.0, 0.5, -0.5, 2.0, -2.0])


def _group_batch() -> TrainBatch:
    """Two groups of three episodes; each group shares its prompt (5 and 7 tokens), the
    episodes differ after it, and one holds an observation (not trained on) between turns."""
    g = torch.Generator().manual_seed(1)
    rows, masks, olds, lengths, groups = [], [], [], [], []
    for group, (p, sizes) in enumerate([(5, (11, 14, 8)), (7, (13, 10, 14))]):
        prompt = torch.randint(7, 17, (p,), generator=g).tolist()
        for n in sizes:
            ids = prompt + torch.randint(7, 17, (n - p,), generator=g).tolist()
            mask = [0] * p + [1] * (n - p)
            if n == 14:
                mask[p + 2 : p + 4] = [0, 0]
            rows.append(ids + [1] * (14 - n))
            masks.append(mask + [0] * (14 - n))
            olds.append([(-2.8 if m else 0.0) for m in mask] + [0.0] * (14 - n))
            lengths.append(n)
            groups.append(group)
    return TrainBatch(
        rows,
        masks,
        olds,
        lengths,
        pad_id=1,
        groups=groups,
        valid=[True] * 6,
        rewards=[1.0, 0.0, 0.5, 0.0, 1.0, 0.2],
    )


LENGTHS = (10, 14, 9, 12, 14, 11)


def batch(rewards=(1.0, 0.0, 1.0, 0.0, 0.5, 0.0), advantages=None) -> TrainBatch:
    """Six episodes of two groups: 4 prompt tokens, then policy tokens, right-padded."""
    g = torch.Generator().manual_seed(0)
    rows, masks, olds = [], [], []
    for n in LENGTHS:
        ids = torch.randint(7, 17, (n,), generator=g).tolist()
        mask = [0] * 4 + [1] * (n - 4)
        rows.append(ids + [1] * (14 - n))
        masks.append(mask + [0] * (14 - n))
        olds.append([(-2.8 if m else 0.0) for m in mask] + [0.0] * (14 - n))  # ~ -log(17)
    return TrainBatch(
        rows,
        masks,
        olds,
        list(LENGTHS),
        pad_id=1,
        rewards=list(rewards),
        valid=[True] * 6,
        groups=[0, 0, 0, 1, 1, 1],
        advantages=advantages,
    )
