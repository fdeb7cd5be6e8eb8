"""A search agent written against the plain ``openai`` client: Search-v0's retriever as a
function tool.

The agent gives the model a ``search`` tool over the corpus Search-v0 builds for the task
(its BM25 index over the synthetic world, or the corpus the task names), runs every call and
sends back the passages as a ``tool`` message, and reads a reply without a tool call as the
answer. It returns 1.0 when the answer matches a gold answer (Search-v0's exact match), else
0.0. ``rlagent train launch/configs/agent_search.yaml``.
"""

from __future__ import annotations

import functools
import json

from openai import OpenAI

from rlagent.envs.search.corpus import exact_match, gold_answers
from rlagent.envs.search.env import render_results
from rlagent.envs.search.sources import build_retriever

SYSTEM = (
    "Answer the question. Search the knowledge base with the search tool as often as you need, "
    "then reply with the answer only: a few words, no explanation."
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the knowledge base; returns the best matching passages.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    }
]


@functools.cache
def _client(base_url: str) -> OpenAI:
    """One client per process, a session's key set per episode: a new client loads its TLS
    certificates, tens of milliseconds of CPU an episode would otherwise spend."""
    return OpenAI(base_url=base_url, api_key="set-per-session", max_retries=0)


def solve(task: dict, session, max_calls: int = 4, top_k: int = 3) -> float:
    retriever = build_retriever(
        "bm25", {}, task.get("corpus_path"), task.get("world_seed", 0), task.get("world_size", 200)
    )
    client = _client(session.base_url).with_options(api_key=session.api_key)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task["prompt"]}]
    for _ in range(max_calls):
        message = (
            client.chat.completions.create(model=session.model, messages=messages, tools=TOOLS)
            .choices[0]
            .message
        )
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            return 1.0 if exact_match(message.content or "", gold_answers(task)) else 0.0
        for call in message.tool_calls:
            try:
                query = str(json.loads(call.function.arguments).get("query", ""))
            except (ValueError, AttributeError):
                query = ""
            found = (
                render_results(list(retriever.search(query, top_k)), 1500) if query.strip() else "empty query"
            )
            messages.append({"role": "tool", "tool_call_id": call.id, "content": found})
    return 0.0  # no answer within max_calls
