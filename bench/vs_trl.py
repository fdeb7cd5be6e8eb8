"""rlagent against TRL's GRPOTrainer on single-turn arithmetic, for equal wall-clock time.

    .venv/bin/pip install trl==1.16.0          # the peer (not a dependency of rlagent)
    .venv/bin/python bench/vs_trl.py [--minutes 20] [--out results/vs_trl] [--eval-n 100]

Both sides: SmolLM2-135M-Instruct in fp32 on 2 threads; 8 prompts x 4 completions per step,
up to 64 new tokens at temperature 0.7; lr 1e-5, no reference model (KL 0), one update per
batch; the same system prompt and task stream (``launch/configs/results/calculator-single.yaml``:
the calculator generator, difficulties 1-2, seed 0); the same reward, 0.2 x format + 1.0 x
numeric match of the ``<answer>``, computed by rlagent's plugins.

1. ``trl``: GRPOTrainer (its defaults otherwise: it generates with transformers) trains for
   ``--minutes`` from its first step, then saves the model.
2. ``ours``: ``rlagent train`` of that config with ``run.max_minutes``.
3. ``rlagent eval`` (greedy) of the untrained model and of both results on the same held-out
   tasks (``rlagent tasks``, seed 1000000).

Each training runs as a child process whose whole process tree's RSS is sampled every 0.5 s
(for rlagent: driver, Ray, vLLM engine, learner, reward service; pages shared between
processes count more than once, so it is an upper bound). Prints Markdown for
docs/benchmarks.md and docs/results.md, and writes ``OUT/vs_trl.json`` and ``OUT/vs_trl.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from proctree import watch_peak

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "launch" / "configs" / "results" / "calculator-single.yaml"
RLAGENT = str(Path(sys.executable).parent / "rlagent")
THREADS = 2


def measured(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` to the end; returns the peak summed RSS (GB) of its process tree."""
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"}
    print("+", " ".join(cmd), flush=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        peak = watch_peak(proc)
        if proc.wait():
            sys.exit(f"{cmd[:3]} failed; see {log}")
    return peak[0]


# ------------------------------------------------------------------ the TRL side (child process)
def format_reward(completions, **_) -> list[float]:
    """rlagent's ``format`` plugin on a one-turn episode: well-formed, and halved without an
    answer."""
    from rlagent.rewards.format import FormatReward
    from rlagent.tags import first_tag_content

    fmt, out = FormatReward(), []
    for c in completions:
        text = c[0]["content"]
        ends = first_tag_content(text, "answer") is not None
        out.append(float(fmt.turn_is_well_formed(text)) * (1.0 if ends else 0.5))
    return out


def outcome_reward(completions, answer, **_) -> list[float]:
    """rlagent's ``outcome`` plugin (numeric match of the answer, default tolerances)."""
    import math

    from rlagent.tags import last_tag_content, parse_number

    out = []
    for c, a in zip(completions, answer):
        got = parse_number(last_tag_content([c[0]["content"]], "answer") or "")
        out.append(float(got is not None and math.isclose(got, a, rel_tol=1e-6, abs_tol=1e-9)))
    return out


def trl_child(out: Path, minutes: float) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlagent.config import load_config
    from rlagent.envs.calculator import CalculatorEnv, generate_task
    from rlagent.model_source import resolve_model

    torch.set_num_threads(THREADS)
    cfg = load_config(str(CONFIG), [])
    model = resolve_model(cfg.model.path)
    rng, env = random.Random(cfg.run.seed), CalculatorEnv(**cfg.env.kwargs)
    rows = []
    for i in range(4000):  # far more than fit in the time; one task per prompt, in order
        task = generate_task(rng, cfg.data.difficulties[i % len(cfg.data.difficulties)])
        obs, _ = env.reset(options={"task": task})
        rows.append(
            {
                "prompt": [
                    {"role": "system", "content": cfg.env.system_prompt},
                    {"role": "user", "content": obs},
                ],
                "answer": float(task["answer"]),
            }
        )
    steps: list[dict] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **k):
            now = time.perf_counter()
            steps.append({"step_s": now - self.t0, "minutes": (now - self.start) / 60})
            if now - self.start >= 60 * minutes:
                control.should_training_stop = True

    args = GRPOConfig(
        output_dir=str(out / "trl-work"),
        per_device_train_batch_size=32,
        num_generations=cfg.algo.group_size,
        max_completion_length=cfg.rollout.max_new_tokens,
        temperature=cfg.rollout.temperature,
        learning_rate=cfg.learner.lr,
        beta=0.0,
        reward_weights=[0.2, 1.0],
        max_steps=len(rows) // cfg.algo.tasks_per_step,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        seed=cfg.run.seed,
        shuffle_dataset=False,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[format_reward, outcome_reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
    )
    trainer.add_callback(Clock())
    trainer.train()
    trainer.save_model(str(out / "trl-model"))
    AutoTokenizer.from_pretrained(model).save_pretrained(out / "trl-model")
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    for s, r in zip(steps, rewards):
        s["reward"] = r
    (out / "trl-steps.json").write_text(
        json.dumps(
            {
                "steps": steps,
                "gradient_checkpointing": args.gradient_checkpointing,
                "loss_type": args.loss_type,
            }
        )
    )


# ------------------------------------------------------------------ the driver
def evaluate(out: Path, tasks: Path, tag: str, checkpoint: str) -> dict:
    where = out / "eval" / tag
    if not (where / "eval.json").exists():
        subprocess.run(
            [
                RLAGENT,
                "eval",
                str(CONFIG),
                f"tasks={tasks}",
                f"checkpoint={checkpoint}",
                "temperature=0",
                f"out={where}",
            ],
            cwd=REPO,
            check=True,
        )
    return json.loads((where / "eval.json").read_text())["metrics"]


def ours_steps(run: Path) -> list[dict]:
    rows, minutes = [], 0.0
    for line in open(run / "metrics.jsonl"):
        r = json.loads(line)
        minutes += r["timing/step_s"] / 60
        rows.append({"step_s": r["timing/step_s"], "minutes": minutes, "reward": r["reward/mean"]})
    return rows


def plot(sides: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for (name, steps), color in zip(sides.items(), ("C0", "C1")):
        reward = [s["reward"] for s in steps]
        smooth = [statistics.mean(reward[max(0, i - 4) : i + 1]) for i in range(len(reward))]
        axes[0].plot(range(1, len(steps) + 1), smooth, color=color, lw=2, label=name)
        axes[1].plot([s["minutes"] for s in steps], smooth, color=color, lw=2, label=name)
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("wall-clock minutes (training)")
    axes[0].set_ylabel("training reward, mean of 5 steps")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Single-turn arithmetic, SmolLM2-135M-Instruct, 8x4 per step, 2 CPU cores")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0, help="training time of each side")
    ap.add_argument("--out", default="results/vs_trl")
    ap.add_argument("--eval-n", type=int, default=100)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if a.child:
        return trl_child(out, a.minutes)
    tasks = out / "heldout.jsonl"
    if not tasks.exists():
        subprocess.run(
            [RLAGENT, "tasks", str(CONFIG), "--n", str(a.eval_n), "--seed", "1000000", "--out", str(tasks)],
            cwd=REPO,
            check=True,
        )
    peaks = json.loads((out / "peaks.json").read_text()) if (out / "peaks.json").exists() else {}
    if not (out / "trl-model").exists():
        peaks["trl"] = measured(
            [sys.executable, __file__, "--child", "--minutes", str(a.minutes), "--out", str(out)],
            out / "trl.log",
        )
    run = out / "ours"
    if not (run / "checkpoints" / "final").exists():
        peaks["ours"] = measured(
            [
                RLAGENT,
                "train",
                str(CONFIG),
                f"run.max_minutes={a.minutes}",
                f"run.output_dir={out}",
                "run.name=ours",
            ],
            out / "ours.log",
        )
    (out / "peaks.json").write_text(json.dumps(peaks))
    evals = {
        "base": evaluate(out, tasks, "base", "base"),
        "trl": evaluate(out, tasks, "trl", str(out / "trl-model")),
        "ours": evaluate(out, tasks, "ours", str(run / "checkpoints" / "final")),
    }
    trl = json.loads((out / "trl-steps.json").read_text())
    sides = {"rlagent": ours_steps(run), "TRL 1.16 GRPOTrainer": trl["steps"]}
    plot(sides, out / "vs_trl.png")
    (out / "vs_trl.json").write_text(
        json.dumps({"minutes": a.minutes, "peaks_gb": peaks, "evals": evals, "steps": sides}, indent=1)
    )
    print(f"\nequal budget: {a.minutes:g} min of training each; held-out: {a.eval_n} tasks, greedy\n")
    print(
        "| | steps in budget | s/step (mean of steps 2+) | peak RSS GB (process tree) "
        "| held-out success | d1 | d2 |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, key, steps in (
        ("untrained", "base", None),
        ("TRL 1.16 GRPOTrainer", "trl", trl["steps"]),
        ("rlagent", "ours", sides["rlagent"]),
    ):
        m = evals[key]
        cells = (
            ["–", "–", "–"]
            if steps is None
            else [
                str(len(steps)),
                f"{statistics.mean(s['step_s'] for s in steps[1:] or steps):.1f}",
                f"{peaks.get(key, float('nan')):.2f}",
            ]
        )
        print(
            f"| {name} | {' | '.join(cells)} | **{m['success/rate']:.3f}** "
            f"| {m.get('success/d1/rate', 0):.2f} | {m.get('success/d2/rate', 0):.2f} |"
        )


if __name__ == "__main__":
    main()
