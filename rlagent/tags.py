"""The text protocol the built-in envs and rewards share: ``<tag>...</tag>`` pairs, found
in linear time, and numbers as a model writes them. Neither an env nor a reward: both import
it, so an env never loads reward code (and a reward no env).

``re.findall(r"<t>(.*?)</t>", text, re.DOTALL)`` is what one would write, but on a reply
with many openings and no closing (``"<t>" * 20000``) the regex engine retries the lazy scan
from every opening: quadratic, tens of seconds for one turn. A policy writes such text
sooner or later, and a reward call that slow only ends in the service's timeout. These
helpers give the same pairs as that regex, with ``str.find``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any


def tag_contents(text: str, tag: str) -> list[str]:
    """The contents of the complete, non-overlapping ``<tag>...</tag>`` pairs, left to right.

    Each pair is the first closing after an opening (as the lazy regex finds them).

    >>> tag_contents("<a>1</a> x <a>2<a>3</a> <a>4", "a")
    ['1', '2<a>3']
    """
    opening, closing = f"<{tag}>", f"</{tag}>"
    found, at = [], 0
    while (start := text.find(opening, at)) >= 0:
        start += len(opening)
        stop = text.find(closing, start)
        if stop < 0:
            break  # no closing after this opening, so none after any later one either
        found.append(text[start:stop])
        at = stop + len(closing)
    return found


def first_tag_content(text: str, tag: str) -> str | None:
    """The content of the first complete pair in ``text``, or None."""
    opening = f"<{tag}>"
    start = text.find(opening)
    if start < 0:
        return None
    start += len(opening)
    stop = text.find(f"</{tag}>", start)
    return text[start:stop] if stop >= 0 else None


def last_tag_content(texts: Iterable[str], tag: str) -> str | None:
    """The content of the last complete ``<tag>...</tag>`` across ``texts``, in order.

    >>> last_tag_content(["<answer>1</answer>", "none", "<answer>2</answer><answer>3"], "answer")
    '2'
    """
    found = None
    for text in texts:
        contents = tag_contents(text, tag)
        if contents:
            found = contents[-1]
    return found


# A plain decimal number, optionally signed, with an optional exponent. Deliberately stricter
# than float(): float() also accepts "nan", "inf" and "1_000", which are not answers.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# Thousands separators: a comma between a digit and exactly three digits ("1,234,567").
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?:\D|$))")


def parse_number(text: str) -> float | None:
    """The number written in ``text``, or None if it is not exactly one number.

    >>> parse_number(" 1,234 "), parse_number("-5.0"), parse_number("5 apples")
    (1234.0, -5.0, None)
    """
    s = _THOUSANDS.sub("", text.strip())
    if not _NUMBER.fullmatch(s):
        return None
    value = float(s)
    return value if math.isfinite(value) else None


def as_number(value: Any) -> float | None:
    """A task's reference answer as a float; None when it is missing or not numeric."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return parse_number(value)
    return None
