"""``rlagent/Calculator-v0``: arithmetic questions with a calculator tool.

Each turn the model either calls the tool, ``<calc>37 * 14</calc>`` (the env answers
``<result>518</result>``), or ends the episode with ``<answer>523</answer>``. The env reward
is 1.0 for a correct final answer; ``info`` reports the facts (success, tool calls, tool
errors) that reward plugins score.
"""

from __future__ import annotations

import ast
import hashlib
import math
import operator
import random
from typing import Any

import gymnasium

from rlagent.envs.text import AnyText
from rlagent.tags import as_number, first_tag_content, parse_number

ENV_ID = "rlagent/Calculator-v0"
INSTRUCTIONS = "Use <calc>expression</calc> to compute, then reply <answer>number</answer>."
INVALID_ACTION = "invalid action: reply with <calc>expression</calc> or <answer>number</answer>"

# --- safe evaluation of tool calls --------------------------------------------------------
# Limits keep one tool call cheap: a short expression, small exponents, and results no bigger
# than 1e15 (below 2**53, so floats still hold integers exactly).
MAX_EXPR_CHARS = 200
MAX_EXPONENT = 64
MAX_MAGNITUDE = 10**15


class CalcError(ValueError):
    """An expression the calculator refuses; the message is shown to the model."""


def _divide(a: int | float, b: int | float) -> int | float:
    # Exact integer quotients stay ints, so "84 / 7" prints 12, not 12.0.
    if isinstance(a, int) and isinstance(b, int) and b != 0 and a % b == 0:
        return a // b
    return a / b


def _power(a: int | float, b: int | float) -> int | float:
    if abs(b) > MAX_EXPONENT:
        raise CalcError(f"exponent too large (limit {MAX_EXPONENT})")
    return a**b


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: _divide,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _checked(value: Any) -> int | float:
    # complex: e.g. (-8) ** 0.5. abs() first: math.isfinite overflows on huge ints.
    if isinstance(value, complex) or abs(value) > MAX_MAGNITUDE or not math.isfinite(value):
        raise CalcError("result out of range")
    return value


