"""The text the model sees of a MiniWoB page, and the actions it writes back.

A page is the task's utterance and a flat listing of its visible elements, indented under the
listed element that contains them. ``[ref]`` is MiniWoB's element ref, stable for the whole
episode; text outside any element of its own (a checkbox's label text) has no ref.

Actions: ``click(ref)``, ``type(ref, "text")`` and ``press("Enter")``; a reply may hold several,
run in order.
"""

from __future__ import annotations

import ast
import re
from dataclasses import asdict, dataclass
from typing import Literal

from miniwob.dom import DOMElement

from rlagent.envs.web.browser import ALLOWED_KEYS

CLICKABLE_TAGS = frozenset({"a", "button", "label", "select", "option", "summary"})
CLICKABLE_INPUTS = frozenset(
    {"checkbox", "radio", "button", "submit", "reset", "image", "file", "color", "range"}
)
MAX_TEXT_CHARS = 100  # of one element's text or value
MAX_TYPE_CHARS = 200  # of one type() action's text
ACTION_HELP = 'write click(ref), type(ref, "text") or press("Enter")'


class ActionError(ValueError):
    """A reply that cannot be run; the message is shown to the model."""


@dataclass(frozen=True)
class WebAction:
    kind: Literal["click", "type", "press"]
    ref: int | None = None
    text: str | None = None  # type(): what to type; press(): the key in MiniWoB's syntax

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def is_typeable(element: DOMElement) -> bool:
    """Text fields: ``<textarea>`` and ``<input>`` types that take typed text."""
    tag = element.tag
    return tag == "textarea" or (tag.startswith("input_") and tag[6:] not in CLICKABLE_INPUTS)


def is_clickable(element: DOMElement) -> bool:
    """Buttons, links, labels, choices. (``click`` accepts any ref; these are the obvious ones.)"""
    tag = element.tag
    return tag in CLICKABLE_TAGS or (tag.startswith("input_") and tag[6:] in CLICKABLE_INPUTS)


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return '"' + (text[:MAX_TEXT_CHARS] + "..." if len(text) > MAX_TEXT_CHARS else text) + '"'


def _describe(element: DOMElement) -> str | None:
    """One line for ``element``, or None when it shows nothing of its own (a bare container)."""
    if element.tag == "t":
        return _quote(element.text or "")
    typeable, clickable = is_typeable(element), is_clickable(element)
    # A textless leaf is often an icon (trash, star, reply): its class names say which.
    icon = (
        not (element.text or element.children or typeable or clickable)
        and element.classes != "SVG_CLASS"
        and element.classes.strip()
    )
    if not (element.text or typeable or clickable or icon):
        return None
    parts = [f"[{element.ref}] {element.tag}"]
    if element.text:
        parts.append(_quote(element.text))
    elif icon:
        parts.append(f"class={_quote(element.classes)}")
    if isinstance(element.value, bool):
        parts.append("checked" if element.value else "unchecked")
    elif typeable:
        parts.append(f"value={_quote(str(element.value or ''))}")
    if typeable or clickable:
        parts.append("(type)" if typeable else "(click)")
    if element.focused:
        parts.append("focused")
    return " ".join(parts)


def page_lines(root: DOMElement) -> list[str]:
    """The listing of ``root``'s subtree, one element per line."""
    lines: list[str] = []

    def walk(element: DOMElement, depth: int) -> None:
        line = _describe(element) if element is not root else None
        if line is not None:
            lines.append("  " * depth + line)
            depth += 1
        for child in element.children:
            walk(child, depth)

    walk(root, 0)
    return lines


def render_page(utterance: str, root: DOMElement, max_chars: int) -> str:
    """The utterance and the element listing, at most ``max_chars`` characters (the listing is
    cut at a line, with a note of how many elements were left out)."""
    text = f"Task: {utterance}\nPage:"
    lines = page_lines(root)
    for i, line in enumerate(lines):
        note = f"\n... ({len(lines) - i} more elements not shown)"
        rest_fits = i == len(lines) - 1 or len(text) + len(line) + 1 + len(note) <= max_chars
        if len(text) + len(line) + 1 > max_chars or not rest_fits:
            return (text + note)[:max_chars]
        text += "\n" + line
    return text


