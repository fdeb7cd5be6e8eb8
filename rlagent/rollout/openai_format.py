"""The OpenAI chat-completions wire format, as the agent endpoint speaks it (pure: no server,
no engine).

- ``parse_request``: a request body to a ``ChatRequest``, or ``BadRequest`` naming the field;
- ``canonical``: a message in the form two messages are compared in (is a history append-only?);
- ``template_messages``: messages as the chat template renders them. Tools and tool calls are
  written in one format for every template (below), so any chat model can use them;
- ``completion`` and ``error``: response bodies.

The tool format: the tools are listed in the system message, one JSON object per line
between ``<tools>`` and ``</tools>``; the model calls one by writing
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``; a tool's result reaches it as a
user message ``<tool_response>...</tool_response>`` (consecutive results in one message).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "developer", "user", "assistant", "tool")


class BadRequest(ValueError):
    """A request the endpoint cannot serve: answered with ``status`` in OpenAI's error shape."""

    def __init__(self, param: str | None, message: str, status: int = 400, code: str | None = None):
        super().__init__(f"{param}: {message}" if param else message)
        self.param, self.status, self.code = param, status, code


@dataclass
class ChatRequest:
    messages: list[dict[str, Any]]  # canonical messages (see ``canonical``)
    tools: list[dict[str, Any]] = field(default_factory=list)  # function specs, as sent
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    model: str = ""


def error(
    message: str, param: str | None = None, code: str | None = None, kind: str = "invalid_request_error"
) -> dict:
    """OpenAI's error body."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _text(content: Any, where: str) -> str:
    """A message's content as text: a string, null, or a list of text parts."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise BadRequest(
                    f"{where}[{i}]", "only text parts ({'type': 'text', 'text': ...}) are supported"
                )
            parts.append(part["text"])
        return "".join(parts)
    raise BadRequest(where, f"must be a string, null or a list of text parts, got {type(content).__name__}")


def _arguments(raw: Any) -> Any:
    """Tool-call arguments compared by value: a JSON string parsed (``{"a":1}`` and
    ``{"a": 1}`` are the same call); anything else as it is."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _tool_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise BadRequest(where, "must be a list")
    out = []
    for i, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BadRequest(f"{where}[{i}].function.name", "every tool call needs a function name")
        out.append({"name": fn["name"], "arguments": _arguments(fn.get("arguments", "{}"))})
    return out


def canonical(message: Any, where: str = "message") -> dict[str, Any]:
    """The fields of a message that reach the model: role ("developer" is a system message),
    content as text, tool calls as (name, arguments by value). The tool call's id, names of
    participants and the like are left out: they are not rendered."""
    if not isinstance(message, dict):
        raise BadRequest(where, f"must be an object, got {type(message).__name__}")
    role = message.get("role")
    if role not in ROLES:
        raise BadRequest(f"{where}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
    out: dict[str, Any] = {
        "role": "system" if role == "developer" else role,
        "content": _text(message.get("content"), f"{where}.content"),
    }
    if role == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = _tool_calls(message["tool_calls"], f"{where}.tool_calls")
    return out


def _number(body: dict, key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadRequest(key, f"must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def _tools(body: dict) -> list[dict[str, Any]]:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise BadRequest("tools", "must be a list")
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type", "function") != "function"
            or not isinstance(fn, dict)
        ):
            raise BadRequest(f"tools[{i}]", "must be {'type': 'function', 'function': {...}}")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise BadRequest(f"tools[{i}].function.name", "must be a non-empty string")
        if not isinstance(fn.get("parameters", {}), dict):
            raise BadRequest(f"tools[{i}].function.parameters", "must be a JSON schema object")
    choice = body.get("tool_choice")
    if choice not in (None, "auto", "none"):
        raise BadRequest("tool_choice", f"only 'auto' and 'none' are supported, got {choice!r}")
    return [] if choice == "none" else tools


def parse_request(body: Any) -> ChatRequest:
    """Check a chat-completions request; unknown fields are ignored, as OpenAI's SDKs send some."""
    if not isinstance(body, dict):
        raise BadRequest(None, "the body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages", "must be a non-empty list of messages")
    if body.get("n", 1) not in (1, None):
        raise BadRequest("n", f"only n=1 is supported, got {body.get('n')!r}")
    if body.get("stream"):
        raise BadRequest("stream", "streaming is not supported; send stream=false")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(key)
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise BadRequest(key, f"must be a positive integer, got {max_tokens!r}")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest("stop", "must be a string or a list of non-empty strings")
    return ChatRequest(
        messages=[canonical(m, f"messages[{i}]") for i, m in enumerate(messages)],
        tools=_tools(body),
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0.0, 2.0),
        top_p=_number(body, "top_p", 0.0, 1.0),
        stop=list(stop),
        model=str(body.get("model") or ""),
    )


# ---------------------------------------------------------------- what the template renders
def tools_block(tools: list[dict[str, Any]]) -> str:
    lines = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return (
        "You can call the functions listed here, one JSON object per line:\n"
        f"<tools>\n{lines}\n</tools>\n"
        "To call one, write a block like this (one block per call):\n"
        '<tool_call>\n{"name": "the function name", "arguments": {"parameter": "value"}}\n</tool_call>'
    )


def call_block(call: dict[str, Any]) -> str:
    return "<tool_call>\n" + json.dumps(call, ensure_ascii=False) + "\n</tool_call>"


def template_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> list[dict[str, str]]:
    """Canonical messages as role/content pairs for the chat template: the tools in the (first)
    system message, an assistant's tool calls after its text, tool results as one user
    message per run of consecutive results."""
    out: list[dict[str, str]] = []
    for m in messages:
        if m["role"] == "tool":
            block = f"<tool_response>\n{m['content']}\n</tool_response>"
            if out and out[-1].get("_tool"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool": "1"})
            continue
        content = m["content"]
        if m.get("tool_calls"):
            blocks = "\n".join(call_block(c) for c in m["tool_calls"])
            content = f"{content}\n{blocks}" if content else blocks
        out.append({"role": m["role"], "content": content})
    if tools:
        if out and out[0]["role"] == "system":
            out[0]["content"] = (
                f"{out[0]['content']}\n\n{tools_block(tools)}" if out[0]["content"] else tools_block(tools)
            )
        else:
            out.insert(0, {"role": "system", "content": tools_block(tools)})
    return [{"role": m["role"], "content": m["content"]} for m in out]


def completion(
    request_id: str,
    model: str,
    content: str | None,
    tool_calls: list[dict[str, Any]],
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """A chat-completion response body with one choice."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
