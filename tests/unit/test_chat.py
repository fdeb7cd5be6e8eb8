"""ChatTokens: token-in/token-out chat pieces agree with the template rendering of the chat."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from rlagent.rollout.chat import ChatTokens

SMOL = Path("~/.cache/rlagent/models/SmolLM2-135M-Instruct").expanduser()


@pytest.fixture(scope="module")
def smol():
    return AutoTokenizer.from_pretrained(SMOL)


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(params=["smol", "tiny"])
def tok(request):
    return request.getfixturevalue(request.param)


# Texts the tiny word-level tokenizer knows (a..h, yes, no); SmolLM2 tokenises anything.
OPENING = [{"role": "system", "content": "a b"}, {"role": "user", "content": "c d e"}]
TURNS = ["f g", "yes h"]
OBSERVATIONS = ["no a", "b"]


def render(tok, messages, generation_prompt: bool) -> list[int]:
    out = tok.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True)
    return list(out["input_ids"])


def turn_ids(tok, text: str, eos: bool = True) -> list[int]:
    """What the engine produces for an assistant turn: the text's ids, then eos if it stopped."""
    return tok.encode(text, add_special_tokens=False) + ([tok.eos_token_id] if eos else [])


def test_prompt_is_the_template_with_generation_prompt(tok):
    chat = ChatTokens(tok)
    assert chat.prompt(OPENING) == render(tok, OPENING, True)
    user_only = OPENING[1:]
    assert chat.prompt(user_only) == render(tok, user_only, True)


def test_multi_turn_ids_equal_template_rendering(tok):
    chat = ChatTokens(tok)
    ids, messages = chat.prompt(OPENING), list(OPENING)
    for text, obs in zip(TURNS, OBSERVATIONS):
        turn = turn_ids(tok, text)
        ids += turn + chat.observation(obs, turn)
        messages += [{"role": "assistant", "content": text}, {"role": "user", "content": obs}]
    # prompt + turn 1 + observation 1 + turn 2 + observation 2 ends in a generation prompt
    assert ids == render(tok, messages, True)


def test_chat_ending_on_an_assistant_turn(tok):
    # Up to and including the last turn's eos, the ids are a prefix of the rendering
    # without a generation prompt; the rest is only what the template writes after eos.
    chat = ChatTokens(tok)
    t1, t2 = turn_ids(tok, TURNS[0]), turn_ids(tok, TURNS[1])
    ids = chat.prompt(OPENING) + t1 + chat.observation(OBSERVATIONS[0], t1) + t2
    full = render(
        tok,
        OPENING
        + [
            {"role": "assistant", "content": TURNS[0]},
            {"role": "user", "content": OBSERVATIONS[0]},
            {"role": "assistant", "content": TURNS[1]},
        ],
        False,
    )
    assert full[: len(ids)] == ids
    assert tok.eos_token_id not in full[len(ids) :]


def test_truncated_turn_is_closed_with_eos(tok):
    chat = ChatTokens(tok)
    cut = turn_ids(tok, TURNS[0], eos=False)  # hit max_new_tokens: no eos
    obs = chat.observation(OBSERVATIONS[0], cut)
    assert obs[0] == tok.eos_token_id
    # the same observation after a turn that did stop: only the eos differs
    assert obs[1:] == chat.observation(OBSERVATIONS[0], turn_ids(tok, TURNS[0]))
    messages = OPENING + [
        {"role": "assistant", "content": TURNS[0]},
        {"role": "user", "content": OBSERVATIONS[0]},
    ]
    assert chat.prompt(OPENING) + cut + obs == render(tok, messages, True)


def test_empty_turn_is_closed_with_eos(tok):
    chat = ChatTokens(tok)
    obs = chat.observation(OBSERVATIONS[0], [])
    assert obs[0] == tok.eos_token_id
    messages = OPENING + [{"role": "assistant", "content": ""}, {"role": "user", "content": OBSERVATIONS[0]}]
    assert chat.prompt(OPENING) + obs == render(tok, messages, True)


def test_observation_is_exactly_the_closing_and_user_pieces(tiny):
    # tiny template: "<|role|> content </s> " per message, whitespace-split into words
    chat = ChatTokens(tiny)
    v = tiny.get_vocab()
    obs = chat.observation("no a", turn_ids(tiny, "f g"))
    assert obs == [v["<|user|>"], v["no"], v["a"], v["</s>"], v["<|assistant|>"]]


def test_decode_drops_special_tokens(tok):
    chat = ChatTokens(tok)
    turn = turn_ids(tok, TURNS[1])
    ids = chat.prompt(OPENING) + turn + chat.observation(OBSERVATIONS[1], turn)
    text = chat.decode(ids)
    assert tok.eos_token not in text
    for special in tok.all_special_tokens:
        assert special not in text
    for words in ("a b", "c d e", TURNS[1], OBSERVATIONS[1]):
        assert words in text
    assert chat.decode(turn).strip() == TURNS[1]


# The first message rewritten once the chat is longer than one exchange: appending a
# message changes the ids of earlier ones, so ids kept from earlier turns would be wrong.
UNSTABLE = {
    "smol": (
        "{% for m in messages %}{% if loop.first and messages|length > 2 %}"
        "{% set c = m['content']|upper %}{% else %}{% set c = m['content'] %}{% endif %}"
        "<|im_start|>{{ m['role'] }}\n{{ c }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "tiny": (
        "{% for m in messages %}<|{{ m['role'] }}|> "
        "{% if loop.first and messages|length > 2 %}a {% endif %}{{ m['content'] }} </s> "
        "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    ),
}


@pytest.mark.parametrize("name", ["smol", "tiny"])
def test_template_that_rewrites_earlier_messages_is_rejected(request, name):
    tok = copy.deepcopy(request.getfixturevalue(name))
    tok.chat_template = UNSTABLE[name]
    # the unstable template really renders the first message differently in a longer chat
    two = [{"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]
    three = two + [{"role": "user", "content": "d"}]
    assert render(tok, three, False)[: len(render(tok, two, False))] != render(tok, two, False)
    with pytest.raises(ValueError, match="prefix-stable"):
        ChatTokens(tok).observation("d", turn_ids(tok, "c"))
