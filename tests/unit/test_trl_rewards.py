"""TRL-style reward functions as plugins (``trl:package.module:function``): the reward service
and ``rlagent rewards score`` give the numbers the function gives when called by hand with
the arguments TRL would pass."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, trl_rewards

from rlagent.config import ConfigError, RewardSpec
from rlagent.episode_view import EpisodeView
from rlagent.records import Episode, Task, Turn
from rlagent.scoring.service import RewardService

SYSTEM = "Use <calc> then <answer>."


def _episode(question: str, answer, replies: list[str], results: list[str]) -> Episode:
    """A calculator episode: ``replies`` by the assistant, each but the last answered by the env."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    turns = []
    for i, reply in enumerate(replies):
        obs = results[i] if i < len(results) else None
        messages.append({"role": "assistant", "content": reply})
        if obs is not None:
            messages.append({"role": "user", "content": obs})
        turns.append(Turn(reply, obs, 0.0, {}, (0, 0), "stop"))
    task = Task(id=question, env="rlagent/Calculator-v0", prompt=question, answer=answer, fields={"level": 2})
    return Episode(
        task=task,
        group=0,
        messages=messages,
        token_ids=[],
        loss_mask=[],
        logprobs=[],
        prompt_len=0,
        turns=turns,
        termination="terminated",
        policy_version=0,
    )


EPISODES = [
    _episode("What is 12 * 3?", 36, ["<calc>12 * 3</calc>", "<answer>36</answer>"], ["<result>36</result>"]),
    _episode("What is 7 - 9?", -2, ["<answer>-3</answer>"], []),
    _episode("What is 2 + 2?", None, ["<calc>2+2</calc>", "<calc>4</calc>", "I think 4"], ["4", "4"]),
]

SPECS = [
    RewardSpec("trl:support.trl_rewards:accuracy", 1.0),
    RewardSpec("trl:support.trl_rewards:tool_then_answer", 0.5, {"completions": "conversational"}),
    RewardSpec("trl:support.trl_rewards:shorter_than_prompt", 0.25, {"scale": 2.0, "kind": "format"}),
]


def by_hand(e: Episode) -> dict[str, float | None]:
    """Each function called directly, with TRL's arguments for a batch of one written out."""
    conversation = [dict(m) for m in e.messages[2:]]  # everything after system + question
    return {
        SPECS[0].name: trl_rewards.accuracy([e.turns[-1].action], answer=[e.task.answer], level=[2])[0],
        SPECS[1].name: trl_rewards.tool_then_answer(
            [conversation], prompts=[[dict(m) for m in e.messages[:2]]]
        )[0],
        SPECS[2].name: trl_rewards.shorter_than_prompt([e.task.prompt], [e.turns[-1].action], scale=2.0)[0],
    }


def test_the_service_scores_as_the_functions_do_by_hand():
    svc = RewardService(SPECS, timeout_s=5)
    for e in EPISODES:
        e.take(svc.score(EpisodeView.of(e)))
        want = by_hand(e)
        assert e.rewards == want and e.reward_errors == {}
        weighted = [s.weight * want[s.name] for s in SPECS if want[s.name] is not None]
        assert e.reward == pytest.approx(sum(weighted))
    # worked out: right with a tool (1 + 0.5 x (1/2 + 1)), wrong without, no answer known
    assert [e.rewards[SPECS[0].name] for e in EPISODES] == [1.0, 0.0, None]
    assert [e.rewards[SPECS[1].name] for e in EPISODES] == [1.5, 1.0, 2 / 3]
    assert svc.plugins[SPECS[2].name].kind == "format"


def test_offline_scoring_of_saved_episodes_matches(tmp_path):
    saved = tmp_path / "step_00001.jsonl"
    saved.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in EPISODES))
    out = subprocess.run(
        [str(Path(sys.executable).parent / "rlagent"), "rewards", "score", SPECS[0].name, str(saved)],
        cwd=REPO / "tests",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    scores = [json.loads(line).get("score", "?") for line in out.stdout.splitlines() if line.startswith("{")]
    assert scores == [by_hand(e)[SPECS[0].name] for e in EPISODES]


def test_bad_functions_are_named():
    with pytest.raises(ConfigError, match=r"trl:support.trl_rewards:nope\].*cannot load"):
        RewardService([RewardSpec("trl:support.trl_rewards:nope", 1.0)], timeout_s=1)
    with pytest.raises(ConfigError, match="completions: one of"):
        RewardService(
            [RewardSpec("trl:support.trl_rewards:accuracy", 1.0, {"completions": "chat"})], timeout_s=1
        )
    svc = RewardService([RewardSpec("trl:support.trl_rewards:wrong_length", 1.0)], timeout_s=1)
    e = EPISODES[0]
    e.take(svc.score(EpisodeView.of(e)))
    assert (
        e.reward is None and "a list of one score" in e.reward_errors["trl:support.trl_rewards:wrong_length"]
    )
