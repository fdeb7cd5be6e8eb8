"""rlagent/Search-v0: protocol, scripted multi-hop episodes, BM25 cache, user corpora, plugins."""

from __future__ import annotations

import doctest
import json
import os
import random
import re
import subprocess
import sys
import warnings
from typing import ClassVar

import bm25s
import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import rlagent.envs.search.corpus
import rlagent.envs.search.env
import rlagent.envs.search.retrieval
from rlagent.envs.search import BM25Retriever, Passage, SearchEnv
from rlagent.envs.search.corpus import load_corpus, load_qa
from rlagent.envs.search.corpus import main as convert_qa
from rlagent.envs.search.env import INVALID_ACTION
from rlagent.envs.search.world import ATTRIBUTES, RELATIONS, build_world
from rlagent.tasks import load_tasks


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    # Index caches go to a per-session temp dir, never to the user's ~/.cache.
    monkeypatch.setenv("RLAGENT_CACHE", str(tmp_path_factory.getbasetemp() / "rlagent-cache"))


# --- a scripted agent that reads facts out of the observations -------------------------------
# How the world's documents state each fact (one sentence shape per fact).
FACT_PATTERNS = {
    "made_by": r"It was made by (.+?)\.",
    "founded_by": r"Its founder is (.+?)\.",
    "headquartered_in": r"headquartered in (.+?)\.",
    "born_in": r"in the city of (.+?)\.",
    "studied_at": r"studied at (.+?)\.",
    "located_in": r"university located in (.+?)\.",
    "in_country": r"is a city in (.+?),",
    "category": r"is an? (.+?) released",
    "release_year": r"released in (\d+)",
    "industry": r"is an? (.+?) company",
    "founded_year": r"founded in (\d+)",
    "occupation": r"is an? (.+?) born",
    "birth_year": r"born in (\d+)",
    "established_year": r"established in (\d+)",
    "population": r"population of ([\d,]+)",
    "currency": r"currency is the (\w+)",
    "language": r"language is (\w+)",
    "independence_year": r"independent in (\d+)",
}
RESULT_LINE = re.compile(r"^\[\d+\] \(id: ([^)]*)\) (.*?): (.*)$", re.MULTILINE)


def read_fact(observation: str, entity: str, fact: str) -> str:
    """The value of ``fact`` in the result whose title is ``entity``."""
    texts = [text for _, title, text in RESULT_LINE.findall(observation) if title == entity]
    assert texts, f"{entity!r} not among the results:\n{observation}"
    return re.search(FACT_PATTERNS[fact], texts[0]).group(1)


def play_perfectly(env: SearchEnv, task: dict):
    """Search the start entity, read the next entity's name, search it, ... then answer."""
    env.reset(options={"task": task})
    entity = task["start_entity"]
    for fact in task["hops"]:
        obs, reward, terminated, truncated, info = env.step(f"Looking up.<search>{entity}</search>")
        assert (reward, terminated, truncated, info["invalid_action"]) == (0.0, False, False, False)
        entity = read_fact(obs, entity, fact)
    return env.step(f"I found it. <answer>{entity}</answer>")


def test_fact_patterns_cover_every_fact_of_the_world():
    facts = {f for kind in RELATIONS for f in [*RELATIONS[kind], *ATTRIBUTES[kind]]}
    assert set(FACT_PATTERNS) == facts


@pytest.mark.parametrize("difficulty", SearchEnv.difficulties)
def test_scripted_agent_solves_every_difficulty(difficulty):
    env = SearchEnv()
    rng = random.Random(difficulty)
    for _ in range(15):
        task = SearchEnv.generate_task(rng, difficulty)
        _, reward, terminated, truncated, info = play_perfectly(env, task)
        assert (reward, terminated, truncated) == (1.0, True, False), task
        assert info["success"] is True and info["gold_retrieved"] == 1.0
        assert info["turn"] == difficulty + 1 and len(info["queries"]) == difficulty
        assert all(task["gold_doc_ids"][i] in ids for i, ids in enumerate(info["retrieved_ids"]))


