"""What ``rlagent view`` reads from a run directory: its metrics, rollout files and config, and
the tokenizer that turns the episodes' token ids back into text (``rlagent.viewer`` renders).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_EPISODES_PER_STEP = 64


@dataclass
class StepRollouts:
    """The episodes of one step's rollout file, as saved (``Episode.to_dict()``)."""

    step: int
    episodes: list[dict[str, Any]]  # the first ``max_episodes`` parseable lines
    total: int  # non-empty lines in the file
    bad_lines: int  # lines that were not a JSON object


def read_metrics(run_dir: Path) -> dict[int, dict[str, Any]]:
    """``metrics.jsonl`` by step; unreadable lines are skipped (a run may still be writing)."""
    out: dict[int, dict[str, Any]] = {}
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return out
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
            out[int(row["step"])] = row
        except (ValueError, KeyError, TypeError):
            continue
    return out


def rollout_files(run_dir: Path) -> dict[int, Path]:
    """``rollouts/step_XXXXX.jsonl`` by step."""
    files = {}
    for path in (run_dir / "rollouts").glob("step_*.jsonl"):
        try:
            files[int(path.stem.split("_", 1)[1])] = path
        except ValueError:
            continue
    return files


def read_rollouts(step: int, path: Path, max_episodes: int = MAX_EPISODES_PER_STEP) -> StepRollouts:
    episodes, total, bad = [], 0, 0
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            total += 1
            if len(episodes) >= max_episodes:
                continue  # counted, not parsed: the cap keeps big runs fast
            try:
                ep = json.loads(line)
            except ValueError:
                ep = None
            if isinstance(ep, dict):
                episodes.append(ep)
            else:
                bad += 1
    return StepRollouts(step, episodes, total, bad)


def read_config(run_dir: Path) -> dict[str, Any]:
    import yaml

    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def load_tokenizer(config: dict[str, Any]) -> tuple[Any, str]:
    """The run's tokenizer (``model.path``), or None and the reason it could not load."""
    path = (config.get("model") or {}).get("path")
    if not path:
        return None, "config.yaml names no model.path"
    try:
        from transformers import AutoTokenizer

        from rlagent.model_source import resolve_model

        return AutoTokenizer.from_pretrained(resolve_model(str(path))), ""
    except Exception as err:  # any failure: the page shows token ids instead
        return None, f"tokenizer of {path} could not be loaded ({type(err).__name__}: {err})"


class TokenText:
    """Decodes one token id at a time, cached: a run reuses a small part of the vocabulary."""

    def __init__(self, tokenizer: Any = None):
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        if token_id not in self.cache:
            self.cache[token_id] = self._decode(token_id)
        return self.cache[token_id]

    def _decode(self, token_id: int) -> str:
        if self.tokenizer is None:
            return f"[{token_id}]"
        try:
            text = self.tokenizer.decode([token_id])
        except Exception:
            return f"[{token_id}]"
        return text if text else f"[{token_id}]"


# ---------------------------------------------------------------- episode markup
