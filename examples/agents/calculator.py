"""A ReAct-style calculator agent written against the plain ``openai`` client.

It knows nothing of rlagent: it asks the model, runs the ``calculate`` tool whenever the model
calls it (OpenAI function calling), feeds back the result, and stops at a reply without a tool
call, which it reads as the final answer. ``rlagent train launch/configs/agent_calculator.yaml``
trains the model behind it; the number it returns is the episode's reward.
"""

from __future__ import annotations

import ast
import functools
import json
import operator
import re

from openai import OpenAI

SYSTEM = (
    "Solve the arithmetic problem. Use the calculate tool if it helps, "
    "then give the final answer as a number."
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculate",
            "description": "Evaluate an arithmetic expression, e.g. '37 * 14 + 2'.",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    }
]
OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.USub: operator.neg,
}


def calculate(expression: str) -> str:
    """The tool: + - * // % on integers, parsed with ``ast`` (never ``eval``)."""

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            return OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in OPS:
            return OPS[type(node.op)](walk(node.operand))
        raise ValueError(f"unsupported expression: {expression!r}")

    try:
        return str(walk(ast.parse(expression, mode="eval").body))
    except (SyntaxError, ValueError, ZeroDivisionError) as err:
        return f"error: {err}"


def final_number(text: str) -> int | None:
    """The last integer in the reply."""
    found = re.findall(r"-?\d+", text.replace(",", ""))
    return int(found[-1]) if found else None


@functools.cache
def _client(base_url: str) -> OpenAI:
    """One client per process, a session's key set per episode: a new client loads its TLS
    certificates, tens of milliseconds of CPU an episode would otherwise spend."""
    return OpenAI(base_url=base_url, api_key="set-per-session", max_retries=0)


def solve(task: dict, session, max_calls: int = 3) -> float:
    client = _client(session.base_url).with_options(api_key=session.api_key)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task["prompt"]}]
    for _ in range(max_calls):
        reply = client.chat.completions.create(model=session.model, messages=messages, tools=TOOLS)
        message = reply.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            return 1.0 if final_number(message.content or "") == task["answer"] else 0.0
        for call in message.tool_calls:
            try:
                expression = json.loads(call.function.arguments).get("expression", "")
            except (ValueError, AttributeError):
                expression = ""
            messages.append({"role": "tool", "tool_call_id": call.id, "content": calculate(str(expression))})
    return 0.0  # no final answer within max_calls
