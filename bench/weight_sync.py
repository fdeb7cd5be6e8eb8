"""Weight sync time of both transports: learner (DeepSpeed, one rank) -> one vLLM engine.

    PYTHONPATH=. .venv/bin/python bench/weight_sync.py [--reps 5] [dotted.key=value ...]

Starts the quickstart's parts (``launch/configs/quickstart.yaml``: SmolLM2-135M-Instruct,
fp32) as Ray actors, forms both transports over the same learner and engine, then pushes
the weights ``--reps`` times with each, alternating (so both see the same machine load).
*push*: from the driver's call to every engine having reloaded (what ``timing/sync_s``
reports); *check*: the logprob comparison that follows each sync. Then, to tell the parts
apart, an engine loading weights that already sit in the object store (the reload both
transports end with), and the bare gloo broadcast of the same tensors between two threads
of this process (no Ray, no reload).
Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def median_range(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"


def bare_gloo(named: dict, reps: int) -> list[float]:
    """Seconds per broadcast of ``named`` from rank 0 to rank 1 (threads, one process)."""
    import torch

    from rlagent.weight_group import WeightGroup, describe, open_store

    cpu = torch.device("cpu")
    store, address = open_store("127.0.0.1", 2, 300, cpu)
    metas = describe(named)
    groups: dict[int, WeightGroup] = {}
    joined = threading.Thread(target=lambda: groups.setdefault(1, WeightGroup(address, 1, cpu)))
    joined.start()
    groups[0] = WeightGroup(address, 0, cpu, store)
    joined.join()
    times = []
    for _ in range(reps):
        receiver = threading.Thread(target=lambda: sum(1 for _ in groups[1].receive(metas)))
        t0 = time.perf_counter()
        receiver.start()
        groups[0].send(named)
        receiver.join()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    import ray
    from transformers import AutoTokenizer

    from rlagent.config import load_config
    from rlagent.learner.group import LearnerGroup
    from rlagent.model_source import resolve_model
    from rlagent.rollout.pool import RolloutPool
    from rlagent.weight_group import TensorMeta
    from rlagent.weight_sync import WeightSync

    cfg = load_config(REPO / "launch/configs/quickstart.yaml", args.overrides)
    model = resolve_model(cfg.model.path)
    probe = AutoTokenizer.from_pretrained(model)(
        "The learner sends its weights to the engines after every update."
    )["input_ids"]
    load_before = os.getloadavg()[0]
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    pool = RolloutPool(cfg, model, rewards=[])
    try:
        learner = LearnerGroup(cfg, model)
        syncs, setup_s = {}, {}
        for name in ("object_store", "collective"):
            t0 = time.perf_counter()
            syncs[name] = WeightSync(learner, pool, 600, cfg.learner.sync_check_tol, name)
            setup_s[name] = time.perf_counter() - t0
        push: dict[str, list[float]] = {n: [] for n in syncs}
        check: dict[str, list[float]] = {n: [] for n in syncs}
        gaps: dict[str, list[float]] = {n: [] for n in syncs}
        for _ in range(args.reps):
            for name, sync in syncs.items():
                t0 = time.perf_counter()
                out = sync(probe, 1)
                push[name].append(out["timing/sync_s"])
                check[name].append(time.perf_counter() - t0 - out["timing/sync_s"])
                gaps[name].append(out["sync/logprob_gap_max"])
        metas = [TensorMeta.from_wire(m) for m in ray.get(learner.ranks[0].weight_metas.remote())]
        named = dict(ray.get(learner.gather_weights()[0]))
        reload = reload_only(pool.workers[0], named, args.reps)
    finally:
        pool.shutdown()
        ray.shutdown()
    # As the learner holds them: a tied tensor is the same memory (Ray's copy lost that).
    named = {m.name: named[m.same_as or m.name] for m in metas}
    sent = [named[m.name] for m in metas if m.same_as is None]
    size_mb = sum(t.numel() * t.element_size() for t in sent) / 1e6
    raw = bare_gloo(named, args.reps)

    print(
        f"{len(named)} tensors, {size_mb:.0f} MB ({len(sent)} tensors: a tied one counts "
        f"once); median (min-max) of {args.reps} syncs; load average {load_before:.1f} "
        f"before, {os.getloadavg()[0]:.1f} after\n"
    )
    print("| transport | setup s | push s | check s | logprob gap max |")
    print("|---|---|---|---|---|")
    for name in syncs:
        print(
            f"| {name} | {setup_s[name]:.2f} | {median_range(push[name])} "
            f"| {median_range(check[name])} | {max(gaps[name]):.1e} |"
        )
    print(
        f"| engine loads weights already in the object store (fetch + reload) | – "
        f"| {median_range(reload)} | – | – |"
    )
    print(f"| gloo broadcast alone (2 threads, no Ray, no reload) | – | {median_range(raw)} | – | – |")


def reload_only(worker, named: dict, reps: int) -> list[float]:
    """Seconds for an engine to load weights that already sit in the object store."""
    import ray

    ref = ray.put(list(named.items()))
    times = []
    for version in range(reps):
        t0 = time.perf_counter()
        ray.get(worker.load_weights.remote(ref, 1000 + version))
        times.append(time.perf_counter() - t0)
    return times


if __name__ == "__main__":
    main()
