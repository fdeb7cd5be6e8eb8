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
import re
import shutil

import yaml
from support.viewer_run import IMG, SCRIPT, template

from rlagent.cli import main
from rlagent.viewer import render


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
    assert [html.unescape(t[4]).replace("↵\n", "\n") for t in tokens] == [
        tok.decode([i]) for i in ep["token_ids"]
    ]
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
    step_two.write_text(
        '{"task": {"id": "calc\n'
        + json.dumps({"task": {"id": "bad"}, "turns": "x"})
        + "\n"
        + step_two.read_text()
    )
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


def test_a_steps_timeline_draws_each_episodes_phases():
    from rlagent.viewer_timeline import timeline

    def turn(g0, g1, e0, e1):
        return {"generate_start": g0, "generate_end": g1, "env_start": e0, "env_end": e1}

    episodes = [
        {"turns": [turn(0.0, 0.5, 0.5, 5.5), turn(5.5, 6.0, 6.0, 6.1)]},  # a slow env step
        {"turns": [turn(0.0, 0.4, 0.4, 0.5)]},
        {"turns": [{"action": "<b>", "generate_start": 0.0}]},  # no times: no bars
    ]
    svg = timeline(episodes)
    assert svg.count('class="gen"') == 3 and svg.count('class="env"') == 3
    assert "episode 0, turn 1: env 0.50-5.50 s (5.00 s)" in svg
    assert ">0s<" in svg and ">6s<" in svg and "6.1 s" in svg  # axis and total
    widths = [float(w) for w in re.findall(r'class="env" x="[\d.]+" y="\d+" width="([\d.]+)"', svg)]
    assert widths[0] > 40 * widths[1]  # 5 s against 0.1 s, to scale
    assert timeline([{"turns": [{"action": "x"}]}]) == ""  # rollouts from before turn times


def test_the_page_shows_the_timeline_of_steps_with_turn_times(run, tmp_path):
    run_dir, steps, _ = run
    timed = tmp_path / "runs" / "timed"
    shutil.copytree(run_dir, timed)
    shutil.copytree(run_dir.parent / "model", tmp_path / "runs" / "model")
    episodes = [dict(ep, turns=[dict(t) for t in ep["turns"]]) for ep in steps[2]]
    for ep in episodes:
        for i, t in enumerate(ep["turns"]):
            t.update(generate_start=i, generate_end=i + 0.5, env_start=i + 0.5, env_end=i + 1.0)
    (timed / "rollouts" / "step_00002.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    text = render(timed, out=timed / "view.html").read_text()
    assert text.count('<details class="timeline">') == 1  # step 2 only: step 1 has no times
