"""A weight-update group: learner rank 0 and every vLLM worker of every engine, in a
dedicated process group (gloo on CPU, NCCL on GPU) over which rank 0 broadcasts the weights.

This is the member side, run inside the learner (rank 0: ``open_store``, ``WeightGroup.send``)
and inside each vLLM worker (``WeightGroup``, ``WeightGroup.receive``, fed straight into the
engine's in-place reload by ``rlagent.rollout.engine_worker.WeightLoaderExtension``). The driver
side, which forms the group and pushes each version, is ``rlagent.weight_sync``.

The group is not built on torch.distributed's default group: in the learner ranks that one
is DeepSpeed's. It has its own ``TCPStore`` (served by learner rank 0; rank 0 is the sender,
ranks 1..N the engine workers), the way vLLM builds its stateless groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


class WeightTransportError(RuntimeError):
    """A member of a weight transfer failed; the message names which and why."""


@dataclass(frozen=True)
class TensorMeta:
    """What a receiver allocates before a tensor arrives. Sent as a plain list (``wire``):
    vLLM passes RPC arguments to workers in other processes as plain data."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # torch dtype name, e.g. "float32"
    same_as: str | None = None  # a tensor sent earlier that this one is a view of (tied weights)

    def wire(self) -> list:
        return [self.name, list(self.shape), self.dtype, self.same_as]

    @classmethod
    def from_wire(cls, item: list) -> TensorMeta:
        name, shape, dtype, same_as = item
        return cls(name, tuple(shape), dtype, same_as)


def describe(weights: Mapping[str, torch.Tensor]) -> list[TensorMeta]:
    """The metas of ``weights`` in order. A tensor that is the same view of the same memory
    as an earlier one (a tied LM head) is not sent again: its meta names the earlier one."""
    seen: dict[tuple, str] = {}
    metas = []
    for name, t in weights.items():
        key = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
        metas.append(TensorMeta(name, tuple(t.shape), str(t.dtype).removeprefix("torch."), seen.get(key)))
        seen.setdefault(key, name)
    return metas


@dataclass(frozen=True)
class GroupAddress:
    """Where and how to join a weight-update group (sent as a dict)."""

    host: str
    port: int
    world_size: int  # learner rank 0 + every vLLM worker of every engine
    backend: str  # "gloo" (CPU tensors) | "nccl" (CUDA tensors)
    timeout_s: float

    def __str__(self) -> str:
        return f"{self.backend} group of {self.world_size} at {self.host}:{self.port}"


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def open_store(
    host: str, world_size: int, timeout_s: float, device: torch.device
) -> tuple[dist.TCPStore, GroupAddress]:
    """Rank 0: serve the group's rendezvous store on a free port (returns at once)."""
    store = dist.TCPStore(
        host, 0, world_size, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=timeout_s)
    )
    return store, GroupAddress(host, store.port, world_size, backend_for(device), timeout_s)


class WeightGroup:
    """One member of a weight-update group: rank 0 sends, ranks 1..world_size-1 receive.

    Creating it blocks until every member has joined, at most ``address.timeout_s``; the
    same timeout bounds each gloo broadcast (NCCL through vLLM's communicator has no
    per-call timeout: the driver's wait bounds it).
    """

    def __init__(
        self, address: GroupAddress, rank: int, device: torch.device, store: dist.Store | None = None
    ):
        if backend_for(device) != address.backend:
            raise WeightTransportError(
                f"rank {rank} of the weight-update {address} has its "
                f"weights on {device}, which {address.backend} cannot carry"
            )
        self.address, self.rank, self.device = address, rank, device
        self.timeout = timedelta(seconds=address.timeout_s)
        try:
            if store is None:
                store = dist.TCPStore(
                    address.host, address.port, address.world_size, is_master=False, timeout=self.timeout
                )
            self._comm = self._connect(dist.PrefixStore("rlagent-weights", store))
        except WeightTransportError:
            raise
        except RuntimeError as err:  # torch's DistError and gloo's errors included
            raise WeightTransportError(
                f"rank {rank} could not form the weight-update {address} within "
                f"{address.timeout_s:.0f} s (learner.sync_timeout_s): did every engine "
                f"join? ({err})"
            ) from err
        self._store = store  # rank 0 serves it: keep it alive as long as the group

    def _connect(self, store: dist.Store) -> Any:
        a = self.address
        if a.backend == "gloo":
            return dist.ProcessGroupGloo(store, self.rank, a.world_size, self.timeout)
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
        from vllm.distributed.utils import StatelessProcessGroup

        comm = PyNcclCommunicator(StatelessProcessGroup(self.rank, a.world_size, store), device=self.device)
        if comm.disabled:  # no NCCL library: its broadcast would silently do nothing
            raise WeightTransportError(f"NCCL is not available on rank {self.rank} ({self.device})")
        return comm

    def _broadcast(self, tensor: torch.Tensor) -> None:
        if self.address.backend == "gloo":
            opts = dist.BroadcastOptions()
            opts.rootRank, opts.timeout = 0, self.timeout
            self._comm.broadcast([tensor], opts).wait()
        else:  # on the stream the loader then reads the tensor on
            self._comm.broadcast(tensor, src=0, stream=torch.cuda.current_stream(self.device))

    def send(self, weights: Mapping[str, torch.Tensor]) -> int:
        """Rank 0: broadcast the tensors, in the order of ``describe(weights)``, which the
        receivers got as metas. Returns the bytes sent."""
        sent = 0
        for meta in describe(weights):
            if meta.same_as is not None:
                continue
            tensor = weights[meta.name].detach().to(self.device).contiguous()
            try:
                self._broadcast(tensor)
            except RuntimeError as err:
                raise WeightTransportError(
                    f"rank 0 of the weight-update {self.address}: broadcasting {meta.name} failed ({err})"
                ) from err
            sent += tensor.numel() * tensor.element_size()
        self._synchronize()
        return sent

    def receive(self, metas: Iterable[TensorMeta]) -> Iterator[tuple[str, torch.Tensor]]:
        """Ranks >= 1: each tensor as it arrives (consume them in order, all of them)."""
        metas = list(metas)
        targets = {m.same_as for m in metas}
        kept: dict[str, torch.Tensor] = {}  # only what a later tensor is tied to
        for meta in metas:
            if meta.same_as is not None:
                yield meta.name, kept[meta.same_as]
                continue
            tensor = torch.empty(meta.shape, dtype=getattr(torch, meta.dtype), device=self.device)
            try:
                self._broadcast(tensor)
            except RuntimeError as err:
                raise WeightTransportError(
                    f"rank {self.rank} of the weight-update "
                    f"{self.address}: receiving {meta.name} failed "
                    f"({err})"
                ) from err
            if meta.name in targets:
                kept[meta.name] = tensor
            yield meta.name, tensor
        self._synchronize()

    def _synchronize(self) -> None:
        if self.device.type == "cuda":  # NCCL works on a stream: done means done
            torch.cuda.current_stream(self.device).synchronize()

    def close(self) -> None:
        if self.address.backend == "gloo":
            self._comm.shutdown()
        else:
            self._comm.destroy()
