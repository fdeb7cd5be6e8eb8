"""``rlagent/Tool-v0``: solve a task with a Python interpreter and a calculator (CodeAct style).

Each turn the model either runs code, ``<python>print(12 * 7)</python>`` (the env answers
``<output>84</output>``, run in ``rlagent.envs.sandbox``), calls the calculator,
``<calc>12 * 7</calc>`` (``<output>84</output>``, the Calculator env's ``safe_eval``), or ends
the episode with ``<answer>84</answer>``. The env reward is 1.0 when the task's scoring
accepts the answer, else 0.0; ``info`` reports the facts reward plugins score (tool calls,
tool errors and their kind, invalid actions, success, the task's own score).

Tasks come from reasoning-gym generators at difficulty 1..5, or from a JSONL file (see
``rlagent.envs.tool_tasks``).
"""

from __future__ import annotations

import functools
import random
import re
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import gymnasium

from rlagent.envs.calculator import CalcError, format_number, safe_eval
from rlagent.envs.sandbox import Isolation, Sandbox, SandboxLimits, SandboxResult
from rlagent.envs.text import AnyText
from rlagent.envs.tool_tasks import (
    DEFAULT_DATASETS,
    DIFFICULTIES,
    ENV_ID,
    check_datasets,
    check_task,
    generate_task,
    load_jsonl_tasks,
    score_answer,
    similar_task,
)
from rlagent.tags import first_tag_content

INSTRUCTIONS = (
    "Solve the task. To run Python, reply with <python>code</python> (print what you "
    "need to see); to do arithmetic, <calc>expression</calc>. Results come back in "
    "<output>...</output>. Give your final answer as <answer>...</answer>."
)
INVALID_ACTION = (
    "invalid action: reply with <python>code</python>, <calc>expression</calc> or <answer>...</answer>"
)
TOOLS = ("python", "calc")
_FENCE = re.compile(r"^\s*```[a-zA-Z0-9]*\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)


class _Tag(NamedTuple):
    start: int  # where the opening tag begins
    content: str


def _first_tag(text: str, tag: str) -> _Tag | None:
    """The first complete ``<tag>...</tag>`` pair, found in linear time (a lazy regex is
    quadratic on a reply full of unclosed openings)."""
    content = first_tag_content(text, tag)
    return None if content is None else _Tag(text.find(f"<{tag}>"), content)


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, keeping its head and tail."""
    if len(text) <= limit:
        return text
    note = f"\n... [{len(text) - limit} characters cut] ...\n"
    head = max(limit - len(note), 0) * 2 // 3
    tail = max(limit - len(note) - head, 0)
    return text[:head] + note + (text[-tail:] if tail else "")


class ToolEnv(gymnasium.Env[str, str]):
    """Answer a task in at most ``max_turns`` replies, using Python and a calculator.

    Kwargs (all optional; unknown ones are ignored, since the sampler and ``gymnasium.make``
    pass the same env kwargs to ``generate_task`` and here):

    - ``max_turns`` (6): replies before the episode is ``truncated``.
    - ``datasets`` (basic_arithmetic, chain_sum, gcd, lcm): reasoning-gym datasets to draw
      tasks from, a list or a comma-separated string; ``tasks_file``: a JSONL file instead.
    - ``max_observation_chars`` (2000): tool output shown to the model (head and tail kept).
    - ``max_code_chars`` (20000): longer code is refused as a tool error.
    - ``sandbox_wall_s`` (5), ``sandbox_cpu_s`` (5), ``sandbox_memory_mb`` (512),
      ``sandbox_max_processes`` (16): see ``SandboxLimits``.
    - ``sandbox_isolation`` ("auto"): "auto" and "namespaces" need unprivileged user
      namespaces and raise here without them; "none" (say it to mean it) runs model code
      without isolation and prints one warning line per process. ``info["sandbox_isolation"]``
      (reset and every step) records the isolation in force.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}
    difficulties = DIFFICULTIES
    generate_task = staticmethod(generate_task)
    similar_task = staticmethod(similar_task)

    def __init__(
        self,
        max_turns: int = 6,
        datasets: str | Sequence[str] = DEFAULT_DATASETS,
        tasks_file: str | None = None,
        max_observation_chars: int = 2000,
        max_code_chars: int = 20_000,
        sandbox_wall_s: float = 5.0,
        sandbox_cpu_s: int = 5,
        sandbox_memory_mb: int = 512,
        sandbox_max_processes: int = 16,
        sandbox_isolation: Isolation = "auto",
        max_text_length: int = 32_768,
        **_ignored: Any,
    ):
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.max_turns = max_turns
        self.datasets = check_datasets(datasets) if not tasks_file else []
        self.tasks_file = tasks_file
        self.max_observation_chars = max_observation_chars
        self.max_code_chars = max_code_chars
        self.sandbox = Sandbox(
            SandboxLimits(
                wall_s=sandbox_wall_s,
                cpu_s=sandbox_cpu_s,
                memory_mb=sandbox_memory_mb,
                max_processes=sandbox_max_processes,
                max_output_bytes=max(4 * max_observation_chars, 4096),
            ),
            isolation=sandbox_isolation,
        )
        if self.sandbox.isolation == "none":
            warn_unisolated()
        self.observation_space = AnyText(max_length=max_text_length)
        self.action_space = AnyText(max_length=max_text_length)
        self._task: dict[str, Any] | None = None
        self._turn = self._tool_calls = self._tool_errors = 0
        self._done = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = (options or {}).get("task")
        if task is None:  # no task given: one drawn with self.np_random
            rng = random.Random(int(self.np_random.integers(2**63)))
            if self.tasks_file:
                task = rng.choice(load_jsonl_tasks(self.tasks_file))
            else:
                task = generate_task(rng, rng.choice(self.difficulties), datasets=self.datasets)
        try:
            check_task(task)
        except ValueError as err:
            raise ValueError(f"{ENV_ID}: {err}: {task!r:.200}") from None
        self._task = task
        self._turn = self._tool_calls = self._tool_errors = 0
        self._done = False
        observation = f"{INSTRUCTIONS}\nTask: {task['prompt']}"
        return observation, {
            "task_id": task.get("id"),
            "turn": 0,
            "tool_calls": 0,
            "tool_errors": 0,
            "sandbox_isolation": self.sandbox.isolation,
        }

    def step(self, action: str):
        if self._task is None or self._done:
            raise RuntimeError("step() called before reset() or after the episode ended")
        self._turn += 1
        text = action if isinstance(action, str) else ""
        answer = _first_tag(text, "answer")
        if answer is not None:
            # The final observation is never shown to the model: the episode is over.
            score = score_answer(self._task, answer.content)
            info = {
                "invalid_action": False,
                "tool": None,
                "tool_error": None,
                "success": score >= 1.0,
                "score": score,
                "answer": answer.content.strip(),
            }
            observation, reward, terminated = "", (1.0 if score >= 1.0 else 0.0), True
        else:
            observation, info = self._act(text)
            reward, terminated = 0.0, False
        truncated = not terminated and self._turn >= self.max_turns
        self._done = terminated or truncated
        info.update(
            turn=self._turn,
            tool_calls=self._tool_calls,
            tool_errors=self._tool_errors,
            sandbox_isolation=self.sandbox.isolation,
        )
        return observation, reward, terminated, truncated, info

    def _act(self, text: str) -> tuple[str, dict[str, Any]]:
        calls = [(m.start, tool, m) for tool in TOOLS if (m := _first_tag(text, tool))]
        if not calls:
            return self._invalid(text)
        _, tool, match = min(calls, key=lambda c: c[0])  # one tool call per turn: the first
        self._tool_calls += 1
        if tool == "calc":
            output, error = self._calc(match.content)
        else:
            output, error = self._python(match.content)
        self._tool_errors += error is not None
        observation = f"<output>\n{_clip(output, self.max_observation_chars)}\n</output>"
        return observation, {"invalid_action": False, "tool": tool, "tool_error": error}

    def _invalid(self, text: str) -> tuple[str, dict[str, Any]]:
        reason = INVALID_ACTION
        for tag in ("python", "calc", "answer"):
            if f"<{tag}>" in text:
                reason = f"invalid action: <{tag}> has no closing </{tag}>"
                break
        return reason, {"invalid_action": True, "tool": None, "tool_error": None}

    def _calc(self, expression: str) -> tuple[str, str | None]:
        try:
            return format_number(safe_eval(expression)), None
        except CalcError as err:
            return f"error: {err}", "calc"

    def _python(self, code: str) -> tuple[str, str | None]:
        fenced = _FENCE.match(code)  # models often wrap the code in a markdown fence
        code = fenced.group(1) if fenced else code
        if len(code) > self.max_code_chars:
            return f"error: code too long (limit {self.max_code_chars} characters)", "too_long"
        result = self.sandbox.run(code)
        return _describe(result, self.sandbox.limits), result.error


