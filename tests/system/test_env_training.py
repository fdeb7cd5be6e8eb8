"""Each built-in env trains through the real trainer (Ray, vLLM, DeepSpeed) for two steps:
the loop runs end to end, the env's observations reach the model as text it can read, and the
model's valid actions reach the env, which carries them out.

The model is a tiny Llama on the real SmolLM2 tokenizer and ChatML template (so no
observation turns into unknown tokens), briefly fitted to reply one fixed valid action of the
env (tests/support/tiny.py: ``make_smol_action_model``). A random model would almost never write one,
and the env would only ever see nonsense.
"""

import importlib
import json

import pytest
from support import REPO
from transformers import AutoTokenizer

from rlagent.config import load_config
from rlagent.trainer import train


def _tool_call_ran(turn):  # Calculator-v0 (also inside GymText-v0): the expression was evaluated
    i = turn["info"]
    return (
        not i["invalid_action"]
        and "tool_error" in i
        and i["tool_error"] is None
        and turn["observation"] in (None, "<result>5</result>")
    )


# Per env: its config, the one reply the model is fitted to write, the module constant its first
# observation starts with, whether that observation holds the task's prompt, and whether a turn's
# action was parsed as valid and carried out (read from the turn's info and observation; the
# observation is None when the episode ended at that turn).
ENVS = {
    "search": dict(
        overrides=["env.id=rlagent/Search-v0", "env.kwargs={max_turns: 2}"],
        action="<search>university</search>",
        instructions="rlagent.envs.search.env:INSTRUCTIONS",
        prompt_in_obs=True,
        valid=lambda t: (
            not t["info"]["invalid_action"]
            and t["info"]["queries"][-1:] == ["university"]
            and len(t["info"]["retrieved_ids"][-1]) > 0
            and (t["observation"] is None or t["observation"].startswith("<information>"))
        ),
    ),
    "tool": dict(
        overrides=["env.id=rlagent/Tool-v0", "env.kwargs={max_turns: 2}"],
        action="<python>print(7)</python>",
        instructions="rlagent.envs.tool:INSTRUCTIONS",
        prompt_in_obs=True,
        valid=lambda t: (
            not t["info"]["invalid_action"]
            and t["info"]["tool"] == "python"
            and t["info"]["tool_error"] is None
            and t["observation"] in (None, "<output>\n7\n</output>")
        ),
    ),
    "web": dict(
        overrides=["env.id=rlagent/Web-v0", "data.difficulties=[1]"],
        # ref 4 is on every tier-1 page (the task's area); a click on it is always possible
        action="click(4)",
        instructions="rlagent.envs.web.env:INSTRUCTIONS",
        prompt_in_obs=False,
        valid=lambda t: (
            not t["info"]["invalid_action"]
            and t["info"]["error"] is None
            and t["info"]["action"] == [{"kind": "click", "ref": 4}]
            and not (t["observation"] or "").startswith("invalid action")
        ),
    ),
    "textworld": dict(
        overrides=[
            "env.id=rlagent/TextWorld-v0",
            "env.kwargs={games_dir: tests/fixtures/textworld, max_steps: 2}",
            "data.path=tests/fixtures/textworld/tasks.jsonl",
        ],
        action="look",
        instructions="rlagent.envs.textworld_env:INSTRUCTIONS",
        prompt_in_obs=True,
        # the game took it as a move (the env passes nonsense on to the game's own parser)
        valid=lambda t: (
            not t["info"]["invalid_action"]
            and t["info"]["command"] == "look"
            and "look" in t["info"]["admissible_commands"]
            and t["info"]["moves"] >= 1
            and "-=" in (t["observation"] or "-=")
        ),
    ),
    "calculator": dict(
        overrides=["env.id=rlagent/Calculator-v0"],
        action="<calc>2+3</calc>",
        instructions="rlagent.envs.calculator:INSTRUCTIONS",
        prompt_in_obs=True,
        valid=_tool_call_ran,
    ),
    # a game from the TextArena hub (tasks are seeds): one guess, then the game ends at its
    # turn limit and scores how close the last guess was, its reward the env's last step's
    "textarena": dict(
        overrides=["env.id=textarena/GuessTheNumber-v0", "env.kwargs={max_turns: 1}"],
        action="[10]",
        instructions="You are Player 0. You are playing Guess The Number.",
        prompt_in_obs=False,
        valid=lambda t: (
            not t["info"]["invalid_move"]
            and t["observation"]
            in ("[GAME] The target number is higher.", "[GAME] The target number is lower.")
        ),
        rewarded=True,
    ),
    # an OpenEnv env (a say-the-word server made with OpenEnv's classes and create_app,
    # tests/support/openenv_echo.py) run locally by the adapter and played through OpenEnv's
    # client: the word said ends the episode with reward 1
    "openenv": dict(
        overrides=[
            "env.id=openenv/tests.support.openenv_echo",
            "env.kwargs={reset_kwargs: {word: hello}, sessions_per_server: 4}",
        ],
        action="hello",
        instructions="Say the word",  # ": hello" follows (no colon here: _constant reads module:NAME)
        prompt_in_obs=False,
        valid=lambda t: not t["info"]["invalid_action"] and t["observation"] in (None, "Correct: hello."),
        rewarded=True,
    ),
    # a verifiers taskset (tests/support/verifiers_envs/vf_say_word.py, found through
    # search_path): one reply, scored by its rewards (exact word 1.0, at most three words 0.5)
    "verifiers": dict(
        overrides=[
            "env.id=verifiers/vf-say-word",
            f"env.kwargs={{search_path: {REPO / 'tests/support/verifiers_envs'}}}",
        ],
        action="hello",
        instructions="Answer with a single word.",
        prompt_in_obs=True,
        valid=lambda t: t["info"]["reward/brief"] == 1.0 and t["info"]["stop_condition"] == "agent_completed",
        rewarded=True,
    ),
    # any registered Gymnasium text env, through the generic wrapper (tasks are seeds)
    "gymtext": dict(
        overrides=["env.id=rlagent/GymText-v0", "env.kwargs={env_id: rlagent/Calculator-v0}"],
        action="<calc>2+3</calc>",
        instructions="rlagent.envs.calculator:INSTRUCTIONS",
        prompt_in_obs=False,
        valid=_tool_call_ran,
    ),
}


