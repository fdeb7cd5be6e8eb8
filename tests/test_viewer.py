"""``rlagent view``: the page built from a hand-written run directory, read as markup and in
headless Chromium.

The run holds two steps of Calculator-v0 episodes played against the real env with scripted
replies (one multi-turn, one with an errored reward plugin, one whose reply is a script tag).
Its model is the tiny test model, whose tokenizer is given the transcripts' words so the
token strip reads like a real one.
"""
import html
import json
import math
import os
import random
import re
import shutil
from pathlib import Path

import pytest
import yaml

from rlagent.cli import main
from rlagent.envs.calculator import CalculatorEnv, generate_task
from rlagent.viewer import render

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="document.title=\'pwned\'">'
PIECE = re.compile(r"\s*(?:<[^<>\s]+>|\d+|\w+|[^\w\s])|\s+")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DOCS = Path(__file__).resolve().parent.parent / "docs"


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
        turns.append({"action": reply, "observation": None if done else obs, "env_reward": reward,
                      "info": info, "span": None, "finish_reason": "stop",
                      "_end": "terminated" if terminated else "truncated" if truncated else ""})
        if done:
            break
    return [{"role": "user", "content": first}], turns


def episode(tok, task: dict, replies: list[str], group: int, version: int, rewards: dict,
            errors: dict | None = None, seed: int = 0) -> dict:
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
            seen = token_ids(
                tok, ["<|user|>", *pieces(turn["observation"]), "</s>", "<|assistant|>"])
            ids += seen
            mask += [0] * len(seen)
            logprobs += [0.0] * len(seen)
    termination = turns[-1].pop("_end") or "max_turns"
    for turn in turns:
        turn.pop("_end", None)
    errors = errors or {}
    weights = {"outcome": 1.0, "format": 0.2, "valid_tool_call": 0.1}
    total = None if set(errors) & set(weights) else round(sum(
        w * (sum(v) / len(v) if isinstance(v, list) else v)
        for name, w in weights.items() if (v := rewards.get(name)) is not None), 4)
    return {"task": task, "group": group, "messages": messages, "token_ids": ids, "loss_mask": mask,
            "logprobs": logprobs, "prompt_len": prompt_len, "turns": turns,
            "termination": termination, "policy_version": version, "rewards": rewards,
            "reward_errors": errors, "reward_latency": {n: 0.0004 * (i + 1) for i, n in enumerate(rewards)},
            "reward": total}


def tasks(seed: int, n: int, difficulty: int = 2) -> list[dict]:
    rng = random.Random(seed)
    return [generate_task(rng, difficulty) for _ in range(n)]


def step_one(tok) -> list[dict]:
    t0, t1 = tasks(1, 2)
    a0, a1 = t0["answer"], t1["answer"]
    return [
        episode(tok, t0, [f"<calc>{t0['expression']}</calc>", f"<answer>{a0}</answer>"], 0, 0,
                {"outcome": 1.0, "format": 1.0, "valid_tool_call": [1.0, 0.0]}, seed=1),
        episode(tok, t0, [f"I think it is {a0 + 7}. <answer>{a0 + 7}</answer>"], 0, 0,
                {"outcome": 0.0, "format": 1.0, "valid_tool_call": [0.0]}, seed=2),
        episode(tok, t1, [f"Let me check. {SCRIPT}", IMG, f"<answer>{a1}</answer>"], 1, 0,
                {"outcome": 1.0, "valid_tool_call": [0.0, 0.0, 0.0]},
                {"format": "TimeoutError: timed out after 30.0 s"}, seed=3),
        episode(tok, t1, [f"<calc>{t1['expression']}</calc>", f"<answer>{a1 - 1}</answer>"], 1, 0,
                {"outcome": 0.0, "format": 1.0, "valid_tool_call": [1.0, 0.0]}, seed=4),
    ]


def step_two(tok) -> list[dict]:
    t2, t3 = tasks(2, 2, difficulty=3)
    a2, a3 = t2["answer"], t3["answer"]
    return [
        episode(tok, t2, [f"<calc>{t2['expression']}</calc>", f"<answer>{a2}</answer>"], 0, 1,
                {"outcome": 1.0, "format": 1.0, "valid_tool_call": [1.0, 0.0]}, seed=5),
        episode(tok, t2, [f"<answer>{a2}</answer>"], 0, 1,
                {"outcome": 1.0, "format": 1.0, "valid_tool_call": [0.0]}, seed=6),
        episode(tok, t3, [f"<calc>{t3['expression']}</calc>", f"<answer>{a3}</answer>"], 1, 1,
                {"outcome": 1.0, "format": 1.0, "valid_tool_call": [1.0, 0.0]}, seed=7),
        episode(tok, t3, [f"The answer is {a3 + 2}", f"<answer>{a3 + 2}</answer>"], 1, 1,
                {"outcome": 0.0, "format": 0.5, "valid_tool_call": [0.0, 0.0]}, seed=8),
    ]