def test_world_kwargs_reach_both_env_and_generator():
    kwargs = {"world_seed": 7, "world_size": 50, "top_k": 2, "unused_by_the_generator": 1}
    task = SearchEnv.generate_task(random.Random(0), 3, **kwargs)
    assert task["world_seed"] == 7 and task["world_size"] == 50
    kwargs.pop("unused_by_the_generator")
    env = gymnasium.make("rlagent/Search-v0", **kwargs).unwrapped
    assert play_perfectly(env, task)[1] == 1.0
    # The same question is unanswerable in another world: its entities do not exist there.
    assert all(e.name != task["start_entity"] for e in build_world(0, 200).by_id.values())


def test_generate_task_is_reproducible_and_well_formed():
    for d in SearchEnv.difficulties:
        a = SearchEnv.generate_task(random.Random(5), d)
        assert a == SearchEnv.generate_task(random.Random(5), d)
        assert a["env"] == "rlagent/Search-v0" and a["difficulty"] == d
        assert len(a["hops"]) == len(a["gold_doc_ids"]) == d
        assert a["golden_answers"] == [a["answer"]] and a["prompt"].endswith("?")
        assert a["start_entity"] in a["prompt"]
    ids = {SearchEnv.generate_task(random.Random(s), 3)["id"] for s in range(40)}
    assert len(ids) > 35
    with pytest.raises(ValueError, match="difficulty must be one of"):
        SearchEnv.generate_task(random.Random(0), 5)


def test_world_is_deterministic_and_names_are_unique():
    a, b = build_world(3, 40).corpus(), build_world(3, 40).__class__(3, 40).corpus()
    assert a == b and 100 < len(a) < 200
    assert len({p.title for p in a}) == len(a) == len({p.id for p in a})
    assert build_world(4, 40).corpus() != a
    world = build_world(3, 40)
    for company in world.by_kind["company"]:  # years agree along relations
        founder = world.by_name[company.facts["founded_by"]]
        assert int(company.facts["founded_year"]) - int(founder.facts["birth_year"]) >= 22
    with pytest.raises(ValueError, match="world_size"):
        SearchEnv(world_size=3)


