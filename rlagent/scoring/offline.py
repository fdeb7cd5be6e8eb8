"""Score saved episodes with one reward plugin, without training (``rlagent rewards score``).

Prints one JSON line per episode (file, line, task id, score or error) and a summary on
stderr, so a plugin author can develop against real rollouts.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import sys
import time
from pathlib import Path

import yaml

from rlagent.config import ConfigError, RewardSpec
from rlagent.episode_view import EpisodeView
from rlagent.scoring.combine import scalar
from rlagent.scoring.service import check_value, discover, load_plugin


def score_file(name: str, paths: list[str], kwargs_text: str, timeout_s: float) -> int:
    kwargs = yaml.safe_load(kwargs_text) or {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"--kwargs: expected a mapping, got {kwargs_text!r}")
    # a trl:module:function imports from the working directory, as in training
    plugin = load_plugin(RewardSpec(name=name, weight=1.0, kwargs=kwargs), discover(), os.getcwd())
    pool = cf.ThreadPoolExecutor(max_workers=1)
    scores, errors, none, seconds = [], 0, 0, 0.0
    for path in paths:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    view = EpisodeView.from_dict(json.loads(line))
                except (ValueError, KeyError, TypeError) as err:
                    raise SystemExit(f"{path}:{n}: not a saved episode: {err}") from err
                out = {"file": Path(path).name, "line": n, "task": view.task.id}
                t0 = time.perf_counter()
                try:
                    value = check_value(pool.submit(plugin.score, view).result(timeout=timeout_s))
                    out["score"] = value
                    if scalar(value) is None:
                        none += 1
                    else:
                        scores.append(scalar(value))
                except cf.TimeoutError:
                    out["error"] = f"timed out after {timeout_s} s"
                    errors += 1
                    pool = cf.ThreadPoolExecutor(max_workers=1)  # the hung call keeps its thread
                except Exception as err:  # report and go on: the point is to find these
                    out["error"] = f"{type(err).__name__}: {err}"
                    errors += 1
                seconds += time.perf_counter() - t0
                print(json.dumps(out), flush=True)
    total = len(scores) + none + errors
    mean = sum(scores) / len(scores) if scores else float("nan")
    print(
        f"[rlagent] {name}: {total} episodes, mean {mean:.4f} over {len(scores)} scored, "
        f"{none} not applicable, {errors} errors, {seconds / max(total, 1) * 1000:.1f} ms per call",
        file=sys.stderr,
    )
    return 1 if errors else 0
