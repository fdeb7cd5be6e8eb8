"""Tiny models for the tests: the word-level one (``rlagent.testing.make_tiny_model``, which
knows a few letters), and one on the real SmolLM2 tokenizer fitted to write a fixed reply.
"""

from __future__ import annotations

from pathlib import Path

from rlagent.testing import CHAT_TEMPLATE, SPECIAL, WORDS, make_tiny_model  # noqa: F401 (the tests' names)

# --------------------------------------------------------------------------------------------
# A tiny Llama on the real SmolLM2 tokenizer, briefly fitted to write one fixed reply.
#
# make_tiny_model's word-level tokenizer turns any env's text into <unk> and cannot even spell
# an action. This one encodes every observation as SmolLM2 does, and is fitted (plain AdamW,
# a few seconds) so that after the chat template's generation prompt it writes ``action`` and
# then the end-of-turn token, whatever the conversation before it: on the first turn and on
# the turn after an observation alike. An env's parser then receives a valid action.


def smol_tokenizer():
    from transformers import AutoTokenizer

    from rlagent.model_source import DEFAULT_MODEL, resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))


def _gibberish(tok, rng, most: int) -> str:
    """Text decoded from 0..``most`` random ordinary tokens (none of the added ones)."""
    first = max(tok.get_added_vocab().values()) + 1  # SmolLM2: ids 0..16 are added tokens
    return tok.decode([rng.randrange(first, tok.vocab_size) for _ in range(rng.randint(0, most))])


def _training_rows(tok, reply: list[int], rng, n: int, max_filler: int) -> list[tuple[list[int], int]]:
    """``n`` rows (ids, index of the first target): a chat of one or two user messages of
    gibberish, the generation prompt, then ``reply`` (the target). Two-turn rows are built as
    the episode runner builds them (``ChatTokens``: the earlier reply as the generated ids,
    then the observation's template ids)."""
    from rlagent.rollout.chat import ChatTokens

    chat = ChatTokens(tok)
    rows = []
    for _ in range(n):
        ids = chat.prompt([{"role": "user", "content": _gibberish(tok, rng, max_filler)}])
        if rng.random() < 0.5:  # the turn after an observation
            ids = ids + reply + chat.observation(_gibberish(tok, rng, max_filler), reply)
        rows.append((ids + reply, len(ids)))
    return rows


def make_smol_action_model(
    path: Path,
    action: str,
    *,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    steps: int = 100,
    batch: int = 8,
    lr: float = 5e-3,
    max_filler: int = 60,
) -> Path:
    """A tiny random Llama (``hidden``, ``layers``, tied embeddings, SmolLM2's vocabulary and
    bos/eos/pad ids) fitted to reply ``action``, saved with the SmolLM2 tokenizer and its
    ChatML template as a Hugging Face directory.

    ``steps`` AdamW steps on the reply tokens only, one thread (6-9 s on the 2-core machine
    under load). Sampled at temperature 1 on real first and second-turn contexts of the
    built-in envs, ~98% of the replies are exactly ``action`` + eos. A fit whose greedy reply
    is not exactly that is an error here, not a puzzle in the test.
    """
    import random

    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = smol_tokenizer()
    action_ids = tok.encode(action, add_special_tokens=False)
    if tok.decode(action_ids) != action:
        raise ValueError(f"{action!r} does not round-trip through the tokenizer")
    reply = action_ids + [tok.eos_token_id]
    config = LlamaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=hidden // 2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    # One thread: a model this small gains nothing from two, and on a busy machine the
    # second one's spin-waits cost several times the work itself.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        rng = random.Random(seed)
        model = LlamaForCausalLM(config).float()
        rows = sorted(_training_rows(tok, reply, rng, 32 * batch, max_filler), key=lambda r: len(r[0]))
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        model.train()
        for _ in range(steps):
            first = rng.randrange(len(rows) - batch + 1)  # rows of similar length: little padding
            loss = _reply_loss(model, rows[first : first + batch], tok.pad_token_id)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        model.eval()
        with torch.no_grad():
            for ids, start in _training_rows(tok, reply, random.Random(seed + 1), 4, 2 * max_filler):
                prompt = torch.tensor([ids[:start]])
                out = model.generate(
                    prompt,
                    attention_mask=torch.ones_like(prompt),
                    do_sample=False,
                    max_new_tokens=len(reply) + 1,
                )[0, start:].tolist()
                if out[: len(reply)] != reply:
                    raise RuntimeError(f"the fitted model replies {tok.decode(out)!r}, not {action!r}")
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(path)
    GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    ).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _reply_loss(model, rows: list[tuple[list[int], int]], pad_id: int):
    """Cross-entropy of the reply tokens only. The LM head runs on those positions alone:
    logits over the 49k vocabulary at every position would cost more than the model."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    where, targets = [], []
    for r, (ids, start) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        attention[r, : len(ids)] = 1
        where += [(r, i - 1) for i in range(start, len(ids))]  # position i-1 predicts ids[i]
        targets += ids[start:]
    hidden = model.model(input_ids=input_ids, attention_mask=attention).last_hidden_state
    rows_i, pos_i = zip(*where)
    logits = model.lm_head(hidden[list(rows_i), list(pos_i)])
    return torch.nn.functional.cross_entropy(logits, torch.tensor(targets))
