"""The agent endpoint over real HTTP with the real ``openai`` client, on a scripted engine
(the real engine's path is trained in tests/system/test_agent_training.py): keys and 401s,
400s that name the field, tool calls parsed or returned as plain content, agents that raise,
hang or return nonsense, and the address it listens on."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from rlagent.config import RewardSpec, RolloutConfig
from rlagent.records import Task
from rlagent.rollout.agents import AgentRunner
from rlagent.rollout.chat import ChatTokens
from rlagent.rollout.endpoint import AgentEndpoint
from rlagent.rollout.engine import Generation
from rlagent.scoring.combine import total
from rlagent.tracking import agent_metrics

SMOL = Path("~/.cache/rlagent/models/SmolLM2-135M-Instruct").expanduser()
TASK = Task("t1", "rlagent/Calculator-v0", "What is 2 + 2?", answer=4)
TOOLS = [{"type": "function", "function": {"name": "calculate", "parameters": {"type": "object"}}}]
VALID_CALL = '<tool_call>\n{"name": "calculate", "arguments": {"expression": "2 + 2"}}\n</tool_call>'


class ScriptedEngine:
    """Replies the next text of ``script`` (then its last one), with eos."""

    version = 0

    def __init__(self, tok):
        self.tok, self.script, self.prompts = tok, ["4"], []

    async def generate(self, prompt, max_tokens, *, temperature, top_p=1.0, stop=None):
        self.prompts.append(list(prompt))
        text = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        ids = self.tok.encode(text, add_special_tokens=False)[:max_tokens] + [self.tok.eos_token_id]
        return Generation(ids, [-0.25] * len(ids), "stop", [(self.version, 0, len(ids))])


class Served:
    """An endpoint on a scripted engine, on an event loop in a thread of its own."""

    def __init__(self):
        self.tok = AutoTokenizer.from_pretrained(SMOL)
        self.engine = ScriptedEngine(self.tok)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        cfg = RolloutConfig(max_new_tokens=64, max_episode_tokens=2048, max_concurrent_episodes=8)
        self.endpoint = AgentEndpoint(self.engine, ChatTokens(self.tok), self.tok, cfg, "smol", "127.0.0.1")
        self.call(self.endpoint.start())

    def call(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def session(self):
        key, session = self.endpoint.open(TASK, 0, f"s{time.monotonic_ns()}", time.time())
        return key, session

    def client(self, key):
        return openai.OpenAI(base_url=self.endpoint.base_url, api_key=key, max_retries=0)

    def runner(self, fn, timeout_s=30.0):
        return AgentRunner(self.endpoint, fn, timeout_s, max_concurrent=8)


@pytest.fixture(scope="module")
def served():
    s = Served()
    yield s
    s.call(s.endpoint.stop())
    s.loop.call_soon_threadsafe(s.loop.stop)


def ask(client, content="What is 2 + 2?", **kw):
    return client.chat.completions.create(model="smol", messages=[{"role": "user", "content": content}], **kw)


def test_a_session_key_gets_a_completion_and_the_model_list(served):
    key, session = served.session()
    served.engine.script = ["It is 4."]
    reply = ask(served.client(key))
    assert reply.choices[0].message.content == "It is 4." and reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == len(session.samples[0].ids) - session.samples[0].prompt_len
    assert [m.id for m in served.client(key).models.list().data] == ["smol"]
    served.endpoint.close(key)


@pytest.mark.parametrize("key", [None, "rla-not-a-session", "closed"])
def test_other_keys_get_401_in_openais_shape(served, key):
    if key == "closed":
        key, _ = served.session()
        served.endpoint.close(key)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for method, path in [("POST", "/chat/completions"), ("GET", "/models")]:
        r = httpx.request(method, served.endpoint.base_url + path, headers=headers, json={"messages": []})
        assert r.status_code == 401, r.text
        assert (
            r.json()["error"]["code"] == "invalid_api_key"
            and r.json()["error"]["type"] == "authentication_error"
        )
    with pytest.raises(openai.AuthenticationError):
        ask(served.client(key or "none"))


def test_bad_requests_get_400_naming_the_field(served):
    key, session = served.session()
    url, headers = served.endpoint.base_url + "/chat/completions", {"Authorization": f"Bearer {key}"}
    r = httpx.post(url, headers=headers, content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.post(url, headers=headers, json={"messages": [{"role": "robot", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].role"
    with pytest.raises(openai.BadRequestError) as err:
        ask(served.client(key), n=2)
    assert err.value.body["param"] == "n"
    assert session.samples == []  # nothing was recorded
    served.endpoint.close(key)


def test_a_tool_call_is_parsed_and_a_malformed_one_is_plain_content(served):
    key, session = served.session()
    served.engine.script = [VALID_CALL, '<tool_call>{"name": calculate}</tool_call>']
    client = served.client(key)
    first = ask(client, tools=TOOLS).choices[0]
    assert first.finish_reason == "tool_calls" and first.message.content is None
    (call,) = first.message.tool_calls
    assert (call.function.name, call.function.arguments) == ("calculate", '{"expression": "2 + 2"}')
    history = [{"role": "user", "content": "What is 2 + 2?"}, first.message.model_dump(exclude_none=True)]
    history.append({"role": "tool", "tool_call_id": call.id, "content": "4"})
    second = client.chat.completions.create(model="smol", messages=history, tools=TOOLS).choices[0]
    assert second.finish_reason == "stop" and not second.message.tool_calls
    assert second.message.content == '<tool_call>{"name": calculate}</tool_call>'
    (sample,) = session.samples  # the echoed call continued the same sample
    assert [t.info.get("malformed_tool_call", False) for t in sample.turns] == [False, True]
    assert sample.turns[0].info["tool_calls"] == [
        {"name": "calculate", "arguments": '{"expression": "2 + 2"}'}
    ]
    served.endpoint.close(key)


def play(served, fn, timeout_s=30.0, group_size=2):
    runner = served.runner(fn, timeout_s)
    return served.call(runner.run([(0, TASK)], group_size), timeout=timeout_s + 60)


def test_an_agent_trains_from_what_it_sent_and_returns(served):
    served.engine.script = ["4"]

    def solve(task, session):
        client = openai.OpenAI(base_url=session.base_url, api_key=session.api_key, max_retries=0)
        msgs = [{"role": "user", "content": task["prompt"]}]
        reply = client.chat.completions.create(model=session.model, messages=msgs).choices[0].message
        msgs += [reply.model_dump(exclude_none=True), {"role": "user", "content": "Sure?"}]
        reply = client.chat.completions.create(model=session.model, messages=msgs).choices[0].message
        return float(reply.content == str(task["answer"]))

    episodes = play(served, solve)
    assert len(episodes) == 2 and {e.termination for e in episodes} == {"terminated"}
    for e in episodes:
        assert len(e.turns) == 2 and e.turns[-1].info["agent_reward"] == 1.0
        assert e.messages[-1] == {"role": "assistant", "content": "4"}
        reply = served.tok.encode("4", add_special_tokens=False) + [served.tok.eos_token_id]
        assert [e.token_ids[i] for i, m in enumerate(e.loss_mask) if m] == reply + reply


def test_an_agent_that_rewrites_its_history_trains_on_exact_samples(served):
    """Context compaction: the second call drops the first exchange for a summary. The
    session becomes two samples, each exactly what the engine saw and produced."""
    served.engine.script = ["Let me think.", "4"]
    served.engine.prompts.clear()

    def solve(task, session):
        client = openai.OpenAI(base_url=session.base_url, api_key=session.api_key, max_retries=0)
        first = [{"role": "user", "content": task["prompt"]}]
        client.chat.completions.create(model=session.model, messages=first)
        compacted = [{"role": "user", "content": "So far: no answer yet. " + task["prompt"]}]
        client.chat.completions.create(model=session.model, messages=compacted)
        return 1.0

    episodes = play(served, solve, group_size=1)
    assert [e.uid.rpartition(".")[2] for e in episodes] == ["0", "1"]
    assert len({e.uid.partition(".")[0] for e in episodes}) == 1  # one session
    for e, prompt, reply in zip(episodes, served.engine.prompts, ["Let me think.", "4"]):
        generated = served.tok.encode(reply, add_special_tokens=False) + [served.tok.eos_token_id]
        assert e.token_ids == prompt + generated  # exactly the engine's input and output
        assert e.loss_mask == [0] * len(prompt) + [1] * len(generated)
        assert e.turns[-1].info["agent_reward"] == 1.0 and len(e.turns) == 1
    assert agent_metrics(episodes)["agent/split_sessions"] == 1.0


def test_async_agents_run_on_the_loop(served):
    async def solve(task, session):
        client = openai.AsyncOpenAI(base_url=session.base_url, api_key=session.api_key, max_retries=0)
        reply = await client.chat.completions.create(
            model=session.model, messages=[{"role": "user", "content": task["prompt"]}]
        )
        return None if reply.choices[0].message.content else 0.0

    episodes = play(served, solve, group_size=3)
    assert [e.termination for e in episodes] == ["terminated"] * 3
    assert all("agent_reward" not in e.turns[-1].info for e in episodes)  # None: plugins score


def test_raising_hanging_and_nonsense_agents_are_counted_not_scored(served):
    keys = []

    def raises(task, session):
        ask(openai.OpenAI(base_url=session.base_url, api_key=session.api_key, max_retries=0))
        raise KeyError("no answer field")

    def hangs(task, session):
        keys.append(session)
        ask(openai.OpenAI(base_url=session.base_url, api_key=session.api_key, max_retries=0))
        time.sleep(60)

    (e,) = play(served, raises, group_size=1)
    assert e.termination == "agent_error" and "KeyError" in e.turns[-1].info["error"]
    assert len(e.turns) == 1 and sum(e.loss_mask) > 0  # what it played is kept, for the viewer
    t0 = time.monotonic()
    (e,) = play(served, hangs, timeout_s=1.0, group_size=1)
    assert e.termination == "agent_timeout" and time.monotonic() - t0 < 10
    with pytest.raises(openai.AuthenticationError):  # its key was revoked when it timed out
        ask(openai.OpenAI(base_url=keys[0].base_url, api_key=keys[0].api_key, max_retries=0))
    (e,) = play(served, lambda task, session: "yes", group_size=1)
    assert e.termination == "agent_error" and "expected a finite number or None" in e.turns[-1].info["error"]
    assert e.token_ids == []  # it never called the model: nothing to train
    assert total({"agent": 1.0}, {}, "agent_error", [RewardSpec("agent", 1.0)]) is None


def test_it_listens_on_the_address_it_was_given_only(served):
    (server,) = served.endpoint._server.servers
    assert {s.getsockname()[0] for s in server.sockets} == {"127.0.0.1"}
    assert served.endpoint.base_url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("example", ["calculator", "search"])
def test_the_examples_call_their_tool_and_score_their_answer(served, example):
    """Each example agent, as written, over the endpoint: the model (scripted) calls the tool,
    gets its result back as a tool message, answers; the agent returns 1.0 for the gold answer."""
    import random

    from support import REPO

    from rlagent.rollout.agents import AgentSession, load_entrypoint

    solve = load_entrypoint(f"examples.agents.{example}:solve", str(REPO))
    if example == "calculator":
        task = {"id": "c", "prompt": "What is 17 * 3?", "answer": 51}
        call, answer = '{"name": "calculate", "arguments": {"expression": "17 * 3"}}', "The answer is 51."
    else:
        from rlagent.envs.search.sources import generate_task

        task = generate_task(random.Random(0), 1)
        call = json.dumps({"name": "search", "arguments": {"query": task["prompt"]}})
        answer = task["golden_answers"][0]
    served.engine.script = [f"<tool_call>\n{call}\n</tool_call>", answer]
    key, session = served.session()
    got = solve(task, AgentSession(served.endpoint.base_url, key, "smol", session.uid))
    served.endpoint.close(key)
    (sample,) = session.samples
    assert got == 1.0 and len(sample.turns) == 2
    assert "<tool_response>" in sample.turns[0].observation  # the tool's result reached the model
    assert sample.turns[0].info["tool_calls"][0]["name"] == (
        "calculate" if example == "calculator" else "search"
    )
