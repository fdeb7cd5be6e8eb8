"""Tracker: what one step leaves in metrics.jsonl and in the W&B offline run (scalars,
histograms, the transcript table), checked by reading the ``.wandb`` file back."""

from __future__ import annotations

import doctest
import glob
import io
import json
import math
from pathlib import Path

import pytest
import wandb
from support.wandb_records import history, table

import rlagent.progress
import rlagent.tracking
from rlagent.config import load_config
from rlagent.progress import Progress, eta_s
from rlagent.records import Episode, Task, Turn
from rlagent.scoring.combine import reward_metrics
from rlagent.tracking import HIST_BINS, TABLE_KEY, Tracker, episode_metrics, make_run_dir, transcript

COMPONENTS = "rewards.components=[{name: format, weight: 0.5}, {name: outcome}]"


def episode(
    task: str,
    turns: list[tuple[str, str | None]],
    generated: int,
    reward: float | None,
    rewards: dict | None = None,
    errors: dict | None = None,
    finish: str = "stop",
    termination: str = "terminated",
    version: int = 0,
) -> Episode:
    """An episode of ``turns`` (action, observation after it); ``generated`` policy tokens."""
    prompt = f"Solve {task}."
    ts = [Turn(a, o, 0.0, {}, (2, 2 + generated), finish) for a, o in turns]
    return Episode(
        task=Task(id=task, env="rlagent/Calculator-v0", prompt="raw " + prompt),
        group=0,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}],
        token_ids=[1] * (2 + generated),
        loss_mask=[0, 0] + [1] * generated,
        logprobs=[0.0, 0.0] + [-0.5] * generated,
        prompt_len=2,
        turns=ts,
        termination=termination,
        policy_version=version,
        rewards=rewards or {},
        reward_errors=errors or {},
        reward=reward,
    )


def step1() -> list[Episode]:
    failed = episode("e2", [], 0, None, termination="env_error")
    failed.turns = [Turn("", None, 0.0, {"error": "RuntimeError: no browser"}, (0, 0), "")]
    failed.messages = []
    return [
        episode(
            "e0",
            [("<calc>2+3</calc>", "5"), ("<answer>5</answer>", None)],
            7,
            1.0,
            {"format": 1.0, "outcome": 1.0},
        ),
        episode(
            "e1",
            [("<calc>2+", None)],
            16,
            0.0,
            {"format": 0.0, "outcome": 0.0},
            finish="length",
            termination="max_turns",
        ),
        failed,
        episode("e3", [("<answer>4</answer>", None)], 5, 0.5, {"format": 1.0, "outcome": 0.0}),
        episode(
            "e4",
            [("<answer>x</answer>", None)],
            3,
            None,
            {"format": 1.0},
            errors={"outcome": "RuntimeError: boom"},
        ),
        episode(
            "e5", [("<calc>1</calc>", "1"), ("4", None)], 9, 0.25, {"format": [1.0, None], "outcome": 0.0}
        ),
    ]


def step2() -> list[Episode]:  # fewer episodes than table rows; format never applies
    return [
        episode(f"f{i}", [(f"<answer>{i}</answer>", None)], 4 + i, float(i), {"outcome": float(i)}, version=1)
        for i in range(3)
    ]


def step_metrics(cfg, episodes) -> dict[str, float]:
    """The trainer's scalars that come from episodes, plus learner-like ones."""
    return {
        **reward_metrics(episodes, cfg.rewards.components),
        **episode_metrics(episodes),
        "loss/policy": -0.125,
        "entropy": 1.5,
        "timing/step_s": 2.0,
    }


def run_two_steps(tmp_path, *overrides: str) -> tuple[Path, list[dict], list[dict]]:
    cfg = load_config(
        None, [f"run.output_dir={tmp_path}", "tracking.wandb_mode=offline", COMPONENTS, *overrides]
    )
    run_dir = make_run_dir(cfg)
    tracker = Tracker(cfg, run_dir)
    for step, episodes in ((1, step1()), (2, step2())):
        tracker.log(step, step_metrics(cfg, episodes), episodes)
    tracker.close()
    # wandb 0.31's finish() can return before the service has written the .wandb file (seen
    # on a loaded machine); teardown waits for the service process to exit.
    wandb.teardown()
    [wandb_file] = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    lines = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    return Path(wandb_file), history(Path(wandb_file)), lines


