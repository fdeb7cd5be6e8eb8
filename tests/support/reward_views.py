"""Episode views and the table of built-in reward plugins, for the reward plugins' tests."""

from __future__ import annotations

from rlagent.episode_view import EpisodeView
from rlagent.rewards.format import FormatReward, TagsReward, ToolCallFormatReward
from rlagent.rewards.outcome import AgentReward, EnvReward, EnvSuccessReward, NumericMatchReward
from rlagent.rewards.process import (
    GoldEvidenceReward,
    RepeatedQueryReward,
    StepCostReward,
    ValidToolCallReward,
)
from rlagent.rewards.text_match import ExactMatchReward, F1Reward

# Two tools as a chat template would get them: one OpenAI style, one flat.
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {
                "type": "object",
                "required": ["query"],
                "properties": {"query": {"type": "string"}, "top_k": {"type": "integer"}},
            },
        },
    },
    {
        "name": "calc",
        "parameters": {
            "type": "object",
            "required": ["expression"],
            "additionalProperties": False,
            "properties": {
                "expression": {"type": "string"},
                "precision": {"type": "integer", "enum": [2, 4]},
                "vars": {"type": "array", "items": {"type": "number"}},
            },
        },
    },
]


# Entry-point name -> (class, the kwargs it needs to be built).
BUILTINS = {
    "format": (FormatReward, {}),
    "tags": (TagsReward, {}),
    "tool_call": (ToolCallFormatReward, {"tools": TOOLS}),
    "outcome": (NumericMatchReward, {}),
    "numeric": (NumericMatchReward, {}),
    "env_reward": (EnvReward, {}),
    "agent": (AgentReward, {}),
    "env_success": (EnvSuccessReward, {}),
    "exact_match": (ExactMatchReward, {}),
    "f1": (F1Reward, {}),
    "valid_tool_call": (ValidToolCallReward, {}),
    "gold_evidence": (GoldEvidenceReward, {}),
    "repeated_query": (RepeatedQueryReward, {}),
    "step_cost": (StepCostReward, {}),
}


def view(*turns, answer=None, **task_fields) -> EpisodeView:
    """An episode whose assistant turns are ``turns``: action strings or (action, info) pairs."""
    pairs = [t if isinstance(t, tuple) else (t, {}) for t in turns]
    return EpisodeView.from_dict(
        {
            "task": {"id": "t1", "env": "rlagent/Test-v0", "prompt": "?", "answer": answer, **task_fields},
            "messages": [{"role": "user", "content": "?"}],
            "turns": [{"action": a, "observation": "", "env_reward": 0.0, "info": info} for a, info in pairs],
            "termination": "terminated",
        }
    )