def metrics_line(step: int, episodes: list[dict]) -> dict:
    scored = [e["reward"] for e in episodes if e["reward"] is not None]
    line = {"step": step, "loss/policy": 0.012 * (-1) ** step, "kl": 1e-5 * step,
            "policy_version": float(step), "reward/mean": sum(scored) / len(scored),
            "reward/invalid": float(len(episodes) - len(scored))}
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
    cfg.rewards.components = [RewardSpec("outcome", 1.0), RewardSpec("format", 0.2),
                              RewardSpec("valid_tool_call", 0.1)]
    save_config(cfg, run_dir / "config.yaml")
    with open(run_dir / "metrics.jsonl", "w") as f:
        for step, eps in steps.items():
            f.write(json.dumps(metrics_line(step, eps)) + "\n")
            (run_dir / "rollouts" / f"step_{step:05d}.jsonl").write_text(
                "".join(json.dumps(e) + "\n" for e in eps))
    return run_dir, steps, tok


@pytest.fixture(scope="module")
def page(run) -> str:
    run_dir, _, _ = run
    return render(run_dir).read_text()


def template(page: str, step: int, index: int) -> str:
    m = re.search(rf'<script type="text/x-rlagent-episode" id="ep-{step}-{index}">(.*?)</script>',
                  page, re.S)
    assert m, f"no details for episode {index} of step {step}"
    return m.group(1)


def test_rewards_components_and_errors_are_shown(run, page):
    _, steps, _ = run
    ep = steps[1][0]
    row = re.search(r'<details class="ep" data-i="0".*?</summary>', page, re.S).group(0)
    assert f'data-reward="{ep["reward"]}"' in row and ep["task"]["id"] in row
    assert '<span class="chip">outcome 1</span>' in row
    assert '<span class="chip">valid_tool_call [1, 0]</span>' in row
    assert "terminated · v0 · 2 turns" in row
    errored = re.search(r'<details class="ep" data-i="2".*?</summary>', page, re.S).group(0)
    assert 'data-reward=""' in errored and '<span class="r none">none</span>' in errored
    assert '<span class="chip err">format error</span>' in errored
    detail = template(page, 1, 2)
    assert '<td class="err">TimeoutError: timed out after 30.0 s</td>' in detail
    assert "none (a weighted component failed)" in detail
    assert "<dt>policy version</dt><dd>0</dd>" in detail and "<dt>termination</dt><dd>terminated" in detail
    # every turn's action and observation, the env's real answers included
    multi = template(page, 1, 0)
    assert f"&lt;calc&gt;{html.escape(ep['task']['expression'])}&lt;/calc&gt;" in multi
    assert f"&lt;result&gt;{ep['task']['answer']}&lt;/result&gt;" in multi
    assert "reward/outcome/mean" in page and "reward/format/errors" in page


def test_model_output_is_escaped(page):
    assert SCRIPT not in page and "<img" not in page and "alert(1)</" not in page
    assert html.escape(SCRIPT) in template(page, 1, 2)
    assert html.escape(IMG) in template(page, 1, 2)
    # The only script elements: one inert template per episode and the page's own code.
    tags = re.findall(r"<script[^>]*>", page)
    assert len(tags) == 9 and tags[-1] == "<script>"
    assert all(t.startswith('<script type="text/x-rlagent-episode" id="ep-') for t in tags[:-1])
    for step, index in [(s, i) for s in (1, 2) for i in range(4)]:
        assert "</script" not in template(page, step, index).lower()


def test_trained_tokens_are_marked_at_the_loss_mask(run, page):
    _, steps, tok = run
    ep = steps[1][0]
    strip = re.search(r'<div class="toks">(.*?)</div>', template(page, 1, 0), re.S).group(1)
    tokens = re.findall(r'<(b|i)( class="s(\d)")? title="id (\d+)[^"]*">(.*?)</\1>', strip, re.S)
    assert [1 if kind == "b" else 0 for kind, *_ in tokens] == ep["loss_mask"]
    assert [int(t[3]) for t in tokens] == ep["token_ids"]
    assert [html.unescape(t[4]).replace("↵\n", "\n") for t in tokens] == \
        [tok.decode([i]) for i in ep["token_ids"]]
    assert sum(ep["loss_mask"]) > 0 and ep["loss_mask"].count(0) > 0
    for (kind, _, shade, _, _), lp in zip(tokens, ep["logprobs"]):
        if kind == "b":  # shaded by sampling probability: s0 p >= 0.9 ... s4 p < 0.05
            p = math.exp(lp)
            assert int(shade) == sum(p < f for f in (0.9, 0.5, 0.2, 0.05))
    assert "&lt;|assistant|&gt;" in strip and "&lt;calc&gt;" in strip


