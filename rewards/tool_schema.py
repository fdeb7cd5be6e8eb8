"""A small JSON-schema subset for checking tool calls (no dependency on ``jsonschema``).

Tools are declared the way chat templates take them, either OpenAI style
``{"type": "function", "function": {"name": ..., "parameters": {...}}}`` or flat
``{"name": ..., "parameters": {...}}``. ``parameters`` is a JSON schema using only:
``type`` (a name or a list of names: string, integer, number, boolean, array, object, null),
``properties``, ``required``, ``additionalProperties`` (only ``false`` is enforced), ``items``
and ``enum``. Anything else in a schema (``description``, ``default``, ...) is ignored.

>>> table = tool_table([{"name": "search", "parameters": {
...     "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}])
>>> call_problem('{"name": "search", "arguments": {"query": "Orthwick"}}', table) is None
True
>>> call_problem('{"name": "search", "arguments": {"query": 3}}', table)
'arguments.query: expected string, got int'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    # JSON has one number type: 2.0 is an integer too (as in JSON Schema draft 6 and later).
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, (list, tuple)),
    "object": lambda v: isinstance(v, Mapping),
    "null": lambda v: v is None,
}


def check_schema(schema: Any, where: str) -> None:
    """ValueError naming ``where`` if ``schema`` uses the subset above wrongly."""
    if not isinstance(schema, Mapping):
        raise ValueError(f"{where}: a schema must be a mapping, got {schema!r:.80}")
    types = schema.get("type", [])
    for name in [types] if isinstance(types, str) else types:
        if name not in TYPES:
            raise ValueError(f"{where}.type: unknown type {name!r}; known: {sorted(TYPES)}")
    props = schema.get("properties", {})
    if not isinstance(props, Mapping):
        raise ValueError(f"{where}.properties must be a mapping")
    for key, sub in props.items():
        check_schema(sub, f"{where}.properties.{key}")
    required = schema.get("required", [])
    if isinstance(required, str) or not all(isinstance(r, str) for r in required):
        raise ValueError(f"{where}.required must be a list of names, got {required!r:.80}")
    if "items" in schema:
        check_schema(schema["items"], f"{where}.items")
    if "enum" in schema and (isinstance(schema["enum"], str) or not isinstance(schema["enum"], Sequence)):
        raise ValueError(f"{where}.enum must be a list")


def tool_table(tools: Any) -> dict[str, Mapping[str, Any]]:
    """{tool name: parameters schema} from a list of tool declarations, checked."""
    if isinstance(tools, (str, Mapping)) or not isinstance(tools, Sequence) or not tools:
        raise ValueError(f"tools must be a non-empty list of tool declarations, got {tools!r:.80}")
    table: dict[str, Mapping[str, Any]] = {}
    for i, tool in enumerate(tools):
        spec = tool.get("function", tool) if isinstance(tool, Mapping) else None
        name = spec.get("name") if isinstance(spec, Mapping) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"tools[{i}] has no name: {tool!r:.80}")
        if name in table:
            raise ValueError(f"tools[{i}]: tool {name!r} is declared twice")
        params = spec.get("parameters", {"type": "object"})
        check_schema(params, f"tools[{i}].parameters")
        table[name] = params
    return table


def value_problem(value: Any, schema: Mapping[str, Any], path: str) -> str | None:
    """Why ``value`` does not satisfy ``schema`` (the subset above), or None."""
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(TYPES[n](value) for n in names):
            return f"{path}: expected {' or '.join(names)}, got {type(value).__name__}"
    if "enum" in schema and value not in list(schema["enum"]):
        return f"{path}: {value!r:.40} is not one of {list(schema['enum'])!r:.80}"
    if isinstance(value, Mapping):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                return f"{path}: missing required argument {key!r}"
        for key, sub in value.items():
            if key in props:
                problem = value_problem(sub, props[key], f"{path}.{key}")
                if problem:
                    return problem
            elif schema.get("additionalProperties") is False:
                return f"{path}: unknown argument {key!r:.40}"
    if isinstance(value, (list, tuple)) and "items" in schema:
        for i, item in enumerate(value):
            problem = value_problem(item, schema["items"], f"{path}[{i}]")
            if problem:
                return problem
    return None


def call_problem(text: str, table: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why ``text`` is not a valid ``{"name": ..., "arguments": {...}}`` call, or None.

    ``arguments`` may be left out when the tool requires none.
    """
    try:
        call = json.loads(text)
    except (ValueError, RecursionError) as err:  # RecursionError: absurdly nested input
        return f"not JSON: {type(err).__name__}"
    if not isinstance(call, dict):
        return "a call must be a JSON object"
    name = call.get("name")
    if not isinstance(name, str) or name not in table:
        return f"unknown tool {name!r:.40}"
    arguments = call.get("arguments", {})
    if not isinstance(arguments, dict):
        return f"arguments must be a JSON object, got {type(arguments).__name__}"
    return value_problem(arguments, table[name], "arguments")