def test_wandb_gets_scalars_histograms_and_transcripts(tmp_path):
    wandb_file, rows, lines = run_two_steps(tmp_path)
    assert [r["_step"] for r in rows] == [1, 2] and [m["step"] for m in lines] == [1, 2]

    # Scalars: exactly the metrics.jsonl keys; NaN there is null here.
    media = ("reward/hist/", "episode/generated_tokens_hist/", TABLE_KEY + "/")
    for row, line in zip(rows, lines):
        scalars = {k: v for k, v in row.items() if not k.startswith(("_", *media))}
        assert scalars.keys() == line.keys() - {"step"}
        for k, v in scalars.items():
            assert v == line[k] or (line[k] is None and math.isnan(v)), k
    assert lines[1]["reward/format/mean"] is None  # the NaN case is exercised

    # Histograms, 32 bins over [min, max]: rewards 1, 0, 0.5, 0.25 (None left out).
    r1 = rows[0]
    assert r1["reward/hist/_type"] == "histogram"
    assert r1["reward/hist/bins"] == pytest.approx([i / HIST_BINS for i in range(HIST_BINS + 1)])
    assert r1["reward/hist/values"] == [1 if i in (0, 8, 16, 31) else 0 for i in range(HIST_BINS)]
    # generated tokens 7, 16, 0, 5, 3, 9: bins of width 0.5 over [0, 16]
    assert r1["episode/generated_tokens_hist/bins"] == pytest.approx([i / 2 for i in range(33)])
    assert r1["episode/generated_tokens_hist/values"] == [
        1 if i in (0, 6, 10, 14, 18, 31) else 0 for i in range(HIST_BINS)
    ]
    assert sum(rows[1]["reward/hist/values"]) == 3
    assert sum(rows[1]["episode/generated_tokens_hist/values"]) == 3

    # Transcript table, step 1: by reward 1.0 (e0), 0.5, 0.25 (e5), 0.0 (e1), None (e2, e4);
    # 4 evenly spaced of those 6: positions 0, 2, 3, 5.
    base = {"step": 1, "termination": "terminated", "policy_version": 0}
    assert table(wandb_file, r1, TABLE_KEY) == [
        {
            **base,
            "task": "e0",
            "prompt": "Solve e0.",
            "reward": 1.0,
            "transcript": "[1] assistant:\n<calc>2+3</calc>\n\n[1] env:\n5\n\n"
            "[2] assistant:\n<answer>5</answer>",
            "reward/format": 1.0,
            "reward/outcome": 1.0,
        },
        {
            **base,
            "task": "e5",
            "prompt": "Solve e5.",
            "reward": 0.25,
            "transcript": "[1] assistant:\n<calc>1</calc>\n\n[1] env:\n1\n\n[2] assistant:\n4",
            "reward/format": "per turn: 1, n/a",
            "reward/outcome": 0.0,
        },
        {
            **base,
            "task": "e1",
            "prompt": "Solve e1.",
            "reward": 0.0,
            "termination": "max_turns",
            "transcript": "[1] assistant (cut at max_new_tokens):\n<calc>2+",
            "reward/format": 0.0,
            "reward/outcome": 0.0,
        },
        {
            **base,
            "task": "e4",
            "prompt": "Solve e4.",
            "reward": None,
            "transcript": "[1] assistant:\n<answer>x</answer>",
            "reward/format": 1.0,
            "reward/outcome": "error: RuntimeError: boom",
        },
    ]
    # step 2: all three, best first; format never scored
    assert [
        (t["step"], t["task"], t["reward"], t["reward/format"], t["policy_version"])
        for t in table(wandb_file, rows[1], TABLE_KEY)
    ] == [(2, "f2", 2.0, None, 1), (2, "f1", 1.0, None, 1), (2, "f0", 0.0, None, 1)]


def test_table_off_keeps_histograms(tmp_path):
    _, rows, _ = run_two_steps(tmp_path, "tracking.table_episodes=0")
    assert not any(k.startswith(TABLE_KEY) for r in rows for k in r)
    assert all(r["reward/hist/_type"] == "histogram" for r in rows)


def test_transcript_of_an_env_failure():
    failed = step1()[2]
    assert transcript(failed) == "[1] env error: RuntimeError: no browser"


def test_docstring_examples():
    result = doctest.testmod(rlagent.tracking)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- terminal progress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def progress(tty: bool = False) -> tuple[Progress, Clock, io.StringIO]:
    clock, out = Clock(), io.StringIO()
    return Progress(5, interval_s=30, stream=out, clock=clock, tty=tty, ticker=False), clock, out