def test_without_a_tokenizer_ids_are_shown_and_bad_lines_are_noted(run, tmp_path, capsys):
    run_dir, steps, _ = run
    other = tmp_path / "no-tokenizer"
    shutil.copytree(run_dir, other, ignore=shutil.ignore_patterns("view.html"))
    (tmp_path / "empty-model").mkdir()
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    cfg["model"]["path"] = str(tmp_path / "empty-model")
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    step_two = other / "rollouts" / "step_00002.jsonl"  # a truncated line and a malformed episode
    step_two.write_text('{"task": {"id": "calc\n' + json.dumps({"task": {"id": "bad"}, "turns": "x"})
                        + "\n" + step_two.read_text())
    page = render(other, out=tmp_path / "v.html", max_episodes=3).read_text()
    assert "could not be loaded" in page and "token ids are shown instead" in page
    first = steps[1][0]["token_ids"][0]
    assert f'<i title="id {first}">[{first}]</i>' in template(page, 1, 0)
    assert "Showing the first 3 of 4 episodes" in page and 'id="ep-1-3"' not in page
    assert "showing token ids" in capsys.readouterr().err
    assert "1 line(s) of the rollout file were not episodes" in page
    assert "episode 0 could not be shown: AttributeError" in page


def test_cli_writes_the_page_and_prints_its_path(run, tmp_path, capsys):
    run_dir, _, _ = run
    out = tmp_path / "page.html"
    assert main(["view", str(run_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text().startswith("<!DOCTYPE html>")


@pytest.fixture
def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1100", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        assert driver.service.process is None or driver.service.process.poll() is not None


def test_page_works_in_chromium(run, page, chromium, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    run_dir, steps, _ = run
    driver = chromium
    driver.get((run_dir / "view.html").as_uri())

    def visible() -> list[str]:
        return [r.get_attribute("data-task") for r in driver.find_elements(By.CSS_SELECTOR, "details.ep")
                if r.is_displayed()]

    # Opens on the last step; the step selector switches the visible episodes.
    assert visible() == [e["task"]["id"] for e in steps[2]]
    Select(driver.find_element(By.ID, "step")).select_by_value("1")
    assert visible() == [e["task"]["id"] for e in steps[1]]
    driver.find_element(By.ID, "task").send_keys(steps[1][2]["task"]["id"])
    assert visible() == [steps[1][2]["task"]["id"]] * 2
    Select(driver.find_element(By.ID, "rfilter")).select_by_value("none")
    rows = [r for r in driver.find_elements(By.CSS_SELECTOR, "details.ep") if r.is_displayed()]
    assert [r.get_attribute("data-i") for r in rows] == ["2"]

    # The untrusted reply renders as text and runs nothing.
    scripts_before = len(driver.find_elements(By.TAG_NAME, "script"))
    rows[0].find_element(By.TAG_NAME, "summary").click()
    body = rows[0].find_element(By.CSS_SELECTOR, ".body")
    assert SCRIPT in body.text and IMG in body.text
    assert len(driver.find_elements(By.TAG_NAME, "script")) == scripts_before
    assert not body.find_elements(By.TAG_NAME, "img")
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    assert "pwned" not in driver.title
    marked = [int(b.get_attribute("title").split()[1])
              for b in body.find_elements(By.CSS_SELECTOR, ".toks b")]
    ep = steps[1][2]
    assert marked == [i for i, m in zip(ep["token_ids"], ep["loss_mask"]) if m]

    # Sorting by reward, then the screenshot: step 1, the multi-turn success opened.
    driver.find_element(By.ID, "task").clear()
    driver.execute_script("document.getElementById('task').dispatchEvent(new Event('input'))")
    Select(driver.find_element(By.ID, "rfilter")).select_by_value("all")
    Select(driver.find_element(By.ID, "sort")).select_by_value("desc")
    order = [r.get_attribute("data-i") for r in driver.find_elements(By.CSS_SELECTOR, "details.ep")
             if r.is_displayed()]
    assert order == ["0", "3", "1", "2"]  # 1.25 > 0.25 > 0.2 > none
    rows[0].find_element(By.TAG_NAME, "summary").click()  # close the script episode again
    driver.find_element(By.CSS_SELECTOR, 'section[data-step="1"] details[data-i="0"] summary').click()
    shot = tmp_path / "viewer.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    if os.environ.get("RLAGENT_UPDATE_DOCS") == "1":
        shutil.copy(shot, DOCS / "viewer.png")
        print(f"copied to {DOCS / 'viewer.png'}")
