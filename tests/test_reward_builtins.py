"""Every built-in reward plugin, scored on hand-written episodes with hand-computed scores.

Episodes are written as the dicts a run saves (``EpisodeView.from_dict``); the ``info`` dicts
copy what the built-in envs report (see envs/), and two tests play the real Calculator-v0 and
Search-v0 envs to check that those copies are faithful.
"""
from __future__ import annotations

import doctest
import importlib
import math
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rlagent.rewards.format
import rlagent.rewards.outcome
import rlagent.rewards.process
import rlagent.rewards.tagged
import rlagent.rewards.text_match
import rlagent.rewards.tool_schema
from rlagent.episode_view import EpisodeView
from rlagent.reward_service import KINDS, _check_value
from rlagent.rewards.format import FormatReward, TagsReward, ToolCallFormatReward
from rlagent.rewards.outcome import EnvReward, EnvSuccessReward, NumericMatchReward
from rlagent.rewards.process import (
    GoldEvidenceReward,
    RepeatedQueryReward,
    StepCostReward,
    ValidToolCallReward,
)
from rlagent.rewards.text_match import ExactMatchReward, F1Reward, normalize_text
from rlagent.rewards.tool_schema import call_problem, tool_table

REPO = Path(__file__).resolve().parent.parent

# Two tools as a chat template would get them: one OpenAI style, one flat.
TOOLS = [
    {"type": "function", "function": {"name": "search", "parameters": {
        "type": "object", "required": ["query"],
        "properties": {"query": {"type": "string"}, "top_k": {"type": "integer"}}}}},
    {"name": "calc", "parameters": {
        "type": "object", "required": ["expression"], "additionalProperties": False,
        "properties": {"expression": {"type": "string"},
                       "precision": {"type": "integer", "enum": [2, 4]},
                       "vars": {"type": "array", "items": {"type": "number"}}}}},
]

