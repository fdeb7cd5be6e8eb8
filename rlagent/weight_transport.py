"""How the learner's weights reach the rollout engines: two transports behind one interface.

- ``object_store``: learner rank 0 returns its full weights through Ray's object store and
  every rollout worker loads them. Simple, but each node's object store holds a copy and
  the tensors go GPU -> host -> object store -> host -> GPU.
- ``collective``: learner rank 0 and every vLLM worker of every engine form a dedicated
  process group (gloo on CPU, NCCL on GPU) and rank 0 broadcasts the tensors one by one.
  Each vLLM worker receives them itself (``WeightLoaderExtension`` in ``rlagent.engine``)
  and feeds them to vLLM's in-place reload as they arrive.

The dedicated group is not built on torch.distributed's default group: in the learner ranks
that one is DeepSpeed's. It has its own ``TCPStore`` (served by learner rank 0; rank 0 is the
sender, ranks 1..N the engine workers), the way vLLM builds its stateless groups.

Driver side: ``make_transport(...)``, then ``setup()`` once (forms the group) and
``push(version)`` per sync. In the member processes: ``open_store`` (rank 0), ``WeightGroup``
(joins), ``describe`` (the metadata), ``WeightGroup.send`` (rank 0) and
``WeightGroup.receive`` (the engines).
"""
from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import torch
import torch.distributed as dist

TransportName = Literal["object_store", "collective"]


class WeightTransportError(RuntimeError):
    """A member of a weight transfer failed; the message names which and why."""


# ---------------------------------------------------------------- inside the members

@dataclass(frozen=True)
class TensorMeta:
    """What a receiver allocates before a tensor arrives. Sent as a plain list (``wire``):
    vLLM passes RPC arguments to workers in other processes as plain data."""

    name: str
    shape: tuple[int, ...]
    dtype: str                  # torch dtype name, e.g. "float32"
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
        metas.append(TensorMeta(name, tuple(t.shape), str(t.dtype).removeprefix("torch."),
                                seen.get(key)))
        seen.setdefault(key, name)
    return metas


@dataclass(frozen=True)
class GroupAddress:
    """Where and how to join a weight-update group (sent as a dict)."""

    host: str
    port: int
    world_size: int         # learner rank 0 + every vLLM worker of every engine
    backend: str            # "gloo" (CPU tensors) | "nccl" (CUDA tensors)
    timeout_s: float

    def __str__(self) -> str:
        return f"{self.backend} group of {self.world_size} at {self.host}:{self.port}"


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def open_store(host: str, world_size: int, timeout_s: float,
               device: torch.device) -> tuple[dist.TCPStore, GroupAddress]:
    """Rank 0: serve the group's rendezvous store on a free port (returns at once)."""
    store = dist.TCPStore(host, 0, world_size, is_master=True, wait_for_workers=False,
                          timeout=timedelta(seconds=timeout_s))
    return store, GroupAddress(host, store.port, world_size, backend_for(device), timeout_s)


class WeightGroup:
    """One member of a weight-update group: rank 0 sends, ranks 1..world_size-1 receive.

    Creating it blocks until every member has joined, at most ``address.timeout_s``; the
    same timeout bounds each gloo broadcast (NCCL through vLLM's communicator has no
    per-call timeout: the driver's wait bounds it).
    """

    def __init__(self, address: GroupAddress, rank: int, device: torch.device,
                 store: dist.Store | None = None):
        if backend_for(device) != address.backend:
            raise WeightTransportError(f"rank {rank} of the weight-update {address} has its "
                                       f"weights on {device}, which {address.backend} cannot carry")
        self.address, self.rank, self.device = address, rank, device
        self.timeout = timedelta(seconds=address.timeout_s)
        try:
            if store is None:
                store = dist.TCPStore(address.host, address.port, address.world_size,
                                      is_master=False, timeout=self.timeout)
            self._comm = self._connect(dist.PrefixStore("rlagent-weights", store))
        except WeightTransportError:
            raise
        except RuntimeError as err:  # torch's DistError and gloo's errors included
            raise WeightTransportError(
                f"rank {rank} could not form the weight-update {address} within "
                f"{address.timeout_s:.0f} s (learner.sync_timeout_s): did every engine "
                f"join? ({err})") from err
        self._store = store  # rank 0 serves it: keep it alive as long as the group

    def _connect(self, store: dist.Store) -> Any:
        a = self.address
        if a.backend == "gloo":
            return dist.ProcessGroupGloo(store, self.rank, a.world_size, self.timeout)
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
        from vllm.distributed.utils import StatelessProcessGroup

        comm = PyNcclCommunicator(StatelessProcessGroup(self.rank, a.world_size, store),
                                  device=self.device)
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
                raise WeightTransportError(f"rank 0 of the weight-update {self.address}: "
                                           f"broadcasting {meta.name} failed ({err})") from err
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
                raise WeightTransportError(f"rank {self.rank} of the weight-update "
                                           f"{self.address}: receiving {meta.name} failed "
                                           f"({err})") from err
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


# ---------------------------------------------------------------- on the driver

