"""A Gymnasium space for free-form LLM text.

``gymnasium.spaces.Text`` draws from a fixed charset (letters and digits by default), so a
model's reply such as ``"Use <calc>2 + 3</calc>."`` or an observation with a newline is
"not in the space" and ``check_env`` warns on every step. LLM envs need a space that admits
whatever a tokenizer can decode: any ``str`` up to a length bound.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from gymnasium.spaces import Space

# What ``sample`` draws from: printable ASCII plus a few non-ASCII characters, so that code
# exercised with random samples meets spaces, newlines, tag brackets and multi-byte text.
_SAMPLE_CHARS = string.ascii_letters + string.digits + string.punctuation + " \n" + "éßü中文→"


class AnyText(Space[str]):
    """Any Python ``str`` of at most ``max_length`` characters (the empty string included).

    >>> space = AnyText(max_length=64)
    >>> "What is 2 + 3?\\n<calc>2+3</calc> é" in space
    True
    >>> b"bytes" in space, "x" * 65 in space
    (False, False)
    """

    def __init__(self, max_length: int, seed: int | np.random.Generator | None = None):
        if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)):
            raise TypeError(f"max_length must be an int, got {type(max_length).__name__}")
        if max_length < 0:
            raise ValueError(f"max_length must be >= 0, got {max_length}")
        self.max_length = int(max_length)
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        """Free text has no fixed-size numeric encoding."""
        return False

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def sample(self, mask: Any | None = None, probability: Any | None = None) -> str:
        """Random text of uniform length in ``[0, max_length]``, drawn with ``self.np_random``."""
        if mask is not None or probability is not None:
            raise ValueError("AnyText.sample does not support mask or probability")
        length = int(self.np_random.integers(0, self.max_length + 1))
        idx = self.np_random.integers(0, len(_SAMPLE_CHARS), size=length)
        return "".join(_SAMPLE_CHARS[i] for i in idx)

    def __repr__(self) -> str:
        return f"AnyText(max_length={self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnyText) and other.max_length == self.max_length

    def __hash__(self) -> int:
        return hash(("AnyText", self.max_length))
