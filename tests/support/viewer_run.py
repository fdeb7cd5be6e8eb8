"""The viewer tests' fixtures: a run directory with rollouts of every kind the viewer shows,
and its page."""

import json
import random
import re
import shutil

import pytest

from rlagent.envs.calculator import CalculatorEnv, generate_task
from rlagent.viewer import render
from support import REPO

SCRIPT = "<script>alert(1)</script>"


IMG = '<img src=x onerror="document.title=\'pwned\'">'


PIECE = re.compile(r"\s*(?:<[^<>\s]+>|\d+|\w+|[^\w\s])|\s+")


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


DOCS = REPO / "docs"


def pieces(text: str) -> list[str]:
    return PIECE.findall(text)


def token_ids(tok, toks: list[str]) -> list[int]:
    """Ids of ``toks``; pieces the tiny tokenizer lacks are added to it first."""
    from tokenizers import AddedToken

    vocab = tok.get_vocab()
    tok.add_tokens([AddedToken(t, normalized=False) for t in dict.fromkeys(toks) if t not in vocab])
    return tok.convert_tokens_to_ids(toks)


def play(task: dict, replies: list[str]) -> list[dict]:
    """Turns of the real Calculator env answering ``replies`` (as ``Turn`` dicts)."""
    env = CalculatorEnv(max_turns=3)
    first, _ = env.reset(seed=0, options={"task": task})
    turns = []
    for reply in replies:
        obs, reward, terminated, truncated, info = env.step(reply)
        done = terminated or truncated
        turns.append(
            {
                "action": reply,
                "observation": None if done else obs,
                "env_reward": reward,
                "info": info,
                "span": None,
                "finish_reason": "stop",
                "_end": "terminated" if terminated else "truncated" if truncated else "",
            }
        )
        if done:
            break
    return [{"role": "user", "content": first}], turns


def episode(
    tok,
    task: dict,
    replies: list[str],
    group: int,
    version: int,
    rewards: dict,
    errors: dict | None = None,
    seed: int = 0,
) -> dict:
    """An ``Episode.to_dict()`` line: token ids as the engine would hold them (token-in/out)."""
    rng = random.Random(seed)
    messages, turns = play(task, replies)
    ids = token_ids(tok, ["<|user|>", *pieces(messages[0]["content"]), "</s>", "<|assistant|>"])
    prompt_len = len(ids)
    mask, logprobs = [0] * len(ids), [0.0] * len(ids)
    for turn in turns:
        generated = token_ids(tok, [*pieces(turn["action"]), "</s>"])
        turn["span"] = [len(ids), len(ids) + len(generated)]
        ids += generated
        mask += [1] * len(generated)
        logprobs += [round(-rng.expovariate(1.5), 4) for _ in generated]
        messages.append({"role": "assistant", "content": turn["action"]})
        if turn["observation"] is not None:
            messages.append({"role": "user", "content": turn["observation"]})
            seen = token_ids(tok, ["<|user|>", *pieces(turn["observation"]), "</s>", "<|assistant|>"])
            ids += seen
            mask += [0] * len(seen)
            logprobs += [0.0] * len(seen)
    termination = turns[-1].pop("_end") or "max_turns"
    for turn in turns:
        turn.pop("_end", None)
    errors = errors or {}
    weights = {"outcome": 1.0, "format": 0.2, "valid_tool_call": 0.1}
    total = (
        None
        if set(errors) & set(weights)
        else round(
            sum(
                w * (sum(v) / len(v) if isinstance(v, list) else v)
                for name, w in weights.items()
                if (v := rewards.get(name)) is not None
            ),
            4,
        )
    )
    return {
        "task": task,
        "group": group,
        "messages": messages,
        "token_ids": ids,
        "loss_mask": mask,
        "logprobs": logprobs,
        "prompt_len": prompt_len,
        "turns": turns,
        "termination": termination,
        "policy_version": version,
        "rewards": rewards,
        "reward_errors": errors,
        "reward_latency": {n: 0.0004 * (i + 1) for i, n in enumerate(rewards)},
        "reward": total,
    }


def tasks(seed: int, n: int, difficulty: int = 2) -> list[dict]:
    rng = random.Random(seed)
    return [generate_task(rng, difficulty) for _ in range(n)]