# Entry-point name -> (class, the kwargs it needs to be built).
BUILTINS = {
    "format": (FormatReward, {}),
    "tags": (TagsReward, {}),
    "tool_call": (ToolCallFormatReward, {"tools": TOOLS}),
    "outcome": (NumericMatchReward, {}),
    "numeric": (NumericMatchReward, {}),
    "env_reward": (EnvReward, {}),
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
    return EpisodeView.from_dict({
        "task": {"id": "t1", "env": "rlagent/Test-v0", "prompt": "?", "answer": answer,
                 **task_fields},
        "messages": [{"role": "user", "content": "?"}],
        "turns": [{"action": a, "observation": "", "env_reward": 0.0, "info": info}
                  for a, info in pairs],
        "termination": "terminated"})


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


@pytest.mark.parametrize("cls, kwargs, match", [
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
    (ToolCallFormatReward, {"tools": [{"name": "f", "parameters": {
        "type": "object", "properties": {"q": {"type": "text"}}}}]},
     r"tools\[0\]\.parameters\.properties\.q\.type: unknown type 'text'"),
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
])
def test_bad_option_values_name_the_option(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("module", [rlagent.rewards.format, rlagent.rewards.text_match,
                                    rlagent.rewards.process, rlagent.rewards.tool_schema,
                                    rlagent.rewards.tagged])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# --- outcome: exact match, F1, numeric, env success -----------------------------------------
@pytest.mark.parametrize("actions, answer, fields, expected", [
    (["<answer>the Orthwick.</answer>"], "Orthwick", {}, 1.0),          # article, punctuation
    (["<answer>city   of LIGHT</answer>"], ["Paris", "City of Light"], {}, 1.0),  # any gold
    (["<answer>ZÜRICH</answer>"], None, {"golden_answers": ["Zürich"]}, 1.0),  # unicode case
    (["<answer>Lyon</answer>"], "Paris", {"golden_answers": ["Lyon"]}, 1.0),   # both sources
    (["<answer>1984</answer>"], 1984, {}, 1.0),                          # a number as gold
    (["<answer>London</answer>", "<search>x</search>", "<answer>Paris</answer>"], "Paris", {},
     1.0),                                                                 # the last answer wins
    (["<answer>Paris</answer>", "<answer>London</answer>"], "Paris", {}, 0.0),
    (["Paris"], "Paris", {}, 0.0),                                        # no answer tag
    (["<answer>Paris"], "Paris", {}, 0.0),                                # unclosed tag
    (["<answer>The.</answer>"], "Paris", {}, 0.0),                        # normalises to ""
    (["<answer>Paris France</answer>"], "Paris", {}, 0.0),
    ([], "Paris", {}, 0.0),                                               # no turns: no answer
    (["<answer>Paris</answer>"], None, {}, None),                         # no gold at all
    (["<answer>Paris</answer>"], "", {"golden_answers": []}, None),       # only empty golds
    (["<answer>the</answer>"], ["the", "  "], {}, None),                  # golds normalise to ""
])
def test_exact_match(actions, answer, fields, expected):
    assert ExactMatchReward().score(view(*actions, answer=answer, **fields)) == expected


@pytest.mark.parametrize("prediction, answer, expected", [
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
    ("The.", "Paris", 0.0),                                                # empty prediction
])
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
    samples = ["  The Zolvane-Works, Inc. ", "48,200", "an apple a day", "Zürich—Café!", "",
               "A", "the the", "Ünïcode\tTABS\n"]
    for text in samples:
        assert normalize_text(text) == normalize_answer(text), text
    golds = ["Orthwick", "Orthwick City"]
    for text in samples + ["the orthwick", "ORTHWICK CITY."]:
        ep = view(f"<answer>{text}</answer>", answer=golds)
        assert ExactMatchReward().score(ep) == float(exact_match(text, golds)), text


def test_numeric_is_the_outcome_reward_with_checked_tolerances():
    ep = view("<answer>0.5</answer>", answer=0.4)
    assert NumericMatchReward().score(ep) == 0.0
    assert NumericMatchReward(abs_tol=0.2).score(ep) == 1.0               # |0.5 - 0.4| <= 0.2
    assert NumericMatchReward().score(view("<answer>7</answer>", answer=None)) is None


@pytest.mark.parametrize("infos, expected", [
    ([{"success": True}], 1.0),
    ([{"success": False}], 0.0),
    ([{"invalid_action": False}, {"success": True, "answer": "5"}], 1.0),
    ([{"success": True}, {"command": "look"}], None),  # TextWorld cut off: the game never judged
    ([{}], None),
    ([{"success": None}], None),
    ([{"success": 1}], 1.0),
    ([], None),                                        # no turns
])
def test_env_success(infos, expected):
    ep = view(*[("act", info) for info in infos])
    assert EnvSuccessReward().score(ep) == expected


def test_env_success_key_and_bad_flag():
    ep = view(("go north", {"won": True, "success": False}))
    assert EnvSuccessReward(key="won").score(ep) == 1.0
    with pytest.raises(ValueError, match="not a bool"):
        EnvSuccessReward().score(view(("x", {"success": "yes"})))


# --- format: tags and tool calls -------------------------------------------------------------
@pytest.mark.parametrize("final, expected", [
    ("<think>a</think><answer>b</answer>", 1.0),
    ("Sure. <think>a</think>\nso <answer>b</answer>  \n", 1.0),      # text before/between is free
    ("<answer>b</answer><think>a</think>", 0.0),                    # wrong order
    ("<think>a</think><answer>b</answer> Thanks!", 0.0),            # text after the answer
    ("<think>a<answer>b</answer></think>", 0.0),                    # answer opens inside think
    ("<think>a</think><think>b</think><answer>c</answer>", 0.0),    # think twice
    ("<think>a</think><answer>b", 0.0),                             # answer never closed
    ("<think>a</think>", 0.0),                                      # no answer tag
    ("<think>ü 🙂</think><answer>日本</answer>", 1.0),               # unicode content
])
def test_tags_final_turn(final, expected):
    # Only the final turn is judged by default: the first turn breaks every rule.
    assert TagsReward().score(view("<answer>x</answer> junk <think>", final)) == expected


def test_tags_text_after_and_per_turn():
    assert TagsReward(allow_text_after=True).score(
        view("<think>a</think><answer>b</answer> Thanks!")) == 1.0
    turns = ["<think>a</think> <calc>1</calc>",   # follows (text after is fine mid-episode)
             "no think",                          # does not follow
             "<think>b</think><answer>2</answer>"]  # final: text after </think> is not allowed
    assert TagsReward(tags=["think"], per_turn=True).score(view(*turns)) == pytest.approx(1 / 3)
    assert TagsReward(tags=["think"], per_turn=True, allow_text_after=True).score(
        view(*turns)) == pytest.approx(2 / 3)
    assert TagsReward(tags=["answer"]).score(view("<answer>2</answer>")) == 1.0
    assert TagsReward().score(view()) is None


@pytest.mark.parametrize("call, problem", [
    ('{"name": "search", "arguments": {"query": "Orthwick", "top_k": 3}}', None),
    ('{"name": "search", "arguments": {"query": "x", "top_k": 2.0}}', None),  # 2.0 is an integer
    ('{"name": "search", "arguments": {"query": "x", "lang": "en"}}', None),  # extras allowed here
    ('{"name": "calc", "arguments": {"expression": "1", "precision": 4, "vars": [1, 2.5]}}', None),
    ('{"name": "search", "arguments": {"top_k": 3}}', "arguments: missing required argument 'query'"),
    ('{"name": "search", "arguments": {"query": 3}}', "arguments.query: expected string, got int"),
    ('{"name": "search", "arguments": {"query": "x", "top_k": true}}',
     "arguments.top_k: expected integer, got bool"),
    ('{"name": "calc", "arguments": {"expression": "1", "unit": "m"}}',
     "arguments: unknown argument 'unit'"),
    ('{"name": "calc", "arguments": {"expression": "1", "precision": 3}}',
     "arguments.precision: 3 is not one of [2, 4]"),
    ('{"name": "calc", "arguments": {"expression": "1", "vars": [1, "2"]}}',
     "arguments.vars[1]: expected number, got str"),
    ('{"name": "browse", "arguments": {}}', "unknown tool 'browse'"),
    ('{"name": ["search"]}', "unknown tool ['search']"),
    ('{"arguments": {"query": "x"}}', "unknown tool None"),
    ('{"name": "search", "arguments": ["x"]}', "arguments must be a JSON object, got list"),
    ('["search", {"query": "x"}]', "a call must be a JSON object"),
    ("{'name': 'search'}", "not JSON: JSONDecodeError"),
    ("[" * 100_000, "not JSON: RecursionError"),
])
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
    assert reward.count(f"{ok}<tool_call>") == (1, 2)        # a dangling opening is a bad call
    assert reward.count(f"{ok}</tool_call>") == (1, 2)       # so is a stray closing
    assert reward.count("<tool_call>{\"name\": \"calc\"}") == (0, 1)
    assert reward.score(view("<answer>5</answer>")) is None  # no call at all: not applicable
    assert reward.score(view()) is None
    custom = ToolCallFormatReward(tools=TOOLS, tag="call")
    assert custom.score(view(ok.replace("tool_call", "call"))) == 1.0


# --- process: valid tool call, gold evidence, repeated query, step cost ----------------------
# Scores that tell the three cases apart: valid call, error (invalid action / tool error), no call.
DISTINCT = {"valid": 1.0, "error": -1.0, "no_call": 0.25}


@pytest.mark.parametrize("turns, expected", [
    # Tool-v0: "tool" names the tool called; "tool_error" its failure kind.
    ([("<python>print(1)</python>", {"invalid_action": False, "tool": "python",
                                     "tool_error": None, "tool_calls": 1}),
      ("<python>1/0</python>", {"invalid_action": False, "tool": "python",
                                "tool_error": "exit", "tool_calls": 2}),
      ("hmm", {"invalid_action": True, "tool": None, "tool_error": None, "tool_calls": 2}),
      ("<answer>1</answer> <calc>2</calc>", {"invalid_action": False, "tool": None,
                                             "tool_error": None, "success": True, "tool_calls": 2})],
     [1.0, -1.0, -1.0, 0.25]),
    # Calculator-v0: no "tool" key; a call shows as the "tool_calls" counter growing.
    ([("<calc>2+3</calc>", {"invalid_action": False, "tool_error": None, "tool_calls": 1}),
      ("<calc>1/0</calc>", {"invalid_action": False, "tool_error": "division by zero",
                            "tool_calls": 2}),
      ("<answer>5</answer>", {"invalid_action": False, "success": True, "tool_calls": 2})],
     [1.0, -1.0, 0.25]),
    # Search-v0: cumulative "queries"; a search adds one.
    ([("<search>a</search>", {"invalid_action": False, "success": False, "queries": ["a"]}),
      ("no tag", {"invalid_action": True, "success": False, "queries": ["a"]}),
      ("<search>b</search>", {"invalid_action": False, "success": False, "queries": ["a", "b"]}),
      ("<answer>x</answer>", {"invalid_action": False, "success": True, "queries": ["a", "b"]})],
     [1.0, -1.0, 1.0, 0.25]),
    # TextWorld-v0 ("command") and Web-v0 ("action"): an accepted env action counts as a call.
    ([("go north", {"command": "go north", "invalid_action": False}),
      ("quit", {"command": None, "invalid_action": True})], [1.0, -1.0]),
    ([("click(3)", {"action": [{"kind": "click", "ref": 3}], "invalid_action": False}),
      ("click(99)", {"action": [{"kind": "click", "ref": 99}], "invalid_action": True,
                     "error": "no element [99] on the page"})], [1.0, -1.0]),
    # An env that reports nothing: a complete tool tag in the action is a call.
    (['<tool_call>{"name": "f"}</tool_call>', "plain text", "<search>unclosed"],
     [1.0, 0.25, 0.25]),
])
def test_valid_tool_call(turns, expected):
    assert ValidToolCallReward(**DISTINCT).score(view(*turns)) == expected


def test_valid_tool_call_defaults_and_no_turns():
    ep = view(("<calc>1</calc>", {"tool_calls": 1}), ("<answer>1</answer>", {"tool_calls": 1}))
    assert ValidToolCallReward().score(ep) == [1.0, 0.0]
    assert ValidToolCallReward(tool_tags=["act"]).score(view("<act>x</act>", "<calc>1</calc>")) \
        == [1.0, 0.0]
    assert ValidToolCallReward().score(view()) is None


def search_turns() -> list[tuple[str, dict]]:
    """A Search-v0 episode: queries and retrieved ids are cumulative, one entry per search."""
    r1, r2, r3 = ["d1", "d2", "d3"], ["d2", "d4", "d5"], ["d7", "d1", "d9"]
    return [
        ("<search>Founder of Zolvane Works</search>",
         {"queries": ["Founder of Zolvane Works"], "retrieved_ids": [r1]}),
        ("<search>founder of the zolvane works?</search>",
         {"queries": ["Founder of Zolvane Works", "founder of the zolvane works?"],
          "retrieved_ids": [r1, r2]}),
        ("I should search.", {"invalid_action": True, "queries": ["Founder of Zolvane Works",
                                                                 "founder of the zolvane works?"],
                              "retrieved_ids": [r1, r2]}),
        ("<search>Orthwick population</search>",
         {"queries": ["Founder of Zolvane Works", "founder of the zolvane works?",
                      "Orthwick population"], "retrieved_ids": [r1, r2, r3]}),
        ("<answer>48,200</answer>",
         {"success": True, "queries": ["Founder of Zolvane Works", "founder of the zolvane works?",
                                       "Orthwick population"], "retrieved_ids": [r1, r2, r3]}),
    ]


def test_gold_evidence():
    ep = view(*search_turns(), answer="48200", gold_doc_ids=["d2", "d7"])
    # turn 0 finds d2 (new gold); turn 1 finds d2 again (not new); turn 2 does not search;
    # turn 3 finds d7 (new gold); turn 4 answers.
    assert GoldEvidenceReward().score(ep) == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert GoldEvidenceReward(hit=0.5).score(ep) == [0.5, 0.0, 0.0, 0.5, 0.0]
    assert GoldEvidenceReward(gold_key="evidence").score(
        view(*search_turns(), evidence="d4")) == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert GoldEvidenceReward().score(view(*search_turns())) is None           # no gold ids
    assert GoldEvidenceReward().score(view(*search_turns(), gold_doc_ids=[])) is None
    assert GoldEvidenceReward().score(view(gold_doc_ids=["d2"])) is None       # no turns
    assert GoldEvidenceReward().score(view("<search>x</search>", gold_doc_ids=["d2"])) == [0.0]


def test_repeated_query():
    # Turn 1 repeats turn 0's query once normalised ("founder of zolvane works");
    # turn 2 searched nothing; turn 3 is new; turn 4 answers.
    assert RepeatedQueryReward().score(view(*search_turns())) == [0.0, -1.0, 0.0, 0.0, 0.0]
    assert RepeatedQueryReward(penalty=-0.5).score(view(*search_turns()))[1] == -0.5
    # Without "queries" in info, the action's first <search> is the query. "???" normalises to
    # nothing and is compared as written; so a second "???" is a repeat, "!!" is not.
    actions = ["<search>A B</search>", "<search> a  b </search>", "<search>???</search>",
               "<search>???</search>", "<search>!!</search>", "<search>   </search>", "a b"]
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
    return EpisodeView.from_dict({"task": task, "messages": [], "turns": turns,
                                  "termination": "terminated"})


def test_on_a_real_calculator_episode():
    from rlagent.envs.calculator import CalculatorEnv
    task = {"id": "c1", "env": "rlagent/Calculator-v0", "prompt": "37 * 14 + 5?", "answer": 523}
    ep = play(CalculatorEnv(max_turns=5), task,
              ["<calc>37 * 14</calc>", "<calc>1 / 0</calc>", "oops", "<answer>523</answer>"])
    assert ValidToolCallReward(**DISTINCT).score(ep) == [1.0, -1.0, -1.0, 0.25]
    assert EnvSuccessReward().score(ep) == 1.0 and NumericMatchReward().score(ep) == 1.0
    assert FormatReward().score(ep) == 0.75                  # "oops" is the one bad turn of 4


def test_on_a_real_search_episode():
    from rlagent.envs.search import BM25Retriever, Passage, SearchEnv
    corpus = [Passage("d1", "Zolvane Works", "Zolvane Works was founded by Ada Orthwick."),
              Passage("d2", "Ada Orthwick", "Ada Orthwick was born in Tesvaria."),
              Passage("d3", "Tesvaria", "Tesvaria is a country with a population of 48,200."),
              Passage("d4", "Kelm", "Kelm is a river.")]
    env = SearchEnv(top_k=1, retriever=BM25Retriever(corpus, cache=False))
    task = {"id": "s1", "env": "rlagent/Search-v0", "prompt": "Where was the founder born?",
            "golden_answers": ["Tesvaria"], "gold_doc_ids": ["d1", "d2"]}
    ep = play(env, task, ["<search>Zolvane Works founder</search>",
                          "<search>zolvane works, founder!</search>", "no tag",
                          "<search>Ada Orthwick born</search>", "<answer>Tesvaria.</answer>"])
    assert [t.info["retrieved_ids"][-1] for t in ep.turns[:2]] == [("d1",), ("d1",)]
    assert GoldEvidenceReward().score(ep) == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert RepeatedQueryReward().score(ep) == [0.0, -1.0, 0.0, 0.0, 0.0]
    assert ValidToolCallReward(**DISTINCT).score(ep) == [1.0, 1.0, -1.0, 1.0, 0.25]
    assert ExactMatchReward().score(ep) == 1.0 == EnvSuccessReward().score(ep)
    assert F1Reward().score(ep) == 1.0


# --- no plugin raises on whatever text the policy writes -------------------------------------
FRAGMENTS = ["<answer>", "</answer>", "<think>", "</think>", "<tool_call>", "</tool_call>",
             "<search>", "</search>", "<calc>", "</calc>", '{"name": "search", "arguments": ',
             '{"name": "calc"}', '{"query": ', "}", "{", "[", "]", '"', "1e999", "NaN", "null",
             "\x00", "\ud800", "é", "🙂", " ", "\n", "the", "a"]
TEXT = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", errors="replace")),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=40).map("".join),
    st.builds(lambda f, n: f * n, st.sampled_from(FRAGMENTS), st.integers(1_000, 60_000)),
    st.builds(lambda n: "<tool_call>" + "[" * n + "</tool_call>", st.integers(1, 50_000)),
)
# Infos of the shapes the built-in envs report (and none at all).
INFOS = st.sampled_from([{}, search_turns()[1][1], search_turns()[3][1],
                         {"invalid_action": True, "tool": None, "tool_error": None},
                         {"tool": "python", "tool_error": "timeout", "tool_calls": 3},
                         {"tool_calls": 1, "tool_error": None}, {"success": False},
                         {"command": "look", "invalid_action": False, "success": True},
                         {"action": [], "invalid_action": True, "error": "bad"}])
ANSWERS = st.one_of(st.none(), st.text(max_size=30), st.integers(),
                    st.lists(st.text(max_size=10), max_size=3))


@pytest.mark.parametrize("name", sorted(BUILTINS))
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(turns=st.lists(st.tuples(TEXT, INFOS), max_size=4), answer=ANSWERS,
       golds=st.one_of(st.none(), st.lists(st.text(max_size=10), max_size=3)),
       gold_ids=st.lists(st.sampled_from(["d1", "d2", "d7", ""]), max_size=2))
def test_no_plugin_raises_on_arbitrary_text(name, turns, answer, golds, gold_ids):
    cls, needed = BUILTINS[name]
    ep = view(*turns, answer=answer, golden_answers=golds, gold_doc_ids=gold_ids)
    value = _check_value(cls(**needed).score(ep))        # the service's own check: finite floats
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
