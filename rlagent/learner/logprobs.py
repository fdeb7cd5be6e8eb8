"""Per-token log-probabilities without materialising batch x length x vocabulary logits."""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def nucleus_mask(logits: torch.Tensor, targets: torch.Tensor, top_p: float) -> torch.Tensor:
    """[n, V] True where top-p sampling drops the token, by the engine's rule: sort
    ascending, drop the tokens whose cumulative probability is at most 1 - top_p (never the
    most likely one). The target token is always kept: it was sampled, so only rounding
    between the engine's logits and ours can put it just outside."""
    with torch.no_grad():
        ordered, order = logits.sort(dim=-1)
        drop_sorted = ordered.softmax(dim=-1).cumsum(dim=-1) <= 1 - top_p
        drop_sorted[:, -1] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        drop[torch.arange(len(targets), device=logits.device), targets] = False
    return drop


def _chunk_logprobs(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    entropy_grad: bool,
    top_p: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head(hidden).float() / temperature  # [n, V], only for this chunk
    if top_p < 1.0:  # the distribution the engine samples from: the nucleus, renormalised
        drop = nucleus_mask(logits, targets, top_p)
        logits = logits.masked_fill(drop, float("-inf"))
    logz = torch.logsumexp(logits, dim=-1)
    lp = logits.gather(-1, targets[:, None])[:, 0] - logz
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        probs = torch.softmax(logits, dim=-1)
        finite = logits if top_p >= 1.0 else logits.masked_fill(drop, 0.0)  # 0 * -inf is nan
        entropy = logz - (probs * finite).sum(-1)
    return lp, entropy


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    target_mask: torch.Tensor,
    chunk: int = 256,
    temperature: float = 1.0,
    entropy_grad: bool = False,
    top_p: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logprob and entropy of the tokens where ``target_mask`` is 1, given their prefixes.

    input_ids, attention_mask, target_mask: [B, T]. Returns two flat tensors [N], N =
    target_mask.sum(), in row-major order. The LM head runs only at the N positions that
    predict a target token, in chunks under activation checkpointing: peak memory holds
    one chunk's logits (chunk x V) instead of B x T x V, and the backward pass recomputes them.
    The entropy carries a gradient only with ``entropy_grad`` (an entropy bonus needs it).
    ``temperature`` and ``top_p`` give the distribution the engine sampled from (logits
    divided by the temperature, then the nucleus kept and renormalised), so that the
    importance ratio compares like with like.
    """
    hidden = model.get_decoder()(
        input_ids=input_ids, attention_mask=attention_mask, use_cache=False
    ).last_hidden_state  # [B, T, H]
    return _head_logprobs(
        model.get_output_embeddings(), hidden, input_ids, target_mask, chunk, temperature, entropy_grad, top_p
    )


def _head_logprobs(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    target_mask: torch.Tensor,
    chunk: int,
    temperature: float,
    entropy_grad: bool,
    top_p: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    sel = target_mask[:, 1:].bool()  # position t predicts token t+1
    h = hidden[:, :-1][sel]  # [N, H]
    y = input_ids[:, 1:][sel]  # [N]
    lps, ents = [], []
    for i in range(0, y.numel(), chunk):
        if torch.is_grad_enabled():
            lp, ent = checkpoint(
                _chunk_logprobs,
                head,
                h[i : i + chunk],
                y[i : i + chunk],
                temperature,
                entropy_grad,
                top_p,
                use_reentrant=False,
            )
        else:
            lp, ent = _chunk_logprobs(head, h[i : i + chunk], y[i : i + chunk], temperature, False, top_p)
        lps.append(lp)
        ents.append(ent)
    if not lps:
        empty = hidden.new_zeros(0)
        return empty, empty
    return torch.cat(lps), torch.cat(ents)


def prompt_groups(input_ids: torch.Tensor, target_mask: torch.Tensor) -> list[tuple[list[int], int]]:
    """Rows that start with the same prompt: ``(rows, p)`` per distinct prompt, where the
    prompt is a row's tokens before its first target token (``p`` of them). The episodes of a
    GRPO group share theirs. Rows without targets come alone with ``p = 0``."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for r in range(input_ids.shape[0]):
        hits = target_mask[r].nonzero()
        p = int(hits[0]) if hits.numel() else 0
        key = tuple(input_ids[r, :p].tolist()) if p else (-1 - r,)
        groups.setdefault(key, []).append(r)
    return [(rows, len(key) if key[0] >= 0 else 0) for key, rows in groups.items()]


def _shared_hidden(
    decoder: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, p: int
) -> torch.Tensor:
    """Last hidden states [n, T, H] of rows that share ``input_ids[:, :p]``: the prompt runs
    once (batch of one) and its key/value cache, repeated per row, feeds the rest. Gradients
    flow back into the prompt's single forward from every row."""
    n = input_ids.shape[0]
    head = decoder(input_ids=input_ids[:1, :p], attention_mask=attention_mask[:1, :p], use_cache=True)
    cache = head.past_key_values
    cache.batch_repeat_interleave(n)
    tail = decoder(
        input_ids=input_ids[:, p:], attention_mask=attention_mask, past_key_values=cache, use_cache=True
    ).last_hidden_state
    return torch.cat([head.last_hidden_state.expand(n, -1, -1), tail], dim=1)


def shared_token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    target_mask: torch.Tensor,
    chunk: int = 256,
    temperature: float = 1.0,
    entropy_grad: bool = False,
    top_p: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``token_logprobs``, with each distinct prompt of the rows computed once.

    Same inputs and outputs (flat, row-major); rows are grouped by ``prompt_groups`` and a
    group of several rows shares its prompt's forward. For G episodes of P prompt and C
    completion tokens the decoder sees P + G*C tokens instead of G*(P + C). The model must
    return a key/value cache (off under Hugging Face gradient checkpointing).
    """
    groups = prompt_groups(input_ids, target_mask)
    if all(len(rows) == 1 or p < 2 for rows, p in groups):
        return token_logprobs(
            model, input_ids, attention_mask, target_mask, chunk, temperature, entropy_grad, top_p
        )
    decoder = model.get_decoder()
    head = model.get_output_embeddings()
    per_row: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * input_ids.shape[0]
    for rows, p in groups:
        idx = torch.tensor(rows, device=input_ids.device)
        ids, attn, tmask = input_ids[idx], attention_mask[idx], target_mask[idx]
        width = int(attn.sum(1).max())
        ids, attn, tmask = ids[:, :width], attn[:, :width], tmask[:, :width]
        if len(rows) > 1 and p >= 2:
            hidden = _shared_hidden(decoder, ids, attn, p)
        else:
            hidden = decoder(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
        lp, ent = _head_logprobs(head, hidden, ids, tmask, chunk, temperature, entropy_grad, top_p)
        counts = tmask[:, 1:].bool().sum(1).tolist()
        for r, a, b in zip(rows, lp.split(counts), ent.split(counts)):
            per_row[r] = (a, b)
    return torch.cat([x[0] for x in per_row]), torch.cat([x[1] for x in per_row])