# --- the Gymnasium contract and the protocol -------------------------------------------------
def test_check_env_passes_without_warnings():
    env = gymnasium.make("rlagent/Search-v0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    assert gymnasium.spec("rlagent/Search-v0").entry_point == "rlagent.envs.search.env:SearchEnv"


@pytest.mark.parametrize(
    "module", [rlagent.envs.search.corpus, rlagent.envs.search.env, rlagent.envs.search.retrieval]
)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def _env_with_task(difficulty=2, **kwargs):
    env = SearchEnv(**kwargs)
    task = SearchEnv.generate_task(random.Random(11), difficulty)
    obs, info = env.reset(seed=0, options={"task": task})
    return env, task, obs, info


def test_reset_shows_instructions_and_question():
    _, task, obs, info = _env_with_task()
    assert obs.startswith("Answer the question. To search the corpus, write <search>query</search>")
    assert obs.endswith(f"\nQuestion: {task['prompt']}")
    assert info == {
        "task_id": task["id"],
        "turn": 0,
        "searches": 0,
        "queries": [],
        "retrieved_ids": [],
        "gold_retrieved": 0.0,
    }


@pytest.mark.parametrize(
    "reply, why",
    [
        ("I think the answer is Orthwick.", INVALID_ACTION),
        ("", INVALID_ACTION),
        ("<search>unclosed", INVALID_ACTION),
        (None, INVALID_ACTION),
        ("<search>  \n </search>", "invalid action: the search query is empty"),
    ],
)
def test_malformed_actions_are_observations_not_exceptions(reply, why):
    env, _, _, _ = _env_with_task()
    obs, reward, terminated, truncated, info = env.step(reply)
    assert obs == why and (reward, terminated, truncated) == (0.0, False, False)
    assert info["invalid_action"] is True and info["success"] is False and info["queries"] == []


@pytest.mark.parametrize(
    "reply, reward",
    [
        ("<answer>no idea</answer>", 0.0),
        ("<answer></answer>", 0.0),
        ("<answer>{}</answer>", 1.0),
        ("<answer>  The {}. </answer>", 1.0),
        ("<answer>{}</answer><search>x</search>", 1.0),
        ("<search>x</search><answer>{}</answer>", 1.0),
    ],
)
def test_final_answer_is_exact_match_after_normalisation(reply, reward):
    env, task, _, _ = _env_with_task()
    obs, r, terminated, truncated, info = env.step(reply.format(task["answer"].upper()))
    assert (obs, r, terminated, truncated) == ("", reward, True, False)
    assert info["success"] is (reward == 1.0) and info["invalid_action"] is False


def test_turn_limit_truncates_and_gold_retrieved_counts_evidence():
    env, task, _, _ = _env_with_task(difficulty=2, max_turns=2)
    _, _, terminated, truncated, info = env.step(f"<search>{task['start_entity']}</search>")
    assert (terminated, truncated) == (False, False) and info["gold_retrieved"] == 0.5
    assert info["queries"] == [task["start_entity"]] and len(info["retrieved_ids"][0]) == 3
    _, reward, terminated, truncated, info = env.step("no tags")
    assert (reward, terminated, truncated, info["turn"]) == (0.0, False, True, 2)
    assert info["success"] is False and info["gold_retrieved"] == 0.5
    with pytest.raises(RuntimeError):
        env.step("<answer>x</answer>")


@pytest.mark.parametrize("top_k, limit", [(1, 100), (3, 200), (5, 300), (5, 2000)])
def test_search_observation_length_is_bounded(top_k, limit):
    corpus = [Passage(f"d{i}", f"Title {i}", "zebra " * (50 + 40 * i)) for i in range(8)]
    env = SearchEnv(top_k=top_k, max_obs_chars=limit, retriever=BM25Retriever(corpus))
    env.reset(options={"task": {"id": "t", "prompt": "zebra?", "golden_answers": ["z"]}})
    obs, *_, info = env.step("<search>zebra</search>")
    assert len(obs) <= limit and obs.startswith("<information>\n[1] (id: ")
    assert obs.endswith("...\n</information>") and obs.count("\n[") == top_k
    assert len(info["retrieved_ids"][0]) == top_k


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"top_k": 0}, "top_k must be an int >= 1"),
        ({"max_turns": "3"}, "max_turns"),
        ({"max_obs_chars": 100}, "max_obs_chars must be an int >= 160"),
        ({"max_obs_chars": 9000}, "must not exceed max_text_length"),
        ({"retriever": "nope"}, "unknown retriever 'nope'"),
        ({"retriever": "no_such_module:X"}, "cannot import 'no_such_module:X'"),
        ({"retriever_kwargs": {"k3": 1.0}}, r"could not be built as BM25Retriever\(corpus, \*\*\{'k3'"),
        ({"world_seed": -1}, "world_seed must be an int >= 0"),
        ({"corpus_path": "/nonexistent/corpus.jsonl"}, "No such file"),
    ],
)
def test_bad_kwargs_fail_with_a_clear_message(kwargs, match):
    with pytest.raises((ValueError, OSError), match=match):
        SearchEnv(**kwargs)


def test_reset_without_task_is_seeded_and_rejects_tasks_without_answers():
    env = SearchEnv()
    assert env.reset(seed=3)[0] == env.reset(seed=3)[0]
    assert len({env.reset(seed=s)[0] for s in range(8)}) > 5
    with pytest.raises(ValueError, match="golden_answers"):
        env.reset(options={"task": {"id": "x", "prompt": "q?"}})


