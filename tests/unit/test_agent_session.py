"""The agent endpoint's pure parts: the OpenAI request format (400s name the field) and the
session's token bookkeeping (append-only calls extend one exact sample; others split)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from rlagent.records import Task
from rlagent.rollout.chat import ChatTokens
from rlagent.rollout.openai_format import BadRequest, canonical, parse_request, template_messages
from rlagent.rollout.session import Session

SMOL = Path("~/.cache/rlagent/models/SmolLM2-135M-Instruct").expanduser()
TOOLS = [{"type": "function", "function": {"name": "calculate", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def smol():
    return AutoTokenizer.from_pretrained(SMOL)


# ---------------------------------------------------------------- the request format
@pytest.mark.parametrize(
    "body, param",
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "stream"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": [""]}, "stop"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools[0]"),
        (
            {"messages": [{"role": "user", "content": "x"}], "tools": [{"function": {"name": ""}}]},
            "tools[0].function.name",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}, "tool_choice"),
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": [{"function": {}}]}]},
            "messages[0].tool_calls[0].function.name",
        ),
    ],
)
def test_bad_requests_name_the_field(body, param):
    with pytest.raises(BadRequest) as err:
        parse_request(body)
    assert err.value.param == param and err.value.status == 400


def test_a_request_is_read_as_openai_sends_it():
    req = parse_request(
        {
            "model": "m",
            "messages": [
                {
                    "role": "developer",
                    "content": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}],
                },
                {"role": "user", "content": "hi", "name": "ann"},
            ],
            "max_completion_tokens": 7,
            "stop": "END",
            "tools": TOOLS,
            "user": "ignored",
        }
    )
    assert req.messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert (req.max_tokens, req.stop, req.tools) == (7, ["END"], TOOLS)
    assert (
        parse_request(
            {"messages": [{"role": "user", "content": "x"}], "tools": TOOLS, "tool_choice": "none"}
        ).tools
        == []
    )


def test_tool_calls_compare_by_value_not_by_spelling():
    ours = canonical({"role": "assistant", "content": None, "tool_calls": [_call('{"expression": "1+2"}')]})
    echoed = canonical(
        {"role": "assistant", "content": "", "tool_calls": [_call('{"expression":"1+2"}', "x")]}
    )
    assert ours == echoed
    assert ours != canonical(
        {"role": "assistant", "content": "", "tool_calls": [_call('{"expression": "2"}')]}
    )


def test_template_messages_put_tools_calls_and_results_in_one_format():
    msgs = [
        canonical({"role": "system", "content": "S"}),
        canonical({"role": "user", "content": "Q"}),
        canonical({"role": "assistant", "content": "let me", "tool_calls": [_call('{"e": 1}')]}),
        canonical({"role": "tool", "content": "1"}),
        canonical({"role": "tool", "content": "2"}),
    ]
    out = template_messages(msgs, TOOLS)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert out[0]["content"].startswith("S\n\n") and '"name": "calculate"' in out[0]["content"]
    assert out[2]["content"] == 'let me\n<tool_call>\n{"name": "f", "arguments": {"e": 1}}\n</tool_call>'
    assert out[3]["content"] == "<tool_response>\n1\n</tool_response>\n<tool_response>\n2\n</tool_response>"


# ---------------------------------------------------------------- the session's tokens
@dataclass
class Gen:
    token_ids: list[int]
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "stop"
    versions: list[tuple[int, int, int]] = field(default_factory=list)

    def __post_init__(self):
        self.logprobs = self.logprobs or [-0.5] * len(self.token_ids)
        self.versions = self.versions or [(3, 0, len(self.token_ids))]


def call(session: Session, tok, messages: list[dict], reply: str, tools=None):
    """One call as the endpoint makes it, with ``reply`` as the engine's output."""
    req = parse_request({"messages": messages, **({"tools": tools} if tools else {})})
    p = session.begin(req)
    ids = tok.encode(reply, add_special_tokens=False) + [tok.eos_token_id]
    message = {"role": "assistant", "content": reply}
    session.finish(p, Gen(ids), reply, canonical(message), {}, 1.0, 3)
    return p, ids, message


def render(tok, messages, generation_prompt=False):
    return list(
        tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)["input_ids"]
    )