_STRING = r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'"""
_REF = r"\[?\s*(-?\d+)\s*\]?"
_CALL = re.compile(r"\b(click|type|press)\s*\(")
_FORMS = {
    "click": re.compile(rf"click\s*\(\s*{_REF}\s*\)"),
    "type": re.compile(rf"type\s*\(\s*{_REF}\s*,\s*({_STRING})\s*\)"),
    "press": re.compile(rf"press\s*\(\s*({_STRING})\s*\)"),
}
_KEY_NAMES = {k[1:-1].lower(): k for k in ALLOWED_KEYS if k.startswith("<")}
_KEY_NAMES.update(
    {
        "return": "<Enter>",
        "esc": "<Escape>",
        "up": "<ArrowUp>",
        "down": "<ArrowDown>",
        "left": "<ArrowLeft>",
        "right": "<ArrowRight>",
        "space": "<Space>",
        " ": "<Space>",
    }
)


def key_name(name: str) -> str:
    """A key as the model names it ("Enter", "a", "Ctrl+A") in MiniWoB's key syntax.

    >>> key_name("Enter"), key_name("tab"), key_name("x"), key_name("Ctrl+A")
    ('<Enter>', '<Tab>', 'x', 'C-a')
    """
    lowered = name.strip().lower() if name.strip() else name
    if lowered in _KEY_NAMES:
        return _KEY_NAMES[lowered]
    if len(name) == 1 and name in ALLOWED_KEYS:
        return name
    combo = re.fullmatch(r"(?:ctrl|control)\s*[+-]\s*([a-z])", lowered)
    if combo and f"C-{combo.group(1)}" in ALLOWED_KEYS:
        return f"C-{combo.group(1)}"
    raise ActionError(
        f"unknown key {name!r}; use a key name such as \"Enter\", \"Tab\", "
        f"\"Backspace\", \"ArrowDown\", \"Ctrl+A\" or one character"
    )


def parse_actions(reply: str, max_actions: int) -> list[WebAction]:
    """Every action in ``reply``, in order; ActionError names the first that cannot be read.

    >>> parse_actions('type(7, "vina") then click([11])', 5)
    [WebAction(kind='type', ref=7, text='vina'), WebAction(kind='click', ref=11, text=None)]
    >>> parse_actions("click(here)", 5)
    Traceback (most recent call last):
    ...
    rlagent.envs.web.page.ActionError: cannot read 'click(here)': click takes an element ref, click(12)
    """
    actions: list[WebAction] = []
    pos = 0
    while (call := _CALL.search(reply, pos)) is not None:
        kind = call.group(1)
        match = _FORMS[kind].match(reply, call.start())
        if match is None:
            snippet = reply[call.start() : call.start() + 40].split("\n")[0]
            usage = {
                "click": "click takes an element ref, click(12)",
                "type": 'type takes a ref and a quoted text, type(12, "hello")',
                "press": 'press takes a quoted key name, press("Enter")',
            }[kind]
            raise ActionError(f"cannot read {snippet!r}: {usage}")
        pos = match.end()  # a call inside a typed text is text, not an action
        if kind == "press":
            actions.append(WebAction("press", text=key_name(ast.literal_eval(match.group(1)))))
        elif kind == "click":
            actions.append(WebAction("click", ref=int(match.group(1))))
        else:
            text = ast.literal_eval(match.group(2))
            if len(text) > MAX_TYPE_CHARS:
                raise ActionError(f"type() text is {len(text)} characters; the limit is {MAX_TYPE_CHARS}")
            actions.append(WebAction("type", ref=int(match.group(1)), text=text))
    if not actions:
        raise ActionError(f"no action found; {ACTION_HELP}")
    if len(actions) > max_actions:
        raise ActionError(f"{len(actions)} actions in one reply; the limit is {max_actions}")
    return actions
