"""Per-token log-probabilities without materialising batch x length x vocabulary logits."""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def _chunk_logprobs(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                    temperature: float, entropy_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head(hidden).float() / temperature          # [n, V], only for this chunk
    logz = torch.logsumexp(logits, dim=-1)
    lp = logits.gather(-1, targets[:, None])[:, 0] - logz
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        probs = torch.softmax(logits, dim=-1)
        entropy = logz - (probs * logits).sum(-1)
    return lp, entropy


def token_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   target_mask: torch.Tensor, chunk: int = 256,
                   temperature: float = 1.0,
                   entropy_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Logprob and entropy of the tokens where ``target_mask`` is 1, given their prefixes.

    input_ids, attention_mask, target_mask: [B, T]. Returns two flat tensors [N], N =
    target_mask.sum(), in row-major order. The LM head runs only at the N positions that
    predict a target token, in chunks under activation checkpointing: peak memory holds
    one chunk's logits (chunk x V) instead of B x T x V, and the backward pass recomputes them.
    The entropy carries a gradient only with ``entropy_grad`` (an entropy bonus needs it).
    """
    decoder = model.get_decoder()
    head = model.get_output_embeddings()
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask,
                     use_cache=False).last_hidden_state          # [B, T, H]
    sel = target_mask[:, 1:].bool()                              # position t predicts token t+1
    h = hidden[:, :-1][sel]                                      # [N, H]
    y = input_ids[:, 1:][sel]                                    # [N]
    lps, ents = [], []
    for i in range(0, y.numel(), chunk):
        if torch.is_grad_enabled():
            lp, ent = checkpoint(_chunk_logprobs, head, h[i:i + chunk], y[i:i + chunk],
                                 temperature, entropy_grad, use_reentrant=False)
        else:
            lp, ent = _chunk_logprobs(head, h[i:i + chunk], y[i:i + chunk], temperature, False)
        lps.append(lp)
        ents.append(ent)
    if not lps:
        empty = hidden.new_zeros(0)
        return empty, empty
    return torch.cat(lps), torch.cat(ents)