@pytest.fixture(scope="session")
def smol_action_model(tmp_path_factory):
    """``smol_action_model(action) -> path``: a tiny Llama on the real SmolLM2 tokenizer and
    chat template, fitted to reply ``action``; each action is fitted once per session."""
    from support.tiny import make_smol_action_model

    made: dict[str, str] = {}

    def get(action: str) -> str:
        if action not in made:
            path = tmp_path_factory.mktemp("smol-action")
            made[action] = str(make_smol_action_model(path, action))
        return made[action]

    return get


def _constant(name: str) -> str:
    """``module:CONSTANT``'s value, or the text itself."""
    module, colon, attr = name.partition(":")
    if not colon:
        return name
    return getattr(importlib.import_module(module), attr)


@pytest.mark.slow
@pytest.mark.parametrize("env", ENVS)
def test_two_training_steps(smol_action_model, ray_cluster, tmp_path, env):
    spec = ENVS[env]
    model = smol_action_model(spec["action"])
    cfg = load_config(
        None,
        [
            "run.name=envs",
            f"run.output_dir={tmp_path}",
            "run.steps=2",
            f"model.path={model}",
            # the longest action is 10 tokens, then the end-of-turn token
            "rollout.max_new_tokens=12",
            "rollout.max_episode_tokens=1024",
            "rollout.max_turns=2",
            "algo.group_size=2",
            "algo.tasks_per_step=2",
            "learner.lr=0.01",
            "rewards.components=[{name: env_reward, weight: 1.0}]",
            "tracking.wandb_mode=disabled",
            *spec["overrides"],
        ],
    )
    run_dir = train(cfg)
    with open(run_dir / "metrics.jsonl") as f:
        steps = [json.loads(line) for line in f]
    assert [s["step"] for s in steps] == [1, 2]
    episodes = {}
    for step in (1, 2):
        with open(run_dir / "rollouts" / f"step_{step:05d}.jsonl") as f:
            episodes[step] = [json.loads(line) for line in f]
        assert len(episodes[step]) == 4
    for e in episodes[2]:
        assert e["termination"] not in ("env_error", "env_timeout"), e["turns"]
        assert e["turns"] and e["reward"] is not None

    if spec.get("rewarded"):  # the env's own reward is what training got, and it is not 0
        for e in episodes[2]:
            env_return = sum(t["env_reward"] for t in e["turns"])
            assert e["rewards"]["env_reward"] == pytest.approx(env_return) and env_return > 0, e["turns"]
        assert steps[1]["reward/env_reward/mean"] > 0

    # Valid actions reached the env: at least one turn of the two steps was parsed and done.
    turns = [t for step in (1, 2) for e in episodes[step] for t in e["turns"]]
    valid = [t for t in turns if spec["valid"](t)]
    assert valid, (
        f"no valid action reached {env} in {len(turns)} turns; replies: "
        f"{sorted({t['action'] for t in turns})[:8]}, "
        f"first info: {turns[0]['info']}, observation: {turns[0]['observation']!r:.200}"
    )

    # The env's observations reached the model as text: the first user message is the env's
    # observation, and the ids the engine was given decode back to every observation exactly.
    tok = AutoTokenizer.from_pretrained(model)
    instructions = _constant(spec["instructions"])
    for step in (1, 2):
        for e in episodes[step]:
            first = e["messages"][0]
            assert first["role"] == "user" and first["content"].startswith(instructions), first
            if spec["prompt_in_obs"]:
                assert e["task"]["prompt"] in first["content"], (e["task"], first)
            assert tok.unk_token_id not in e["token_ids"]
            prompt = tok.decode(e["token_ids"][: e["prompt_len"]])
            assert prompt.endswith(
                f"<|im_start|>user\n{first['content']}<|im_end|>\n<|im_start|>assistant\n"
            ), prompt[-300:]
            text = tok.decode(e["token_ids"])
            for m in e["messages"]:
                if m["role"] == "user":
                    assert f"<|im_start|>user\n{m['content']}<|im_end|>" in text, m
    assert (run_dir / "checkpoints" / "final" / "config.json").exists()
