"""The command line: listings, and a bad config stopped before anything starts."""

import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

from rlagent.records import Episode, Task
from rlagent.schedule import check_episodes

RLAGENT = str(Path(sys.executable).parent / "rlagent")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([RLAGENT, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_bad_config_key_is_named_and_nothing_starts(tmp_path):
    out = _run("train", "launch/configs/quickstart.yaml", "algo.groupsize=8", f"run.output_dir={tmp_path}")
    assert out.returncode == 2
    assert "config error: algo.groupsize: unknown key" in out.stderr
    assert "group_size" in out.stderr  # the allowed keys are listed
    assert not any(tmp_path.iterdir()), "a run directory was created for a bad config"


def test_a_missing_config_file_is_one_line():
    out = _run("train", "nonexist.yaml")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "rlagent: config error: nonexist.yaml: cannot read the config file (No such file or directory)"
    ]


def test_listings():
    rewards = _run("rewards")
    assert rewards.returncode == 0
    kinds = {line.split()[0]: line.split()[1] for line in rewards.stdout.splitlines()}
    assert kinds["format"] == "format" and kinds["outcome"] == "outcome"
    assert kinds["env_reward"] == "outcome"
    envs = _run("envs")
    assert "rlagent/Calculator-v0" in envs.stdout and "rlagent/Echo-v0" in envs.stdout


def _failed(termination: str, error: str) -> Episode:
    return Episode.failed(Task(id="t", env="rlagent/Echo-v0", prompt="a"), 0, termination, error)


def test_a_step_where_every_episode_failed_in_the_env_stops_the_run():
    with pytest.raises(RuntimeError, match="TypeError: unexpected keyword 'max_turns'"):
        check_episodes(
            [
                _failed("env_error", "TypeError: unexpected keyword 'max_turns'"),
                _failed("env_timeout", "TimeoutError: ..."),
            ]
        )
    ok = _failed("terminated", "")
    check_episodes([_failed("env_error", "boom"), ok])  # one failure among others: counted, goes on


def test_unknown_env_id_is_a_config_error(tmp_path):
    out = _run(
        "train", "launch/configs/quickstart.yaml", "env.id=rlagent/Nope-v0", f"run.output_dir={tmp_path}"
    )
    assert out.returncode == 2 and "config error: env.id:" in out.stderr
    assert not any(tmp_path.iterdir())


def test_verbose_goes_anywhere_and_a_misspelt_key_gets_the_closest_one():
    out = _run("train", "launch/configs/quickstart.yaml", "--verbose", "learner.lrr=1")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("rlagent: config error: learner.lrr: unknown key (did you mean learner.lr?")


def test_a_missing_task_file_is_one_line(tmp_path):
    missing = tmp_path / "no-tasks.jsonl"
    out = _run(
        "train", "launch/configs/quickstart.yaml", f"data.path={missing}", f"run.output_dir={tmp_path}"
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [f"rlagent: {missing}: No such file or directory"]