def test_append_only_calls_make_one_exact_sample(smol):
    s = Session(ChatTokens(smol), Task("t", "e", "Q"), 0, "u1", 4096, 0.0)
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "What is 2+2?"}]
    p1, gen1, reply1 = call(s, smol, msgs, "Let me think.")
    msgs += [reply1, {"role": "user", "content": "Go on."}]
    p2, gen2, reply2 = call(s, smol, msgs, "It is 4.")
    (sample,) = s.samples
    assert p2.prompt[: len(p1.prompt) + len(gen1)] == p1.prompt + gen1  # the first call, kept as it was
    assert sample.ids == p2.prompt + gen2
    # the loss mask is 1 exactly on the engine's output, and the logprobs are its own
    generated = [i for i, m in enumerate(sample.mask) if m]
    assert [sample.ids[i] for i in generated] == gen1 + gen2
    assert [sample.logprobs[i] for i in generated] == [-0.5] * len(generated)
    assert all(lp == 0.0 for lp, m in zip(sample.logprobs, sample.mask) if not m)
    # every other id is the chat template's rendering of the messages the agent sent
    assert sample.ids == render(smol, msgs + [reply2])[:-1]  # the template's trailing "\n" follows eos
    (episode,) = s.episodes("terminated", 1.0, None)
    assert episode.uid == "u1" and episode.turns[-1].info["agent_reward"] == 1.0
    assert [t.observation for t in episode.turns] == ["Go on.", None]
    assert episode.policy_version == 3 and episode.prompt_len == len(p1.prompt)


def test_a_rewritten_history_starts_a_new_exact_sample(smol):
    s = Session(ChatTokens(smol), Task("t", "e", "Q"), 2, "u2", 4096, 0.0)
    msgs = [{"role": "user", "content": "What is 2+2?"}]
    _, _, reply1 = call(s, smol, msgs, "Hmm.")
    # the agent compacts its context: the first reply is dropped and the question reworded
    compacted = [{"role": "user", "content": "Answer with a number: 2+2?"}]
    p2, gen2, _ = call(s, smol, compacted, "4")
    first, second = s.samples
    assert second.ids == p2.prompt + gen2 and p2.prompt == render(smol, compacted, True)
    assert second.mask == [0] * len(p2.prompt) + [1] * len(gen2)
    # a later call that extends the first sample's history still continues it
    p3, gen3, _ = call(s, smol, msgs + [reply1, {"role": "user", "content": "Sure?"}], "Yes.")
    assert first.ids == p3.prompt + gen3 and len(first.turns) == 2
    episodes = s.episodes("terminated", None, None)
    assert [e.uid for e in episodes] == ["u2.0", "u2.1"] and {e.group for e in episodes} == {2}
    assert all("agent_reward" not in e.turns[-1].info for e in episodes)


def test_tools_reach_the_prompt_and_tool_results_follow_the_call(smol):
    s = Session(ChatTokens(smol), Task("t", "e", "Q"), 0, "u3", 4096, 0.0)
    msgs = [{"role": "user", "content": "2+2?"}]
    p1, _, _ = call(s, smol, msgs, "<tool_call>", tools=TOOLS)
    assert smol.decode(p1.prompt).count("<tools>") == 1
    reply = {"role": "assistant", "content": "<tool_call>"}
    p2, _, _ = call(s, smol, msgs + [reply, {"role": "tool", "content": "4"}], "4", tools=TOOLS)
    assert len(s.samples) == 1
    assert (
        smol.decode(p2.added)
        == "\n<|im_start|>user\n<tool_response>\n4\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    # other tools: another prompt, so another sample
    call(s, smol, msgs, "x", tools=[{"function": {"name": "other"}}])
    assert len(s.samples) == 2


def test_calls_in_flight_at_once_each_get_their_own_sample(smol):
    s = Session(ChatTokens(smol), Task("t", "e", "Q"), 0, "u4", 4096, 0.0)
    msgs = [{"role": "user", "content": "2+2?"}]
    _, _, reply = call(s, smol, msgs, "4")
    longer = parse_request({"messages": msgs + [reply, {"role": "user", "content": "and 3+3?"}]})
    a, b = s.begin(longer), s.begin(longer)  # both before either reply
    assert a.sample is s.samples[0] and b.sample is not a.sample
    s.cancel(a)
    assert s.begin(longer).sample is s.samples[0]


def test_a_conversation_longer_than_an_episode_is_a_400(smol):
    s = Session(ChatTokens(smol), Task("t", "e", "Q"), 0, "u5", 16, 0.0)
    with pytest.raises(BadRequest) as err:
        s.begin(parse_request({"messages": [{"role": "user", "content": "word " * 40}]}))
    assert err.value.code == "context_length_exceeded" and "rollout.max_episode_tokens" in str(err.value)


def _call(arguments: str, id_: str = "call_1") -> dict:
    name = "calculate" if "expression" in arguments else "f"
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}