# --- the BM25 index cache ---------------------------------------------------------------------
def test_index_is_cached_on_disk_and_reused(tmp_path, monkeypatch):
    builds = []
    real_index = bm25s.BM25.index
    monkeypatch.setattr(
        bm25s.BM25, "index", lambda self, *a, **k: (builds.append(1), real_index(self, *a, **k))[1]
    )
    corpus = build_world(1, 30).corpus()
    first = BM25Retriever(corpus, cache_dir=tmp_path)
    assert (first.from_cache, len(builds)) == (False, 1)
    assert (first.index_dir / "complete").is_file() and first.index_dir.parent == tmp_path / "bm25"
    second = BM25Retriever(corpus, cache_dir=tmp_path)
    assert (second.from_cache, len(builds)) == (True, 1) and second.index_dir == first.index_dir
    query = corpus[5].title
    assert [p.id for p in second.search(query, 3)] == [p.id for p in first.search(query, 3)]
    assert second.search(query, 3)[0] == corpus[5]
    # Another corpus (here: one passage changed) is another index.
    changed = [*corpus[:-1], Passage(corpus[-1].id, corpus[-1].title, "changed")]
    assert BM25Retriever(changed, cache_dir=tmp_path).index_dir != first.index_dir
    assert len(builds) == 2 and len(list((tmp_path / "bm25").iterdir())) == 2
    BM25Retriever(corpus, cache_dir=tmp_path / "off", cache=False)
    assert len(builds) == 3 and not (tmp_path / "off").exists()


def test_env_index_goes_under_rlagent_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLAGENT_CACHE", str(tmp_path))
    env = SearchEnv(world_seed=12, world_size=20)
    assert env.retriever.index_dir.parent == tmp_path / "bm25"
    # Every env of the process on the same corpus shares one retriever (one index in memory).
    assert SearchEnv(world_seed=12, world_size=20, top_k=2).retriever is env.retriever


def test_bm25_edge_cases():
    r = BM25Retriever([Passage("a", "", "alpha beta"), Passage("b", "Gamma", "beta")], cache=False)
    assert [p.id for p in r.search("gamma", 5)] == ["b"]  # k above corpus size; no zero scores
    assert r.search("the of and", 3) == [] and r.search("unknownword", 3) == []


# --- user corpora in the Search-R1 layout ------------------------------------------------------
def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def search_r1_files(tmp_path):
    corpus = _write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"id": "0", "contents": '"Brimvale"\nBrimvale is a harbour town founded by Odra Fenn.'},
            {"id": "1", "title": "Odra Fenn", "text": "Odra Fenn was a shipwright born in Kelt."},
            {"id": "2", "contents": "A passage without a title line about lighthouses."},
        ],
    )
    qa = _write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {
                "question": "Where was the founder of Brimvale born?",
                "golden_answers": ["Kelt", "Kelt town"],
                "data_source": "custom",
            },
            {"id": "q2", "question": "Who founded Brimvale?", "golden_answers": ["Odra Fenn"]},
        ],
    )
    return corpus, qa