@functools.cache
def warn_unisolated() -> None:
    """One stderr line per process (a worker builds many envs) saying the code runs unisolated;
    ``cache_clear()`` re-arms it."""
    print(
        f"[rlagent] {ENV_ID}: env.kwargs.sandbox_isolation is none: model-written code runs "
        f"without isolation (it can use the network and the files this user can)",
        file=sys.stderr,
    )


def _describe(result: SandboxResult, limits: SandboxLimits) -> str:
    """What the model sees: the code's output, then a line naming the failure, if any."""
    text = result.stdout + result.stderr
    notes = {
        "timeout": f"[stopped: wall-clock limit of {limits.wall_s:g} s]",
        "cpu_time": f"[stopped: CPU time limit of {limits.cpu_s} s]",
        "killed": "[killed: CPU time or memory limit]",
        "memory": f"[memory limit of {limits.memory_mb} MB per process]",
        "output_limit": f"[stopped: more than {limits.max_output_bytes} bytes of output]",
        "crash": f"[crashed with exit status {result.exit_code}]",
        "exit": f"[exited with status {result.exit_code}]",
        "sandbox": "[the Python tool is unavailable: " + result.stderr.strip()[-300:] + "]",
    }
    if result.error == "sandbox":
        return notes["sandbox"]
    if result.error in notes:
        text = text.rstrip("\n") + ("\n" if text.strip() else "") + notes[result.error]
    return text.rstrip("\n") if text.strip() else "(no output; use print() to show values)"
