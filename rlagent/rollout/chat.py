"""Chat templating on token ids, so a multi-turn episode is never re-tokenised.

The engine sees ``prompt ids + turn 1 ids + observation 1 ids + turn 2 ids ...``: the
ids it generated are kept as they are, and each observation is appended as the exact
ids the chat template would put between an assistant turn and the next one. Rendering
the whole chat again and tokenising it could merge or split tokens at the boundaries
(and some templates rewrite earlier turns), so the learner would train on ids the
engine never produced.
"""

from __future__ import annotations

from typing import Any


def _ids(out: Any) -> list[int]:
    # transformers 5 returns a BatchEncoding-like mapping from apply_chat_template(tokenize=True).
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


class ChatTokens:
    """Token ids of a chat template's pieces, for one tokenizer."""

    # A reference exchange used to cut the template into pieces; its text never reaches the model.
    _PROBE = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]

    def __init__(self, tokenizer: Any):
        self.tok = tokenizer
        self.eos_id: int = tokenizer.eos_token_id
        probe = self._render(self._PROBE, generation_prompt=False)
        # What the template writes after an assistant's end-of-turn token (e.g. "\n").
        ends = [i for i, t in enumerate(probe) if t == self.eos_id]
        if not ends:
            raise ValueError(
                f"the chat template never writes the eos token (id {self.eos_id}) "
                f"after an assistant turn; the engine could not end a turn"
            )
        last_eos = ends[-1]
        self._after_eos = probe[last_eos + 1 :]
        self._probe = probe
        self._probe_len = len(probe)

    def _render(self, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
        return _ids(
            self.tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
        )

    def prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """Ids of the opening messages followed by the assistant's generation prompt."""
        return self._render(messages, generation_prompt=True)

    def observation(self, text: str, turn_ids: list[int]) -> list[int]:
        """Ids to append after a generated turn: close the turn, the user message, the
        next generation prompt. ``turn_ids`` are the ids the engine just produced."""
        return self.append([{"role": "user", "content": text}], turn_ids)

    def append(self, messages: list[dict[str, str]], turn_ids: list[int]) -> list[int]:
        """Ids to append after a generated turn for ``messages`` that follow it: close the
        turn (the eos, unless the engine sampled it), the messages as the template writes
        them after an assistant turn, the next generation prompt."""
        full = self._render(self._PROBE + messages, True)
        if full[: self._probe_len] != self._probe:
            raise ValueError(
                "the chat template is not prefix-stable: appending a message "
                "changed the tokens of earlier ones"
            )
        closing = [] if turn_ids and turn_ids[-1] == self.eos_id else [self.eos_id]
        return closing + self._after_eos + full[self._probe_len :]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)