def test_load_search_r1_corpus_and_qa(search_r1_files, tmp_path):
    corpus_path, qa_path = search_r1_files
    assert load_corpus(corpus_path) == [
        Passage("0", "Brimvale", "Brimvale is a harbour town founded by Odra Fenn."),
        Passage("1", "Odra Fenn", "Odra Fenn was a shipwright born in Kelt."),
        Passage("2", "", "A passage without a title line about lighthouses."),
    ]
    t1, t2 = load_qa(qa_path)
    assert t1["prompt"] == "Where was the founder of Brimvale born?" and t1["answer"] == "Kelt"
    assert t1["golden_answers"] == ["Kelt", "Kelt town"] and t1["data_source"] == "custom"
    assert t1["id"].startswith("qa-") and (t2["id"], t2["difficulty"]) == ("q2", 1)
    assert t1["env"] == "rlagent/Search-v0"
    # The converter's output is a task file the trainer loads as data.path.
    out = tmp_path / "tasks.jsonl"
    assert convert_qa([qa_path, str(out)]) == 0
    tasks = load_tasks(out, "rlagent/Search-v0")
    assert [t.id for t in tasks] == [t1["id"], "q2"]
    assert tasks[0].fields["golden_answers"] == ["Kelt", "Kelt town"]
    cli = subprocess.run(
        [sys.executable, "-m", "rlagent.envs.search", qa_path, str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert (cli.returncode, cli.stdout, cli.stderr) == (0, f"wrote 2 tasks to {out}\n", "")


def test_episode_on_a_user_corpus(search_r1_files):
    corpus_path, qa_path = search_r1_files
    env = gymnasium.make("rlagent/Search-v0", corpus_path=corpus_path, qa_path=qa_path, top_k=2).unwrapped
    obs, info = env.reset(options={"task": load_qa(qa_path)[0]})
    obs, *_, info = env.step("<search>who founded Brimvale</search>")
    assert obs.startswith("<information>\n[1] (id: 0) Brimvale: Brimvale is a harbour town")
    assert info["retrieved_ids"] == [["0"]] and info["gold_retrieved"] is None
    obs, *_, info = env.step("<search>Odra Fenn birthplace</search>")
    assert info["retrieved_ids"][1] == ["1", "0"] and "born in Kelt" in obs
    _, reward, terminated, _, info = env.step("<answer>kelt town</answer>")
    assert (reward, terminated, info["success"]) == (1.0, True, True)
    # Without a task, reset draws one from qa_path; generate_task does the same.
    assert env.reset(seed=0)[0].split("Question: ")[1] in {t["prompt"] for t in load_qa(qa_path)}
    drawn = SearchEnv.generate_task(random.Random(0), 3, corpus_path=corpus_path, qa_path=qa_path)
    assert drawn in load_qa(qa_path)
    with pytest.raises(ValueError, match="needs qa_path"):
        SearchEnv.generate_task(random.Random(0), 1, corpus_path=corpus_path)


@pytest.mark.parametrize(
    "line, match",
    [
        ("not json", r"corpus.jsonl:2: not valid JSON"),
        ('["a list"]', r":2: expected a JSON object"),
        ('{"contents": "x"}', r":2: a corpus line needs an 'id'"),
        ('{"id": "a", "title": "t"}', r":2: a corpus line needs 'contents' or 'text'"),
        ('{"id": "0", "contents": "dup"}', r":2: duplicate passage id '0'"),
    ],
)
def test_bad_corpus_line_names_file_and_line(tmp_path, line, match):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"id": "0", "contents": "ok"}\n' + line + "\n")
    with pytest.raises(ValueError, match=match):
        load_corpus(path)


def test_bad_qa_line_names_file_and_line(tmp_path):
    path = _write_jsonl(
        tmp_path / "qa.jsonl",
        [{"question": "q?", "golden_answers": ["a"]}, {"question": "q2?", "golden_answers": []}],
    )
    with pytest.raises(ValueError, match=r"qa.jsonl:2: a QA line needs 'golden_answers'"):
        load_qa(path)


# --- plugging in another retriever --------------------------------------------------------------
class KeywordRetriever:
    """Passages whose title contains the query, in corpus order (a stand-in for a service)."""

    calls: ClassVar[list[tuple[str, int]]] = []

    def __init__(self, corpus, suffix=""):
        self.corpus, self.suffix = corpus, suffix

    def search(self, query, k):
        KeywordRetriever.calls.append((query, k))
        hits = [p for p in self.corpus if query.lower() in p.title.lower()]
        return [Passage(p.id, p.title, p.text + self.suffix) for p in hits[:k]]


@pytest.mark.parametrize("spec", ["unit.test_search_env:KeywordRetriever", KeywordRetriever])
def test_custom_retriever_by_import_path_or_class(spec):
    env = SearchEnv(retriever=spec, retriever_kwargs={"suffix": " [custom]"}, top_k=2)
    assert isinstance(env.retriever, KeywordRetriever)
    env.reset(seed=0)
    KeywordRetriever.calls.clear()
    obs, *_, info = env.step("<search>Labs</search>")
    assert KeywordRetriever.calls == [("Labs", 2)]
    assert obs.count(" [custom]") == 2 and len(info["retrieved_ids"][0]) == 2
    assert env.step("<search>zzzz</search>")[0] == "<information>\nno results\n</information>"


def test_custom_retriever_instance_and_a_bad_one():
    instance = KeywordRetriever([Passage("x1", "Only", "The only passage.")])
    env = SearchEnv(retriever=instance)
    env.reset(options={"task": {"id": "t", "prompt": "q?", "answer": "a"}})
    assert "(id: x1) Only: The only passage." in env.step("<search>only</search>")[0]
    with pytest.raises(ValueError, match="without a search"):
        SearchEnv(retriever="collections:Counter")
