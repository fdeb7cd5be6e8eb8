"""A tiny randomly initialised Llama with a word-level tokenizer that knows a few letters.

Fast enough to train to convergence in a test, real enough for vLLM and DeepSpeed: it is
saved as an ordinary Hugging Face model directory.
"""
from __future__ import annotations

from pathlib import Path

SPECIAL = ["<unk>", "<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
WORDS = ["a", "b", "c", "d", "e", "f", "g", "h", "yes", "no"]
# Each message is "<|role|> content </s>": the end-of-turn token is the eos the engine stops on.
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def make_tiny_model(path: Path, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
        eos_token="</s>", additional_special_tokens=SPECIAL[4:])
    tok.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
        head_dim=hidden // 2, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"], pad_token_id=vocab["<pad>"])
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
