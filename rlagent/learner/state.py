"""What leaves a learner rank other than an update: its weights (for the engines, over Ray's
object store or a weight-update group), logprobs under them (the sync's check), and its
training state (checkpoints). Mixed into ``rlagent.learner.worker.Learner``.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import torch

from rlagent.learner.logprobs import token_logprobs
from rlagent.learner.models import hf_weights, merged_state_dict
from rlagent.remote import node_address
from rlagent.weight_group import WeightGroup, describe, open_store


class LearnerState:
    """Weights out and training state in/out, for the ``Learner`` it is mixed into (which
    sets ``cfg``, ``rank``, ``model_path``, ``engine``, ``critic``, ``lora``, ``device``,
    ``updates``)."""

    cfg: Any
    rank: int
    model_path: str
    engine: Any
    critic: Any
    lora: bool
    device: Any
    updates: int
    _weight_group: WeightGroup | None = None

    def named_weights(self) -> list[tuple[str, torch.Tensor]]:
        """Full weights under Hugging Face names (LoRA merged), on CPU, from rank 0 (others
        return []). Called on every rank, so that a stage that partitions parameters can
        gather them."""
        if self.rank != 0:
            return []
        return list(merged_state_dict(self.engine.module).items())

    def open_weight_group(self, world_size: int, timeout_s: float) -> dict:
        """Rank 0: serve a new weight-update group's rendezvous (``rlagent.weight_group``)
        and return its address; ``join_weight_group`` then waits for the engines."""
        self.close_weight_group()
        self._weight_store, self._weight_address = open_store(
            node_address(), world_size, timeout_s, self.device
        )
        return dataclasses.asdict(self._weight_address)

    def join_weight_group(self) -> None:
        self._weight_group = WeightGroup(self._weight_address, 0, self.device, self._weight_store)

    def close_weight_group(self) -> None:
        if self._weight_group is not None:
            self._weight_group.close()
            self._weight_group = None

    def weight_metas(self) -> list[list]:
        """Rank 0: name, shape and dtype of every tensor ``send_weights`` sends, in order."""
        with hf_weights(self.engine.module) as weights:
            return [meta.wire() for meta in describe(weights)]

    def send_weights(self) -> int:
        """Rank 0: broadcast the full weights (LoRA merged) to the weight-update group, from
        where they live (GPU memory on GPU); returns the bytes sent. ZeRO stages 0-2 keep
        full weights on every rank, so the other ranks take no part."""
        if self._weight_group is None:
            raise RuntimeError("send_weights before the weight-update group was formed")
        with hf_weights(self.engine.module) as weights:
            return self._weight_group.send(weights)

    def score(self, sequences: list[list[int]], start: int) -> list[list[float]]:
        """Logprobs of each sequence's tokens from ``start`` on, under the current weights."""
        out = []
        self.engine.eval()
        with torch.no_grad():
            for seq in sequences:
                ids = torch.tensor([seq], device=self.device)
                mask = torch.zeros_like(ids)
                mask[:, start:] = 1
                lp, _ = token_logprobs(
                    self.engine.module, ids, torch.ones_like(ids), mask, self.cfg.learner.logprob_chunk, 1.0
                )
                out.append(lp.cpu().tolist())
        return out

    def training_state(self) -> dict:
        """What ``save_state`` writes, as CPU tensors, for checks: the weights, the optimizer's
        state (AdamW moments and step counts), the LR schedule's state and the update count."""

        def cpu(x):
            if isinstance(x, torch.Tensor):
                return x.detach().cpu().clone()
            if isinstance(x, dict):
                return {k: cpu(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return type(x)(cpu(v) for v in x)
            return x

        return cpu(
            {
                "weights": dict(self.engine.module.state_dict()),
                "optimizer": self.engine.optimizer.state_dict(),
                "lr_schedule": self.engine.lr_scheduler.state_dict(),
                "updates": self.updates,
            }
        )

    def save_state(self, path: str) -> None:
        """The full training state (weights, optimizer, LR schedule; the critic's too) as a
        DeepSpeed checkpoint under ``path``; every rank writes its shard."""
        client = {"updates": self.updates}
        self.engine.save_checkpoint(str(Path(path) / "policy"), tag="state", client_state=client)
        if self.critic is not None:
            self.critic.save_checkpoint(str(Path(path) / "critic"), tag="state")

    def load_state(self, path: str) -> int:
        """Restore what ``save_state`` wrote; returns the number of updates so far."""
        loaded, client = self.engine.load_checkpoint(str(Path(path) / "policy"), tag="state")
        if loaded is None:
            raise FileNotFoundError(f"no learner state in {path}/policy")
        if self.critic is not None:
            loaded, _ = self.critic.load_checkpoint(str(Path(path) / "critic"), tag="state")
            if loaded is None:
                raise FileNotFoundError(f"no critic state in {path}/critic")
        self.updates = int(client.get("updates", 0))
        return self.updates

    def save(self, path: str) -> str:
        """A Hugging Face model directory that ``model.path`` can start a new run from."""
        from transformers import AutoTokenizer

        weights = dict(self.named_weights())
        if self.rank != 0:
            return path
        tmp = Path(path).with_name(Path(path).name + ".tmp")
        model = self.engine.module
        model = model.get_base_model() if self.lora else model
        model.save_pretrained(tmp, state_dict=weights)
        AutoTokenizer.from_pretrained(self.model_path).save_pretrained(tmp)
        if Path(path).exists():
            shutil.rmtree(path)
        tmp.rename(path)  # a crash mid-write never leaves a half checkpoint under the real name
        return path
