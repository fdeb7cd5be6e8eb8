"""A third-party reward plugin package, end to end: install it, see it listed, train two
steps with it by name, find its component in metrics.jsonl and W&B, score the saved
rollouts offline. Its fault plugins (raise, hang, garbage) are counted, never scored 0."""

import glob
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO
from support.runs import tiny_run_config

from rlagent.trainer import train

FIXTURE = REPO / "tests" / "fixtures" / "reward_plugin"
RLAGENT = [sys.executable, "-m", "rlagent.cli"]


@pytest.fixture(scope="module")
def plugin_package(tmp_path_factory):
    src = tmp_path_factory.mktemp("plugin") / "reward_plugin"
    shutil.copytree(FIXTURE, src)  # building writes into the source tree: keep the repo clean
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", str(src)], check=True)
    yield
    subprocess.run([*pip, "uninstall", "-y", "rlagent-example-reward"], check=True)


@pytest.mark.slow
def test_installed_plugin_is_listed_trained_logged_and_scored(
    plugin_package, tiny_model, ray_cluster, tmp_path
):
    listing = subprocess.run([*RLAGENT, "rewards"], capture_output=True, text=True, check=True).stdout
    line = next(l for l in listing.splitlines() if l.startswith("example_brevity"))
    assert "format" in line and "rlagent-example-reward" in line
    assert "shorter final replies score higher" in line

    cfg = tiny_run_config(
        tiny_model,
        tmp_path,
        "run.steps=2",
        "rewards.timeout_s=1",
        "tracking.wandb_mode=offline",
        "rewards.components=[{name: env_reward, weight: 1.0},"
        " {name: example_brevity, weight: 0.1, kwargs: {max_chars: 20}},"
        " {name: example_raises, weight: 0}, {name: example_hangs, weight: 0},"
        " {name: example_garbage, weight: 0}]",
        name="plugin",
    )
    run_dir = train(cfg)
    with open(run_dir / "metrics.jsonl") as f:
        steps = [json.loads(l) for l in f]
    assert len(steps) == 2  # the run went on
    for s in steps:
        assert 0 < s["reward/example_brevity/mean"] <= 1 and s["reward/example_brevity/errors"] == 0
        assert s["reward/example_brevity/latency_s"] < 1
        for fault in ("raises", "hangs", "garbage"):  # every episode's call failed, counted
            assert s[f"reward/example_{fault}/errors"] == 4, (fault, s)
            mean = s[f"reward/example_{fault}/mean"]  # no score: NaN, written as null
            assert mean is None or math.isnan(mean)
        assert s["reward/invalid"] == 0  # log-only failures do not void the reward
    with open(run_dir / "rollouts" / "step_00002.jsonl") as f:
        episodes = [json.loads(l) for l in f]
    for e in episodes:
        assert "timed out" in e["reward_errors"]["example_hangs"]
        assert "not a float" in e["reward_errors"]["example_garbage"]
        assert e["reward"] == pytest.approx(
            e["rewards"]["env_reward"] + 0.1 * e["rewards"]["example_brevity"]
        )

    from support.wandb_records import history

    [wandb_file] = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    rows = [r for r in history(Path(wandb_file)) if "reward/example_brevity/mean" in r]
    assert [r["reward/example_brevity/mean"] for r in rows] == pytest.approx(
        [s["reward/example_brevity/mean"] for s in steps]
    )

    out = subprocess.run(
        [
            *RLAGENT,
            "rewards",
            "score",
            "example_brevity",
            str(run_dir / "rollouts" / "step_00002.jsonl"),
            "--kwargs",
            "{max_chars: 20}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    offline = [json.loads(l)["score"] for l in out.stdout.splitlines()]
    assert offline == pytest.approx([e["rewards"]["example_brevity"] for e in episodes])
    assert "4 episodes" in out.stderr and "0 errors" in out.stderr

    bad = subprocess.run(
        [*RLAGENT, "rewards", "score", "example_raises", str(run_dir / "rollouts" / "step_00002.jsonl")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "4 errors" in bad.stderr
    assert all("RuntimeError" in json.loads(l)["error"] for l in bad.stdout.splitlines())