def _eval_node(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant):
        if type(node.value) not in (int, float):  # bool, str, complex, None, bytes
            raise CalcError(f"unsupported literal {node.value!r}")
        return _checked(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_eval_node(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval_node(node.left), _eval_node(node.right)
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Name):
        raise CalcError(f"names are not allowed ({node.id})")
    raise CalcError(f"unsupported syntax ({type(node).__name__})")


def safe_eval(expression: str) -> int | float:
    """Evaluate arithmetic on numeric literals; anything else raises ``CalcError``.

    Only numbers, ``+ - * / // % **``, unary ``+``/``-`` and parentheses are accepted: the
    expression is parsed with ``ast`` and walked, never passed to ``eval``.

    >>> safe_eval("37 * 14 + 5"), safe_eval("(1 + 2) / 2")
    (523, 1.5)
    """
    if len(expression) > MAX_EXPR_CHARS:
        raise CalcError(f"expression too long (limit {MAX_EXPR_CHARS} characters)")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
        return _eval_node(tree.body)
    except CalcError:
        raise
    except ZeroDivisionError:
        raise CalcError("division by zero") from None
    except (SyntaxError, ValueError):
        raise CalcError("not a valid expression") from None
    except (OverflowError, RecursionError, MemoryError):
        raise CalcError("result out of range") from None


def format_number(value: int | float) -> str:
    """Integers without a trailing ``.0``; other floats to 12 significant digits."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, int) else format(value, ".12g")


# --- task generation ----------------------------------------------------------------------
# difficulty -> (number of literals, largest literal, largest factor next to * or /, operators)
_LEVELS = {
    1: (2, 10, 10, "+-"),
    2: (3, 20, 12, "+-*"),
    3: (4, 50, 12, "+-*/"),
    4: (5, 100, 20, "+-*/"),
    5: (6, 1000, 30, "+-*/"),
}


def _draw_ops(rng: random.Random, n: int, allowed: str) -> list[str]:
    ops: list[str] = []
    for _ in range(n):
        # No "a / b / c": the generator only guarantees exactness for one division in a row.
        choices = allowed.replace("/", "") if ops and ops[-1] == "/" else allowed
        ops.append(rng.choice(choices))
    return ops


def _draw_literals(rng: random.Random, ops: list[str], hi: int, mul_hi: int) -> list[int]:
    lits: list[int] = []
    while len(lits) < len(ops) + 1:
        i = len(lits)
        if i < len(ops) and ops[i] == "/":
            # "x / d" with d dividing x: every product that contains x then stays an integer.
            d = rng.randint(2, min(12, mul_hi))
            lits += [d * rng.randint(1, max(1, hi // d)), d]
            continue
        near_mul = "*" in (ops[i - 1] if i > 0 else "", ops[i] if i < len(ops) else "")
        lits.append(rng.randint(1, mul_hi if near_mul else hi))
    return lits


def generate_task(rng: random.Random, difficulty: int, **env_kwargs: Any) -> dict[str, Any]:
    """One task; higher difficulty means more operands, bigger numbers, more operators.

    Deterministic for a given ``rng`` state; the answer is always an integer. ``env_kwargs``
    (the env's constructor arguments, passed by the sampler) do not change the tasks here.
    """
    if difficulty not in _LEVELS:
        raise ValueError(f"difficulty must be one of {sorted(_LEVELS)}, got {difficulty!r}")
    n, hi, mul_hi, allowed = _LEVELS[difficulty]
    ops = _draw_ops(rng, n - 1, allowed)
    lits = _draw_literals(rng, ops, hi, mul_hi)
    expression = " ".join([str(lits[0])] + [f"{op} {x}" for op, x in zip(ops, lits[1:])])
    answer = safe_eval(expression)
    assert isinstance(answer, int), expression  # guaranteed by _draw_literals
    digest = hashlib.sha1(expression.encode()).hexdigest()[:10]
    return {
        "id": f"calc-d{difficulty}-{digest}",
        "env": ENV_ID,
        "prompt": f"What is {expression}?",
        "answer": answer,
        "difficulty": difficulty,
        "expression": expression,
    }


# --- the environment ----------------------------------------------------------------------
class CalculatorEnv(gymnasium.Env[str, str]):
    """Answer an arithmetic question in at most ``max_turns`` replies, optionally using a tool.

    ``reset(options={"task": task})`` takes a task dict with a ``prompt`` and a numeric
    ``answer`` (e.g. from ``generate_task`` or a dataset); without one, a task is generated
    from ``self.np_random``. Episodes end (``terminated``) at the first reply holding an
    ``<answer>``, or are ``truncated`` after ``max_turns`` replies without one.
    """

    metadata = {"render_modes": []}
    difficulties = tuple(_LEVELS)
    generate_task = staticmethod(generate_task)

    def __init__(self, max_turns: int = 4, max_text_length: int = 8192):
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.max_turns = max_turns
        self.observation_space = AnyText(max_length=max_text_length)
        self.action_space = AnyText(max_length=max_text_length)
        self._task: dict[str, Any] | None = None
        self._target = 0.0
        self._turn = 0
        self._tool_calls = 0
        self._done = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = (options or {}).get("task")
        if task is None:
            difficulty = self.difficulties[int(self.np_random.integers(len(self.difficulties)))]
            rng = random.Random(int(self.np_random.integers(2**63)))
            task = generate_task(rng, difficulty)
        target = as_number(task.get("answer"))
        if target is None or "prompt" not in task:
            raise ValueError(f"{ENV_ID} needs a task with a prompt and a numeric answer, got {task!r:.200}")
        self._task, self._target = task, target
        self._turn, self._tool_calls, self._done = 0, 0, False
        observation = f"{INSTRUCTIONS}\nQuestion: {task['prompt']}"
        return observation, {"task_id": task.get("id"), "turn": 0, "tool_calls": 0}

    def step(self, action: str):
        if self._task is None or self._done:
            raise RuntimeError("step() called before reset() or after the episode ended")
        self._turn += 1
        text = action if isinstance(action, str) else ""
        answer = first_tag_content(text, "answer")
        if answer is not None:
            # The final observation is never shown to the model: the episode is over.
            reward, info = self._judge(answer)
            observation, terminated = "", True
        else:
            observation, info = self._act(text)
            reward, terminated = 0.0, False
        truncated = not terminated and self._turn >= self.max_turns
        self._done = terminated or truncated
        info.update(turn=self._turn, tool_calls=self._tool_calls)
        return observation, reward, terminated, truncated, info

    def _judge(self, answer: str) -> tuple[float, dict[str, Any]]:
        parsed = parse_number(answer)
        success = parsed is not None and math.isclose(parsed, self._target, rel_tol=1e-6, abs_tol=1e-9)
        info = {"invalid_action": False, "success": success, "parsed_answer": parsed}
        return (1.0 if success else 0.0), info

    def _act(self, text: str) -> tuple[str, dict[str, Any]]:
        expression = first_tag_content(text, "calc")
        if expression is None:
            return INVALID_ACTION, {"invalid_action": True}
        self._tool_calls += 1
        try:
            result, error = format_number(safe_eval(expression)), None
        except CalcError as err:
            result, error = f"error: {err}", str(err)
        return f"<result>{result}</result>", {"invalid_action": False, "tool_error": error}