def test_eta_is_the_mean_step_time_times_the_steps_left():
    assert eta_s(5, 0, 0.0) is None
    assert eta_s(5, 2, 22.0) == 33.0  # 11 s a step, 3 left
    assert eta_s(5, 2, 22.0, in_step_s=4.0) == 29.0  # 7 s left of step 3, then 2 steps
    assert eta_s(5, 2, 22.0, in_step_s=60.0) == 22.0  # step 3 is late: the 2 after it
    assert eta_s(5, 5, 50.0) == 0.0
    assert doctest.testmod(rlagent.progress).failed == 0


def test_progress_lines_on_a_pipe_are_rate_limited():
    p, clock, out = progress()
    p.start(1)
    for clock.t in (1.0, 29.0):
        p.tick()
    assert out.getvalue() == ""  # nothing before interval_s
    clock.t = 30.0
    p.tick()
    clock.t = 45.0
    p.episodes(2, 8)  # an update is printed only when due
    clock.t = 60.0
    p.tick()
    clock.t = 61.0
    p.phase("train")
    clock.t = 70.0
    p.step_done("[rlagent] step 1/5  reward 0.500")
    clock.t = 200.0
    p.tick()  # between steps: nothing to report
    assert out.getvalue().splitlines() == [
        "[rlagent] step 1/5  rollout  30s  (run 30s, ETA ?)",
        "[rlagent] step 1/5  rollout 2/8 episodes  1m00s  (run 1m00s, ETA ?)",
        "[rlagent] step 1/5  reward 0.500  (run 1m10s, ETA 4m40s)",  # 70 s a step, 4 left
    ]
    clock.t = 210.0  # step 2 starts after a checkpoint
    p.start(2)
    clock.t = 240.0
    p.tick()
    assert out.getvalue().splitlines()[-1] == (  # mean 70 s: 40 s of step 2 left + 3 steps
        "[rlagent] step 2/5  rollout  30s  (run 4m00s, ETA 4m10s)"
    )
    clock.t = 260.0
    p.step_done("[rlagent] step 2/5")  # (260 - 0) / 2 = 130 s a step, 3 left
    assert out.getvalue().splitlines()[-1] == "[rlagent] step 2/5  (run 4m20s, ETA 6m30s)"


def test_progress_on_a_terminal_redraws_one_line():
    p, clock, out = progress(tty=True)
    p.start(1)
    clock.t = 0.5
    p.tick()  # not yet: one redraw a second
    clock.t = 1.0
    p.episodes(10, 16)
    clock.t = 2.0
    p.phase("sync")
    clock.t = 3.0
    p.step_done("[rlagent] step 1/5")
    first = "[rlagent] step 1/5  rollout 10/16 episodes  1s  (run 1s, ETA ?)"
    second = "[rlagent] step 1/5  sync  0s  (run 2s, ETA ?)"
    last = "[rlagent] step 1/5  (run 3s, ETA 12s)"
    assert out.getvalue() == (
        f"\r{first}\r{second}{' ' * (len(first) - len(second))}\r{last}{' ' * (len(second) - len(last))}\n"
    )
    p.close()
    assert out.getvalue().endswith("\n") and not out.getvalue().endswith("\n\n")


def test_progress_ticker_thread_stops_on_close():
    p = Progress(3, stream=io.StringIO(), tty=False)
    assert p._thread is not None and p._thread.is_alive()
    p.close()
    assert not p._thread.is_alive()


def test_an_explicit_wandb_mode_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert rlagent.tracking.wandb_mode("disabled") == "disabled"
    assert rlagent.tracking.wandb_mode("auto") == "offline"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no ~/.netrc
    assert rlagent.tracking.wandb_mode("auto") == "offline"


def test_training_logs_success_and_the_envs_info_numbers():
    ok = episode("a", [("<answer>5</answer>", None)], 3, 1.2)
    ok.turns[-1].info = {"success": True, "tool_calls": 2, "seen": ["x", "y", "z"], "note": "text"}
    wrong = episode("b", [("<answer>4</answer>", None)], 3, 0.2)
    wrong.turns[-1].info = {"success": False, "tool_calls": 0, "seen": ["x"]}
    failed = episode("c", [], 0, None, termination="env_error")
    failed.turns = [Turn("", None, 0.0, {"error": "boom", "tool_calls": 9}, (0, 0), "")]
    m = episode_metrics([ok, wrong, failed])
    assert (m["success/rate"], m["success/scored"], m["success/unscored"]) == (0.5, 2, 1)
    # the env's failure is neither a success nor counted in the info means
    assert m["info/tool_calls"] == 1.0 and m["info/seen/len"] == 2.0 and m["info/success"] == 0.5
    assert "info/note" not in m and "info/error" not in m