class ObjectStoreTransport:
    """Learner rank 0 returns its weights as a Ray object; each worker loads that object."""

    name = "object_store"

    def __init__(self, learner: Any, pool: Any, timeout_s: float):
        self.learner, self.pool, self.timeout_s = learner, pool, timeout_s

    def __str__(self) -> str:
        return "object_store (through Ray's object store)"

    def setup(self) -> None:
        """Nothing to form: Ray's object store is always there."""

    def push(self, version: int) -> None:
        refs = self.learner.named_weights_refs()  # every rank takes part in gathering
        calls = {f"learner rank {r}": ref for r, ref in enumerate(refs[1:], start=1)}
        calls |= {f"rollout worker {i}": w.load_weights.remote(refs[0], version)
                  for i, w in enumerate(self.pool.workers)}
        wait_each(calls, self.timeout_s, f"the engines to load weights version {version}")
        self.pool.reload = functools.partial(_load, refs[0], version)  # kept for a restart


def _load(ref: Any, version: int, worker: Any, timeout_s: float) -> None:
    """Load the weights ``ref`` (the learner's named tensors) into one restarted worker."""
    wait_each({"restarted rollout worker": worker.load_weights.remote(ref, version)}, timeout_s,
              f"a restarted rollout worker to load weights version {version}")


class CollectiveTransport:
    """Learner rank 0 broadcasts to every engine worker over a dedicated process group."""

    name = "collective"

    def __init__(self, learner: Any, pool: Any, timeout_s: float):
        self.learner, self.pool, self.timeout_s = learner, pool, timeout_s
        self.address: GroupAddress | None = None
        self.rejoin = False

    def __str__(self) -> str:
        return f"collective (weight-update {self.address or 'group not formed'})"

    def setup(self) -> None:
        """Form the group: learner rank 0 opens it, every engine worker joins. Calling it
        again forms a new group (e.g. after a rollout worker was replaced)."""
        sender, workers = self.learner.ranks[0], self.pool.workers
        sizes = list(wait_each({f"rollout worker {i}": w.weight_group_members.remote()
                                for i, w in enumerate(workers)}, self.timeout_s,
                               "the rollout workers to count their engine workers").values())
        firsts = [1 + n for n in itertools.accumulate([0] + sizes[:-1])]  # rank 0: the sender
        address = wait_each({"learner rank 0": sender.open_weight_group.remote(
            1 + sum(sizes), self.timeout_s)}, self.timeout_s,
            "learner rank 0 to open the weight-update group")["learner rank 0"]
        self.address = GroupAddress(**address)
        calls = {"learner rank 0": sender.join_weight_group.remote()}
        calls |= {f"rollout worker {i}": w.join_weight_group.remote(address, first)
                  for i, (w, first) in enumerate(zip(workers, firsts))}
        # The members' own timeout is the same; theirs names the group, so it comes first.
        wait_each(calls, self.timeout_s + 30, f"the weight-update {self.address} to form")

    def push(self, version: int) -> None:
        if self.address is None:
            raise WeightTransportError("the collective weight transport was not set up")
        if self.rejoin:  # a restarted worker is not in the group: form a new one
            self.setup()
            self.rejoin = False
        sender = self.learner.ranks[0]
        # Metadata first (small, through Ray): the receivers allocate before the broadcast.
        metas = wait_each({"learner rank 0": sender.weight_metas.remote()}, self.timeout_s,
                          "learner rank 0 to list its weights")["learner rank 0"]
        calls = {"learner rank 0 (sender)": sender.send_weights.remote()}
        calls |= {f"rollout worker {i}": w.receive_weights.remote(metas, version)
                  for i, w in enumerate(self.pool.workers)}
        wait_each(calls, self.timeout_s,
                  f"weights version {version} to cross the weight-update {self.address}")
        self.pool.reload = functools.partial(self._reload, version)

    def _reload(self, version: int, worker: Any, timeout_s: float) -> None:
        """A restarted worker gets the learner's weights through the object store (it left
        the group when it died); the next push forms the group again. (One step off, a
        worker that dies while the learner updates gets the weights after that update,
        labelled with the version before it: its episodes then count as one version stale
        when they are fresh; the PPO ratio still uses the logprobs they were sampled with.)"""
        refs = self.learner.named_weights_refs()
        calls = {f"learner rank {r}": ref for r, ref in enumerate(refs[1:], start=1)}
        calls["restarted rollout worker"] = worker.load_weights.remote(refs[0], version)
        wait_each(calls, timeout_s, f"a restarted rollout worker to load weights version {version}")
        self.rejoin = True


def make_transport(name: TransportName, learner: Any, pool: Any,
                   timeout_s: float) -> ObjectStoreTransport | CollectiveTransport:
    transports = {t.name: t for t in (ObjectStoreTransport, CollectiveTransport)}
    if name not in transports:
        raise ValueError(f"weight transport {name!r}: must be one of {', '.join(transports)}")
    return transports[name](learner, pool, timeout_s)


def wait_each(calls: dict[str, Any], timeout_s: float, what: str) -> dict[str, Any]:
    """Results of named Ray calls. The first one to fail raises at once (naming it); a
    timeout names the calls still running."""
    import ray

    from rlagent.actors import WaitTimeout  # not at the top: rlagent.actors imports us

    names = {ref: name for name, ref in calls.items()}
    pending, results = list(names), {}
    deadline = time.monotonic() + timeout_s
    while pending:
        ready, pending = ray.wait(pending, num_returns=1,
                                  timeout=max(deadline - time.monotonic(), 0.0))
        if not ready:
            raise WaitTimeout(f"timed out after {timeout_s:.0f} s waiting for {what}; still "
                              f"waiting on {', '.join(names[r] for r in pending)}")
        try:
            results[names[ready[0]]] = ray.get(ready[0])
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None) or err
            raise WeightTransportError(f"{what}: {names[ready[0]]} failed: "
                                       f"{type(cause).__name__}: {cause}") from err
    return {name: results[name] for name in calls}
