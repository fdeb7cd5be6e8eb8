"""Built-in reward plugins, scored on hand-built episodes with hand-computed expectations."""

from __future__ import annotations

import doctest
import importlib.metadata

import pytest

import rlagent.rewards.format
import rlagent.tags
from rlagent.records import Episode, Task, Turn
from rlagent.rewards.format import FormatReward
from rlagent.rewards.outcome import EnvReward, NumericMatchReward
from rlagent.tags import parse_number


def episode(*actions: str, answer=523, env_rewards=None) -> Episode:
    """An episode whose assistant turns are ``actions``; token fields are small dummies."""
    env_rewards = env_rewards or [0.0] * len(actions)
    turns = [
        Turn(action=a, observation=None, env_reward=r, info={}, span=(i, i + 1), finish_reason="stop")
        for i, (a, r) in enumerate(zip(actions, env_rewards))
    ]
    task = Task(
        id="t1", env="rlagent/Calculator-v0", prompt="What is 37 * 14 + 5?", answer=answer, difficulty=2
    )
    n = len(actions)
    return Episode(
        task=task,
        group=0,
        messages=[],
        token_ids=[1] + list(range(2, 2 + n)),
        loss_mask=[0] + [1] * n,
        logprobs=[0.0] + [-0.5] * n,
        prompt_len=1,
        turns=turns,
        termination="terminated",
        policy_version=0,
    )


def test_entry_points_register_builtins():
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="rlagent.rewards")}
    assert eps["format"].load() is FormatReward
    assert eps["outcome"].load() is NumericMatchReward
    assert FormatReward.kind == "format" and NumericMatchReward.kind == "outcome"
    assert EnvReward.kind == "outcome"


@pytest.mark.parametrize("module", [rlagent.rewards.format, rlagent.tags])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    "actions, expected",
    [
        (["<calc>37 * 14</calc>", "<answer>523</answer>"], 1.0),
        (["Let me think. <calc>37 * 14</calc> ok", "It is <answer>523</answer>\n "], 1.0),
        (["<calc>37 * 14</calc>"], 0.5),  # no final answer: halved
        (["<calc>1</calc><calc>2</calc>", "<answer>3</answer>"], 0.5),  # two tool calls
        (["<answer>523</answer> done"], 0.0),  # text after the answer
        (["<calc>1</calc>", "<answer>1</answer><answer>2</answer>"], 0.5),
        (["<calc>1", "<calc>1</calc>", "<calc>2</calc>", "<answer>3</answer>"], 0.75),
        (["</calc>1<calc>", "plain text"], 0.0),  # reversed tags, no tags
        (["<calc>1</calc><answer>1</answer>"], 0.0),  # both kinds in one turn
        (["<answer>1</answer>", "no tags"], 0.25),  # last turn not an answer
    ],
)
def test_format_reward(actions, expected):
    assert FormatReward().score(episode(*actions)) == expected


def test_format_reward_custom_tags_and_no_turns():
    reward = FormatReward(answer_tag="final", tool_tag="search")
    assert reward.score(episode("<search>q</search>", "<final>x</final>")) == 1.0
    assert reward.score(episode("<calc>1</calc>", "<answer>1</answer>")) == 0.0
    assert FormatReward().score(episode()) is None
    with pytest.raises(TypeError):
        FormatReward(answer="x")


@pytest.mark.parametrize(
    "actions, answer, expected",
    [
        (["<answer>523</answer>"], 523, 1.0),
        (["<answer>522</answer>"], 523, 0.0),
        (["<answer> 1,234 </answer>"], 1234, 1.0),
        (["<answer>523.0</answer>"], "523", 1.0),
        (["<answer>523.0000001</answer>"], 523, 1.0),  # within rel_tol 1e-6
        (["<answer>523.01</answer>"], 523, 0.0),
        (["<answer>1</answer>", "<calc>2</calc>", "<answer>523</answer> x"], 523, 1.0),  # last wins
        (["<answer>523</answer><answer>5</answer>"], 523, 0.0),
        (["The answer is 523."], 523, 0.0),  # no tag
        (["<answer>523 apples</answer>"], 523, 0.0),
        (["<answer>nan</answer>"], 523, 0.0),
        (["<answer>-7</answer>"], -7.0, 1.0),
        (["<answer>0</answer>"], 0, 1.0),
        (["<answer>523</answer>"], None, None),  # no reference answer
        (["<answer>523</answer>"], "five hundred", None),  # reference not numeric
        ([], 523, 0.0),
    ],
)
def test_numeric_match_reward(actions, answer, expected):
    assert NumericMatchReward().score(episode(*actions, answer=answer)) == expected


def test_numeric_match_reward_options():
    ep = episode("<final>0.5</final>", answer=0.4)
    assert NumericMatchReward().score(ep) == 0.0
    assert NumericMatchReward(answer_tag="final").score(ep) == 0.0
    assert NumericMatchReward(answer_tag="final", abs_tol=0.2).score(ep) == 1.0


@pytest.mark.parametrize(
    "text, value",
    [
        ("42", 42.0),
        ("-3.5", -3.5),
        ("1,234,567", 1234567.0),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("1,23", None),
        ("inf", None),
        ("1 2", None),
        ("", None),
        ("1_000", None),
    ],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_env_reward_sums_env_signal():
    ep = episode("a", "b", "c", env_rewards=[0.5, 0.0, 0.5])
    assert EnvReward().score(ep) == 1.0
    assert EnvReward().score(episode()) is None
    with pytest.raises(TypeError):
        EnvReward(scale=2)
