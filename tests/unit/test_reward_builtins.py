"""Every built-in reward plugin, scored on hand-written episodes with hand-computed scores.

Episodes are written as the dicts a run saves (``EpisodeView.from_dict``); the ``info`` dicts
copy what the built-in envs report (see envs/), and two tests play the real Calculator-v0 and
Search-v0 envs to check that those copies are faithful.
"""

from __future__ import annotations

import doctest
import importlib
import math

import pytest
from support import REPO
from support.reward_views import BUILTINS, TOOLS, view

import rlagent.rewards.format
import rlagent.rewards.outcome
import rlagent.rewards.process
import rlagent.rewards.text_match
import rlagent.rewards.tool_schema
import rlagent.tags
from rlagent.rewards.format import FormatReward, TagsReward, ToolCallFormatReward
from rlagent.rewards.outcome import AgentReward, EnvSuccessReward, NumericMatchReward
from rlagent.rewards.process import (
    GoldEvidenceReward,
    RepeatedQueryReward,
    StepCostReward,
    ValidToolCallReward,
)
from rlagent.rewards.text_match import ExactMatchReward, F1Reward, normalize_text
from rlagent.rewards.tool_schema import call_problem, tool_table
from rlagent.scoring.service import KINDS


# --- registration and options ----------------------------------------------------------------
def test_every_entry_point_resolves_to_a_documented_class_with_a_valid_kind():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    with open(REPO / "pyproject.toml", "rb") as f:
        points = tomllib.load(f)["project"]["entry-points"]["rlagent.rewards"]
    # The judge needs a model and an engine: tests/test_judge.py covers it.
    assert set(points) - {"judge"} == set(BUILTINS)
    for name, target in points.items():
        if name == "judge":
            continue
        module, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        assert cls is BUILTINS[name][0], name
        assert cls.kind in KINDS, name
        assert cls.__doc__ and cls.__doc__.strip().splitlines()[0].strip(), name
        assert "Kwargs:" in cls.__doc__, f"{name}: document the options"
        plugin = cls(**BUILTINS[name][1])
        assert plugin.kind in KINDS and callable(plugin.score)
    table = (REPO / "rewards" / "BUILTINS.md").read_text()
    for name, (cls, _) in BUILTINS.items():
        assert f"| `{name}` | {cls.kind} |" in table, f"{name} is missing from rewards/BUILTINS.md"


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_unknown_options_are_named_with_the_accepted_ones(name):
    cls, needed = BUILTINS[name]
    with pytest.raises(TypeError, match=rf"{cls.__name__} got unknown option\(s\) \['colour'\]"):
        cls(**needed, colour="red")


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (FormatReward, {"answer_tag": "x", "tool_tag": "x"}, "must differ"),
        (FormatReward, {"tool_tag": "<calc>"}, "tool_tag"),
        (TagsReward, {"tags": "answer"}, "tags must be a non-empty list"),
        (TagsReward, {"tags": []}, "tags must be a non-empty list"),
        (TagsReward, {"tags": ["think", "think"]}, "distinct"),
        (TagsReward, {"per_turn": "yes"}, "per_turn"),
        (ToolCallFormatReward, {}, "needs tools"),
        (ToolCallFormatReward, {"tools": "search"}, "non-empty list"),
        (ToolCallFormatReward, {"tools": [{"parameters": {}}]}, r"tools\[0\] has no name"),
        (ToolCallFormatReward, {"tools": [TOOLS[1], TOOLS[1]]}, "declared twice"),
        (
            ToolCallFormatReward,
            {
                "tools": [
                    {"name": "f", "parameters": {"type": "object", "properties": {"q": {"type": "text"}}}}
                ]
            },
            r"tools\[0\]\.parameters\.properties\.q\.type: unknown type 'text'",
        ),
        (NumericMatchReward, {"rel_tol": -1}, "rel_tol must be a finite number >= 0.0"),
        (NumericMatchReward, {"abs_tol": "0.1"}, "abs_tol"),
        (EnvSuccessReward, {"key": ""}, "key"),
        (ExactMatchReward, {"answer_tag": "<answer>"}, "answer_tag"),
        (F1Reward, {"answer_tag": 3}, "answer_tag"),
        (ValidToolCallReward, {"valid": "1"}, "valid"),
        (ValidToolCallReward, {"tool_tags": "calc"}, "tool_tags must be a list"),
        (GoldEvidenceReward, {"hit": math.nan}, "hit"),
        (GoldEvidenceReward, {"gold_key": None}, "gold_key"),
        (RepeatedQueryReward, {"penalty": None}, "penalty"),
        (StepCostReward, {"cost": -0.1}, "cost must be a finite number >= 0.0"),
    ],
)
def test_bad_option_values_name_the_option(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize(
    "module",
    [
        rlagent.rewards.format,
        rlagent.rewards.text_match,
        rlagent.rewards.process,
        rlagent.rewards.tool_schema,
        rlagent.tags,
    ],
)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# --- outcome: exact match, F1, numeric, env success -----------------------------------------
@pytest.mark.parametrize(
    "actions, answer, fields, expected",
    [
        (["<answer>the Orthwick.</answer>"], "Orthwick", {}, 1.0),  # article, punctuation
        (["<answer>city   of LIGHT</answer>"], ["Paris", "City of Light"], {}, 1.0),  # any gold
        (["<answer>ZÜRICH</answer>"], None, {"golden_answers": ["Zürich"]}, 1.0),  # unicode case
        (["<answer>Lyon</answer>"], "Paris", {"golden_answers": ["Lyon"]}, 1.0),  # both sources
        (["<answer>1984</answer>"], 1984, {}, 1.0),  # a number as gold
        (
            ["<answer>London</answer>", "<search>x</search>", "<answer>Paris</answer>"],
            "Paris",
            {},
            1.0,
        ),  # the last answer wins
        (["<answer>Paris</answer>", "<answer>London</answer>"], "Paris", {}, 0.0),
        (["Paris"], "Paris", {}, 0.0),  # no answer tag
        (["<answer>Paris"], "Paris", {}, 0.0),  # unclosed tag
        (["<answer>The.</answer>"], "Paris", {}, 0.0),  # normalises to ""
        (["<answer>Paris France</answer>"], "Paris", {}, 0.0),
        ([], "Paris", {}, 0.0),  # no turns: no answer
        (["<answer>Paris</answer>"], None, {}, None),  # no gold at all
        (["<answer>Paris</answer>"], "", {"golden_answers": []}, None),  # only empty golds
        (["<answer>the</answer>"], ["the", "  "], {}, None),  # golds normalise to ""
    ],
)
def test_exact_match(actions, answer, fields, expected):
    assert ExactMatchReward().score(view(*actions, answer=answer, **fields)) == expected


@pytest.mark.parametrize(
    "prediction, answer, expected",
    [
        # gold "orthwick city" (2 tokens), prediction "orthwick" (1): shared 1,
        # P = 1/1, R = 1/2, F1 = 2 * 1 * 0.5 / 1.5 = 2/3
        ("Orthwick", "Orthwick City", 2 / 3),
        # prediction "city of orthwick" (the article goes): against "orthwick" P = 1/3, R = 1,
        # F1 = 0.5; against "orthwick city" P = 2/3, R = 1, F1 = (4/3) / (5/3) = 0.8; best 0.8
        ("the city of Orthwick", ["Orthwick", "Orthwick City"], 0.8),
        # repeated tokens count once per occurrence on both sides: shared min(2, 1) = 1,
        # P = 1/2, R = 1, F1 = 2/3
        ("Paris paris", "Paris", 2 / 3),
        ("Paris!", "paris", 1.0),
        ("London", "Paris", 0.0),
        ("The.", "Paris", 0.0),  # empty prediction
    ],
)
def test_f1(prediction, answer, expected):
    ep = view(f"<answer>{prediction}</answer>", answer=answer)
    assert F1Reward().score(ep) == pytest.approx(expected)


def test_f1_edge_cases():
    assert F1Reward().score(view("no tag", answer="Paris")) == 0.0
    assert F1Reward().score(view("<answer>Paris</answer>", answer=None)) is None
    assert F1Reward().score(view("<answer>x</answer>", answer=["", "a an the"])) is None
    assert F1Reward(answer_tag="final").score(view("<final>paris</final>", answer="Paris")) == 1.0


def test_normalisation_and_exact_match_agree_with_search_env():
    from rlagent.envs.search.corpus import exact_match, normalize_answer

    samples = [
        "  The Zolvane-Works, Inc. ",
        "48,200",
        "an apple a day",
        "Zürich—Café!",
        "",
        "A",
        "the the",
        "Ünïcode\tTABS\n",
    ]
    for text in samples:
        assert normalize_text(text) == normalize_answer(text), text
    golds = ["Orthwick", "Orthwick City"]
    for text in samples + ["the orthwick", "ORTHWICK CITY."]:
        ep = view(f"<answer>{text}</answer>", answer=golds)
        assert ExactMatchReward().score(ep) == float(exact_match(text, golds)), text


def test_numeric_is_the_outcome_reward_with_checked_tolerances():
    ep = view("<answer>0.5</answer>", answer=0.4)
    assert NumericMatchReward().score(ep) == 0.0
    assert NumericMatchReward(abs_tol=0.2).score(ep) == 1.0  # |0.5 - 0.4| <= 0.2
    assert NumericMatchReward().score(view("<answer>7</answer>", answer=None)) is None


@pytest.mark.parametrize(
    "infos, expected",
    [
        ([{"success": True}], 1.0),
        ([{"success": False}], 0.0),
        ([{"invalid_action": False}, {"success": True, "answer": "5"}], 1.0),
        ([{"success": True}, {"command": "look"}], None),  # TextWorld cut off: the game never judged
        ([{}], None),
        ([{"success": None}], None),
        ([{"success": 1}], 1.0),
        ([], None),  # no turns
    ],
)
def test_env_success(infos, expected):
    ep = view(*[("act", info) for info in infos])
    assert EnvSuccessReward().score(ep) == expected


@pytest.mark.parametrize(
    "infos, expected",
    [
        ([{}, {"agent_reward": 0.75}], 0.75),  # the number the agent returned, on the last turn
        ([{"agent_reward": 1.0}, {}], None),  # an earlier turn's is not the episode's
        ([{}], None),  # the agent returned None: other plugins score
        ([], None),
    ],
)
def test_agent_reward_is_what_the_agent_returned(infos, expected):
    assert AgentReward().score(view(*[("act", info) for info in infos])) == expected


def test_env_success_key_and_bad_flag():
    ep = view(("go north", {"won": True, "success": False}))
    assert EnvSuccessReward(key="won").score(ep) == 1.0
    with pytest.raises(ValueError, match="not a bool"):
        EnvSuccessReward().score(view(("x", {"success": "yes"})))


# --- format: tags and tool calls -------------------------------------------------------------
@pytest.mark.parametrize(
    "final, expected",
    [
        ("<think>a</think><answer>b</answer>", 1.0),
        ("Sure. <think>a</think>\nso <answer>b</answer>  \n", 1.0),  # text before/between is free
        ("<answer>b</answer><think>a</think>", 0.0),  # wrong order
        ("<think>a</think><answer>b</answer> Thanks!", 0.0),  # text after the answer
        ("<think>a<answer>b</answer></think>", 0.0),  # answer opens inside think
        ("<think>a</think><think>b</think><answer>c</answer>", 0.0),  # think twice
        ("<think>a</think><answer>b", 0.0),  # answer never closed
        ("<think>a</think>", 0.0),  # no answer tag
        ("<think>ü 🙂</think><answer>日本</answer>", 1.0),  # unicode content
    ],
)
def test_tags_final_turn(final, expected):
    # Only the final turn is judged by default: the first turn breaks every rule.
    assert TagsReward().score(view("<answer>x</answer> junk <think>", final)) == expected


def test_tags_text_after_and_per_turn():
    assert TagsReward(allow_text_after=True).score(view("<think>a</think><answer>b</answer> Thanks!")) == 1.0
    turns = [
        "<think>a</think> <calc>1</calc>",  # follows (text after is fine mid-episode)
        "no think",  # does not follow
        "<think>b</think><answer>2</answer>",
    ]  # final: text after </think> is not allowed
    assert TagsReward(tags=["think"], per_turn=True).score(view(*turns)) == pytest.approx(1 / 3)
    assert TagsReward(tags=["think"], per_turn=True, allow_text_after=True).score(
        view(*turns)
    ) == pytest.approx(2 / 3)
    assert TagsReward(tags=["answer"]).score(view("<answer>2</answer>")) == 1.0
    assert TagsReward().score(view()) is None


@pytest.mark.parametrize(
    "call, problem",
    [
        ('{"name": "search", "arguments": {"query": "Orthwick", "top_k": 3}}', None),
        ('{"name": "search", "arguments": {"query": "x", "top_k": 2.0}}', None),  # 2.0 is an integer
        ('{"name": "search", "arguments": {"query": "x", "lang": "en"}}', None),  # extras allowed here
        ('{"name": "calc", "arguments": {"expression": "1", "precision": 4, "vars": [1, 2.5]}}', None),
        ('{"name": "search", "arguments": {"top_k": 3}}', "arguments: missing required argument 'query'"),
        ('{"name": "search", "arguments": {"query": 3}}', "arguments.query: expected string, got int"),
        (
            '{"name": "search", "arguments": {"query": "x", "top_k": true}}',
            "arguments.top_k: expected integer, got bool",
        ),
        (
            '{"name": "calc", "arguments": {"expression": "1", "unit": "m"}}',
            "arguments: unknown argument 'unit'",
        ),
        (
            '{"name": "calc", "arguments": {"expression": "1", "precision": 3}}',
            "arguments.precision: 3 is not one of [2, 4]",
        ),
        (
            '{"name": "calc", "arguments": {"expression": "1", "vars": [1, "2"]}}',
            "arguments.vars[1]: expected number, got str",
        ),
        ('{"name": "browse", "arguments": {}}', "unknown tool 'browse'"),
        ('{"name": ["search"]}', "unknown tool ['search']"),
        ('{"arguments": {"query": "x"}}', "unknown tool None"),
        ('{"name": "search", "arguments": ["x"]}', "arguments must be a JSON object, got list"),
        ('["search", {"query": "x"}]', "a call must be a JSON object"),
        ("{'name': 'search'}", "not JSON: JSONDecodeError"),
        ("[" * 100_000, "not JSON: RecursionError"),
    ],
)
def test_tool_call_checks(call, problem):
    assert call_problem(call, tool_table(TOOLS)) == problem


def test_tool_call_format_score():
    ok = '<tool_call>{"name": "search", "arguments": {"query": "Orthwick"}}</tool_call>'
    missing = '<tool_call>{"name": "search", "arguments": {"top_k": 3}}</tool_call>'
    calc = '<tool_call>{"name": "calc", "arguments": {"expression": "2+3"}}</tool_call>'
    reward = ToolCallFormatReward(tools=TOOLS)
    # calls: 1 + 1 + 2 + 0 = 4, valid: 1 + 0 + 2 + 0 = 3 -> 3/4
    ep = view(f"I'll search. {ok}", missing, f"{calc}\n{ok}", "<answer>5</answer>")
    assert reward.score(ep) == 0.75
    assert reward.count(f"{ok}<tool_call>") == (1, 2)  # a dangling opening is a bad call
    assert reward.count(f"{ok}</tool_call>") == (1, 2)  # so is a stray closing
    assert reward.count("<tool_call>{\"name\": \"calc\"}") == (0, 1)
    assert reward.score(view("<answer>5</answer>")) is None  # no call at all: not applicable
    assert reward.score(view()) is None
    custom = ToolCallFormatReward(tools=TOOLS, tag="call")
    assert custom.score(view(ok.replace("tool_call", "call"))) == 1.0
