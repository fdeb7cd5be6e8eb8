"""The learner ranks (Ray actors, one ``Learner`` each) behind one facade the driver calls.

Each method either blocks for the ranks' answer (``train_step``, ``score``, checkpoints) or,
for the weight sync, starts a call and returns its ref(s), which ``rlagent.weight_sync``
waits on together with the engines' side of the same transfer.
"""

from __future__ import annotations

from typing import Any

import ray

from rlagent.config import Config
from rlagent.learner.worker import Learner
from rlagent.records import TrainBatch
from rlagent.remote import deadline, placed, wait


class LearnerGroup:
    """The learner ranks, as one object: ``train_step(batch) -> metrics``."""

    def __init__(self, cfg: Config, model_path: str, placement: Any = None):
        lc = cfg.learner
        env_vars = {"OMP_NUM_THREADS": str(lc.threads), "TOKENIZERS_PARALLELISM": "false"}
        if lc.num_gpus == 0:
            env_vars["DS_ACCELERATOR"] = "cpu"
        actor = ray.remote(Learner)
        self.cfg = cfg
        self.ranks = [
            actor.options(
                num_cpus=lc.num_cpus,
                num_gpus=lc.num_gpus,
                runtime_env={"env_vars": env_vars},
                **placed(placement, "learner ranks", r),
            ).remote(cfg, model_path, r)
            for r in range(lc.num_ranks)
        ]
        addr, port = wait(
            self.ranks[0].rendezvous_address.remote(), deadline("learner_start"), "learner rank 0 to start"
        )
        wait(
            [r.setup.remote(addr, port) for r in self.ranks],
            deadline("learner_start"),
            f"the learner ranks to join at {addr}:{port} and build their engines",
        )

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        ref = ray.put(batch)
        metrics = wait(
            [r.train_step.remote(ref) for r in self.ranks], deadline("learner_step"), "the learner update"
        )
        return metrics[0]

    def score(self, sequences: list[list[int]], start: int) -> list[list[float]]:
        return wait(
            [r.score.remote(sequences, start) for r in self.ranks],
            deadline("learner_query"),
            "learner logprobs",
        )[0]

    # ---------------------------------------------------------------- for the weight sync
    def gather_weights(self) -> tuple[Any, dict[str, Any]]:
        """Rank 0's full weights (a ref to named tensors) and the other ranks' part in
        gathering them (every rank is called: a stage that shards parameters gathers)."""
        refs = [r.named_weights.remote() for r in self.ranks]
        return refs[0], {f"learner rank {r}": ref for r, ref in enumerate(refs[1:], start=1)}

    def open_weight_group(self, world_size: int, timeout_s: float) -> Any:
        return self.ranks[0].open_weight_group.remote(world_size, timeout_s)

    def join_weight_group(self) -> Any:
        return self.ranks[0].join_weight_group.remote()

    def weight_metas(self) -> Any:
        return self.ranks[0].weight_metas.remote()

    def send_weights(self) -> Any:
        return self.ranks[0].send_weights.remote()

    # ---------------------------------------------------------------- checkpoints
    def save(self, path: str) -> str:
        return wait([r.save.remote(path) for r in self.ranks], deadline("checkpoint"), "the checkpoint")[0]

    def save_state(self, path: str) -> None:
        wait(
            [r.save_state.remote(path) for r in self.ranks],
            deadline("checkpoint"),
            "the learner state checkpoint",
        )

    def load_state(self, path: str) -> int:
        return wait(
            [r.load_state.remote(path) for r in self.ranks],
            deadline("checkpoint"),
            f"the learner ranks to load their state from {path}",
        )[0]

    def training_state(self) -> dict:
        """Rank 0's ``Learner.training_state`` (weights, optimizer, LR schedule, updates)."""
        return wait(
            self.ranks[0].training_state.remote(), deadline("learner_query"), "the learner's training state"
        )