def step_one(tok) -> list[dict]:
    t0, t1 = tasks(1, 2)
    a0, a1 = t0["answer"], t1["answer"]
    return [
        episode(
            tok,
            t0,
            [f"<calc>{t0['expression']}</calc>", f"<answer>{a0}</answer>"],
            0,
            0,
            {"outcome": 1.0, "format": 1.0, "valid_tool_call": [1.0, 0.0]},
            seed=1,
        ),
        episode(
            tok,
            t0,
            [f"I think it is {a0 + 7}. <answer>{a0 + 7}</answer>"],
            0,
            0,
            {"outcome": 0.0, "format": 1.0, "valid_tool_call": [0.0]},
            seed=2,
        ),
        episode(
            tok,
            t1,
            [f"Let me check. {SCRIPT}", IMG, f"<answer>{a1}</answer>"],
            1,
            0,
            {"outcome": 1.0, "valid_tool_call": [0.0, 0.0, 0.0]},
            {"format": "TimeoutError: timed out after 30.0 s"},
            seed=3,
        ),
        episode(
            tok,
            t1,
            [f"<calc>{t1['expression']}</calc>", f"<answer>{a1 - 1}</answer>"],
            1,
            0,
            {"outcome": 0.0, "format": 1.0, "valid_tool_call": [1.0, 0.0]},
            seed=4,
        ),
    ]


def step_two(tok) -> list[dict]:
    t2, t3 = tasks(2, 2, difficulty=3)
    a2, a3 = t2["answer"], t3["answer"]
    return [
        episode(
            tok,
            t2,
            [f"<calc>{t2['expression']}</calc>", f"<answer>{a2}</answer>"],
            0,
            1,
            {"outcome": 1.0, "format": 1.0, "valid_tool_call": [1.0, 0.0]},
            seed=5,
        ),
        episode(
            tok,
            t2,
            [f"<answer>{a2}</answer>"],
            0,
            1,
            {"outcome": 1.0, "format": 1.0, "valid_tool_call": [0.0]},
            seed=6,
        ),
        episode(
            tok,
            t3,
            [f"<calc>{t3['expression']}</calc>", f"<answer>{a3}</answer>"],
            1,
            1,
            {"outcome": 1.0, "format": 1.0, "valid_tool_call": [1.0, 0.0]},
            seed=7,
        ),
        episode(
            tok,
            t3,
            [f"The answer is {a3 + 2}", f"<answer>{a3 + 2}</answer>"],
            1,
            1,
            {"outcome": 0.0, "format": 0.5, "valid_tool_call": [0.0, 0.0]},
            seed=8,
        ),
    ]


def metrics_line(step: int, episodes: list[dict]) -> dict:
    scored = [e["reward"] for e in episodes if e["reward"] is not None]
    line = {
        "step": step,
        "loss/policy": 0.012 * (-1) ** step,
        "kl": 1e-5 * step,
        "policy_version": float(step),
        "reward/mean": sum(scored) / len(scored),
        "reward/invalid": float(len(episodes) - len(scored)),
    }
    for name in ("outcome", "format", "valid_tool_call"):
        vals = [v for e in episodes if (v := e["rewards"].get(name)) is not None]
        vals = [sum(v) / len(v) if isinstance(v, list) else v for v in vals]
        line[f"reward/{name}/mean"] = sum(vals) / len(vals)
        line[f"reward/{name}/errors"] = float(sum(name in e["reward_errors"] for e in episodes))
    line["episode/turns_mean"] = sum(len(e["turns"]) for e in episodes) / len(episodes)
    return line


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory):
    """A run directory ``runs/calc-demo`` and its two steps of episodes."""
    from transformers import AutoTokenizer

    run_dir = tmp_path_factory.mktemp("runs") / "calc-demo"
    model = run_dir.parent / "model"
    shutil.copytree(tiny_model, model)
    tok = AutoTokenizer.from_pretrained(model)
    steps = {1: step_one(tok), 2: step_two(tok)}
    assert all(tok.unk_token_id not in e["token_ids"] for eps in steps.values() for e in eps)
    tok.save_pretrained(model)
    (run_dir / "rollouts").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    from rlagent.config import Config, RewardSpec, save_config

    cfg = Config()
    cfg.run.name, cfg.model.path, cfg.env.id = "calc-demo", str(model), "rlagent/Calculator-v0"
    cfg.algo.group_size, cfg.algo.tasks_per_step = 2, 2
    cfg.rewards.components = [
        RewardSpec("outcome", 1.0),
        RewardSpec("format", 0.2),
        RewardSpec("valid_tool_call", 0.1),
    ]
    save_config(cfg, run_dir / "config.yaml")
    with open(run_dir / "metrics.jsonl", "w") as f:
        for step, eps in steps.items():
            f.write(json.dumps(metrics_line(step, eps)) + "\n")
            (run_dir / "rollouts" / f"step_{step:05d}.jsonl").write_text(
                "".join(json.dumps(e) + "\n" for e in eps)
            )
    return run_dir, steps, tok


@pytest.fixture(scope="module")
def page(run) -> str:
    run_dir, _, _ = run
    return render(run_dir).read_text()


def template(page: str, step: int, index: int) -> str:
    m = re.search(rf'<script type="text/x-rlagent-episode" id="ep-{step}-{index}">(.*?)</script>', page, re.S)
    assert m, f"no details for episode {index} of step {step}"
    return m.group(1)
