"""The built-in process rewards by hand, every built-in on real env episodes, and no built-in
raising on whatever text a policy writes (hypothesis), in linear time on unclosed tags."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.reward_views import BUILTINS, view

from rlagent.episode_view import EpisodeView
from rlagent.rewards.format import FormatReward
from rlagent.rewards.outcome import EnvSuccessReward, NumericMatchReward
from rlagent.rewards.process import (
    GoldEvidenceReward,
    RepeatedQueryReward,
    StepCostReward,
    ValidToolCallReward,
)
from rlagent.rewards.text_match import ExactMatchReward, F1Reward
from rlagent.scoring.service import check_value as _check_value

# --- process: valid tool call, gold evidence, repeated query, step cost ----------------------
# Scores that tell the three cases apart: valid call, error (invalid action / tool error), no call.
DISTINCT = {"valid": 1.0, "error": -1.0, "no_call": 0.25}


@pytest.mark.parametrize(
    "turns, expected",
    [
        # Tool-v0: "tool" names the tool called; "tool_error" its failure kind.
        (
            [
                (
                    "<python>print(1)</python>",
                    {"invalid_action": False, "tool": "python", "tool_error": None, "tool_calls": 1},
                ),
                (
                    "<python>1/0</python>",
                    {"invalid_action": False, "tool": "python", "tool_error": "exit", "tool_calls": 2},
                ),
                ("hmm", {"invalid_action": True, "tool": None, "tool_error": None, "tool_calls": 2}),
                (
                    "<answer>1</answer> <calc>2</calc>",
                    {
                        "invalid_action": False,
                        "tool": None,
                        "tool_error": None,
                        "success": True,
                        "tool_calls": 2,
                    },
                ),
            ],
            [1.0, -1.0, -1.0, 0.25],
        ),
        # Calculator-v0: no "tool" key; a call shows as the "tool_calls" counter growing.
        (
            [
                ("<calc>2+3</calc>", {"invalid_action": False, "tool_error": None, "tool_calls": 1}),
                (
                    "<calc>1/0</calc>",
                    {"invalid_action": False, "tool_error": "division by zero", "tool_calls": 2},
                ),
                ("<answer>5</answer>", {"invalid_action": False, "success": True, "tool_calls": 2}),
            ],
            [1.0, -1.0, 0.25],
        ),
        # Search-v0: cumulative "queries"; a search adds one.
        (
            [
                ("<search>a</search>", {"invalid_action": False, "success": False, "queries": ["a"]}),
                ("no tag", {"invalid_action": True, "success": False, "queries": ["a"]}),
                ("<search>b</search>", {"invalid_action": False, "success": False, "queries": ["a", "b"]}),
                ("<answer>x</answer>", {"invalid_action": False, "success": True, "queries": ["a", "b"]}),
            ],
            [1.0, -1.0, 1.0, 0.25],
        ),
        # TextWorld-v0 ("command") and Web-v0 ("action"): an accepted env action counts as a call.
        (
            [
                ("go north", {"command": "go north", "invalid_action": False}),
                ("quit", {"command": None, "invalid_action": True}),
            ],
            [1.0, -1.0],
        ),
        (
            [
                ("click(3)", {"action": [{"kind": "click", "ref": 3}], "invalid_action": False}),
                (
                    "click(99)",
                    {
                        "action": [{"kind": "click", "ref": 99}],
                        "invalid_action": True,
                        "error": "no element [99] on the page",
                    },
                ),
            ],
            [1.0, -1.0],
        ),
        # An env that reports nothing: a complete tool tag in the action is a call.
        (['<tool_call>{"name": "f"}</tool_call>', "plain text", "<search>unclosed"], [1.0, 0.25, 0.25]),
    ],
)
def test_valid_tool_call(turns, expected):
    assert ValidToolCallReward(**DISTINCT).score(view(*turns)) == expected


def test_valid_tool_call_defaults_and_no_turns():
    ep = view(("<calc>1</calc>", {"tool_calls": 1}), ("<answer>1</answer>", {"tool_calls": 1}))
    assert ValidToolCallReward().score(ep) == [1.0, 0.0]
    assert ValidToolCallReward(tool_tags=["act"]).score(view("<act>x</act>", "<calc>1</calc>")) == [1.0, 0.0]
    assert ValidToolCallReward().score(view()) is None


def search_turns() -> list[tuple[str, dict]]:
    """A Search-v0 episode: queries and retrieved ids are cumulative, one entry per search."""
    r1, r2, r3 = ["d1", "d2", "d3"], ["d2", "d4", "d5"], ["d7", "d1", "d9"]
    return [
        (
            "<search>Founder of Zolvane Works</search>",
            {"queries": ["Founder of Zolvane Works"], "retrieved_ids": [r1]},
        ),
        (
            "<search>founder of the zolvane works?</search>",
            {
                "queries": ["Founder of Zolvane Works", "founder of the zolvane works?"],
                "retrieved_ids": [r1, r2],
            },
        ),
        (
            "I should search.",
            {
                "invalid_action": True,
                "queries": ["Founder of Zolvane Works", "founder of the zolvane works?"],
                "retrieved_ids": [r1, r2],
            },
        ),
        (
            "<search>Orthwick population</search>",
            {
                "queries": [
                    "Founder of Zolvane Works",
                    "founder of the zolvane works?",
                    "Orthwick population",
                ],
                "retrieved_ids": [r1, r2, r3],
            },
        ),
        (
            "<answer>48,200</answer>",
            {
                "success": True,
                "queries": [
                    "Founder of Zolvane Works",
                    "founder of the zolvane works?",
                    "Orthwick population",
                ],
                "retrieved_ids": [r1, r2, r3],
            },
        ),
    ]


def test_gold_evidence():
    ep = view(*search_turns(), answer="48200", gold_doc_ids=["d2", "d7"])
    # turn 0 finds d2 (new gold); turn 1 finds d2 again (not new); turn 2 does not search;
    # turn 3 finds d7 (new gold); turn 4 answers.
    assert GoldEvidenceReward().score(ep) == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert GoldEvidenceReward(hit=0.5).score(ep) == [0.5, 0.0, 0.0, 0.5, 0.0]
    assert GoldEvidenceReward(gold_key="evidence").score(view(*search_turns(), evidence="d4")) == [
        0.0,
        1.0,
        0.0,
        0.0,
        0.0,
    ]
    assert GoldEvidenceReward().score(view(*search_turns())) is None  # no gold ids
    assert GoldEvidenceReward().score(view(*search_turns(), gold_doc_ids=[])) is None
    assert GoldEvidenceReward().score(view(gold_doc_ids=["d2"])) is None  # no turns
    assert GoldEvidenceReward().score(view("<search>x</search>", gold_doc_ids=["d2"])) == [0.0]


def test_repeated_query():
    # Turn 1 repeats turn 0's query once normalised ("founder of zolvane works");
    # turn 2 searched nothing; turn 3 is new; turn 4 answers.
    assert RepeatedQueryReward().score(view(*search_turns())) == [0.0, -1.0, 0.0, 0.0, 0.0]
    assert RepeatedQueryReward(penalty=-0.5).score(view(*search_turns()))[1] == -0.5
    # Without "queries" in info, the action's first <search> is the query. "???" normalises to
    # nothing and is compared as written; so a second "???" is a repeat, "!!" is not.
    actions = [
        "<search>A B</search>",
        "<search> a  b </search>",
        "<search>???</search>",
        "<search>???</search>",
        "<search>!!</search>",
        "<search>   </search>",
        "a b",
    ]
    assert RepeatedQueryReward().score(view(*actions)) == [0.0, -1.0, 0.0, -1.0, 0.0, 0.0, 0.0]
    assert RepeatedQueryReward(query_tag="q").score(view("<q>x</q>", "<q>X!</q>")) == [0.0, -1.0]
    assert RepeatedQueryReward().score(view()) is None


def test_step_cost():
    assert StepCostReward().score(view("a", "b")) == [-0.01, -0.01]
    assert StepCostReward(cost=0.25).score(view("a", "b", "c")) == [-0.25, -0.25, -0.25]
    assert StepCostReward().score(view()) is None


# --- the info the rewards read is what the real envs report -----------------------------------
def play(env, task: dict, actions: list[str]) -> EpisodeView:
    env.reset(seed=0, options={"task": task})
    turns = []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        turns.append({"action": action, "observation": obs, "env_reward": reward, "info": info})
        if terminated or truncated:
            break
    return EpisodeView.from_dict({"task": task, "messages": [], "turns": turns, "termination": "terminated"})


def test_on_a_real_calculator_episode():
    from rlagent.envs.calculator import CalculatorEnv

    task = {"id": "c1", "env": "rlagent/Calculator-v0", "prompt": "37 * 14 + 5?", "answer": 523}
    ep = play(
        CalculatorEnv(max_turns=5),
        task,
        ["<calc>37 * 14</calc>", "<calc>1 / 0</calc>", "oops", "<answer>523</answer>"],
    )
    assert ValidToolCallReward(**DISTINCT).score(ep) == [1.0, -1.0, -1.0, 0.25]
    assert EnvSuccessReward().score(ep) == 1.0 and NumericMatchReward().score(ep) == 1.0
    assert FormatReward().score(ep) == 0.75  # "oops" is the one bad turn of 4


def test_on_a_real_search_episode():
    from rlagent.envs.search import BM25Retriever, Passage, SearchEnv

    corpus = [
        Passage("d1", "Zolvane Works", "Zolvane Works was founded by Ada Orthwick."),
        Passage("d2", "Ada Orthwick", "Ada Orthwick was born in Tesvaria."),
        Passage("d3", "Tesvaria", "Tesvaria is a country with a population of 48,200."),
        Passage("d4", "Kelm", "Kelm is a river."),
    ]
    env = SearchEnv(top_k=1, retriever=BM25Retriever(corpus, cache=False))
    task = {
        "id": "s1",
        "env": "rlagent/Search-v0",
        "prompt": "Where was the founder born?",
        "golden_answers": ["Tesvaria"],
        "gold_doc_ids": ["d1", "d2"],
    }
    ep = play(
        env,
        task,
        [
            "<search>Zolvane Works founder</search>",
            "<search>zolvane works, founder!</search>",
            "no tag",
            "<search>Ada Orthwick born</search>",
            "<answer>Tesvaria.</answer>",
        ],
    )
    assert [t.info["retrieved_ids"][-1] for t in ep.turns[:2]] == [("d1",), ("d1",)]
    assert GoldEvidenceReward().score(ep) == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert RepeatedQueryReward().score(ep) == [0.0, -1.0, 0.0, 0.0, 0.0]
    assert ValidToolCallReward(**DISTINCT).score(ep) == [1.0, 1.0, -1.0, 1.0, 0.25]
    assert ExactMatchReward().score(ep) == 1.0 == EnvSuccessReward().score(ep)
    assert F1Reward().score(ep) == 1.0


# --- no plugin raises on whatever text the policy writes -------------------------------------
FRAGMENTS = [
    "<answer>",
    "</answer>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<search>",
    "</search>",
    "<calc>",
    "</calc>",
    '{"name": "search", "arguments": ',
    '{"name": "calc"}',
    '{"query": ',
    "}",
    "{",
    "[",
    "]",
    '"',
    "1e999",
    "NaN",
    "null",
    "\x00",
    "\ud800",
    "é",
    "🙂",
    " ",
    "\n",
    "the",
    "a",
]


TEXT = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", errors="replace")),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=40).map("".join),
    st.builds(lambda f, n: f * n, st.sampled_from(FRAGMENTS), st.integers(1_000, 60_000)),
    st.builds(lambda n: "<tool_call>" + "[" * n + "</tool_call>", st.integers(1, 50_000)),
)


# Infos of the shapes the built-in envs report (and none at all).
INFOS = st.sampled_from(
    [
        {},
        search_turns()[1][1],
        search_turns()[3][1],
        {"invalid_action": True, "tool": None, "tool_error": None},
        {"tool": "python", "tool_error": "timeout", "tool_calls": 3},
        {"tool_calls": 1, "tool_error": None},
        {"success": False},
        {"command": "look", "invalid_action": False, "success": True},
        {"action": [], "invalid_action": True, "error": "bad"},
    ]
)


ANSWERS = st.one_of(
    st.none(), st.text(max_size=30), st.integers(), st.lists(st.text(max_size=10), max_size=3)
)


@pytest.mark.parametrize("name", sorted(BUILTINS))
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    turns=st.lists(st.tuples(TEXT, INFOS), max_size=4),
    answer=ANSWERS,
    golds=st.one_of(st.none(), st.lists(st.text(max_size=10), max_size=3)),
    gold_ids=st.lists(st.sampled_from(["d1", "d2", "d7", ""]), max_size=2),
)
def test_no_plugin_raises_on_arbitrary_text(name, turns, answer, golds, gold_ids):
    cls, needed = BUILTINS[name]
    ep = view(*turns, answer=answer, golden_answers=golds, gold_doc_ids=gold_ids)
    value = _check_value(cls(**needed).score(ep))  # the service's own check: finite floats
    if isinstance(value, list):
        assert cls.kind == "process" and len(value) == len(turns)
    else:
        assert value is None or isinstance(value, float)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_many_unclosed_tags_are_scored_in_linear_time(name):
    # A lazy regex such as <t>(.*?)</t> retries from every opening: on these four 50,000-tag
    # replies that is minutes of CPU; a linear scan takes milliseconds.
    cls, needed = BUILTINS[name]
    tags = ["<answer>", "<tool_call>", "<search>", "<think>", "<calc>"]
    ep = view(*[tag * 50_000 for tag in tags], answer="Paris", gold_doc_ids=["d1"])
    start = time.process_time()
    cls(**needed).score(ep)
    assert time.process_time() - start < 5.0
