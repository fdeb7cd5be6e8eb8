"""Reward functions in TRL's style (``f(completions, **kwargs) -> list[float | None]``), the
way a user of TRL's GRPOTrainer writes them; tests/unit/test_trl_rewards.py uses them."""

import re


def accuracy(completions, answer, **kwargs):
    """Standard format: 1.0 when the number in <answer>...</answer> equals the task's answer;
    None for a task without one."""
    out = []
    for text, want in zip(completions, answer):
        if want is None:
            out.append(None)
            continue
        m = re.search(r"<answer>\s*(-?[\d.]+)\s*</answer>", text)
        out.append(1.0 if m and float(m.group(1)) == float(want) else 0.0)
    return out


def tool_then_answer(completions, **kwargs):
    """Conversational format: the share of the assistant's messages that are a calculator
    call, plus 1 when the last one is an answer."""
    out = []
    for messages in completions:
        mine = [m["content"] for m in messages if m["role"] == "assistant"]
        calls = sum("<calc>" in c for c in mine) / len(mine)
        out.append(calls + ("<answer>" in mine[-1]))
    return out


def shorter_than_prompt(prompts, completions, scale=1.0, **kwargs):
    """Standard format, with the prompt and a fixed keyword:
    scale x len(prompt) / (len(prompt) + len(completion))."""
    return [scale * len(p) / (len(p) + len(c)) for p, c in zip(prompts, completions)]


def wrong_length(completions, **kwargs):
    return [0.0, 1.0]
