"""How the learner's weights reach the rollout engines after each update, and the check
that they did: two transports behind one interface, driven from the driver.

- ``object_store``: learner rank 0 returns its full weights through Ray's object store and
  every rollout worker loads them. Simple, but each node's object store holds a copy and
  the tensors go GPU -> host -> object store -> host -> GPU.
- ``collective``: learner rank 0 and every vLLM worker of every engine form a weight-update
  group (``rlagent.weight_group``: gloo on CPU, NCCL on GPU) and rank 0 broadcasts the
  tensors one by one; each vLLM worker feeds them to its in-place reload as they arrive.

``WeightSync`` pushes a new version through the transport, then scores a real sequence on
both sides: the engines must reproduce the learner's logprobs (a greedy-output comparison
would miss a stale layer). It talks to ``LearnerGroup`` and ``RolloutPool`` only through
their methods, each of which starts named Ray calls that are waited on here.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any, Literal

from rlagent.records import Episode
from rlagent.remote import CallFailed, wait_named
from rlagent.weight_group import GroupAddress, WeightTransportError

TransportName = Literal["object_store", "collective"]


def _wait(calls: dict[str, Any], timeout_s: float, what: str, pool: Any = None) -> dict[str, Any]:
    """``wait_named``, its call failures as the transport's errors (they name the member).
    With ``pool``, a rollout worker that died during the wait is revived (Ray restarts it,
    the pool's reload hook gives it the current weights) and left out of the results."""
    try:
        return wait_named(calls, timeout_s, what, _reviver(pool, timeout_s) if pool is not None else None)
    except CallFailed as err:
        raise WeightTransportError(str(err)) from err


def _reviver(pool: Any, timeout_s: float) -> Callable[[str, Exception], bool]:
    def died(name: str, err: Exception) -> bool:
        prefix = "rollout worker "
        if not name.startswith(prefix):
            return False  # a learner rank: the run cannot go on without it
        pool.revive(int(name[len(prefix) :]), time.monotonic() + timeout_s)
        return True

    return died


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
        weights, gathering = self.learner.gather_weights()  # every rank takes part in gathering
        # The reload hook first: a worker that dies during this push gets these weights.
        self.pool.set_reload(
            lambda pool, i, timeout_s: _wait(
                pool.load_weights(weights, version, only=i),
                timeout_s,
                f"a restarted rollout worker to load weights version {version}",
            )
        )
        _wait(
            gathering | self.pool.load_weights(weights, version),
            self.timeout_s,
            f"the engines to load weights version {version}",
            self.pool,
        )


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
        sizes = list(
            _wait(
                self.pool.weight_group_members(),
                self.timeout_s,
                "the rollout workers to count their engine workers",
            ).values()
        )
        firsts = [1 + n for n in itertools.accumulate([0] + sizes[:-1])]  # rank 0: the sender
        address = _wait(
            {"learner rank 0": self.learner.open_weight_group(1 + sum(sizes), self.timeout_s)},
            self.timeout_s,
            "learner rank 0 to open the weight-update group",
        )["learner rank 0"]
        self.address = GroupAddress(**address)
        calls = {"learner rank 0": self.learner.join_weight_group()}
        calls |= self.pool.join_weight_group(address, firsts)
        # The members' own timeout is the same; theirs names the group, so it comes first.
        _wait(calls, self.timeout_s + 30, f"the weight-update {self.address} to form")

    def push(self, version: int) -> None:
        if self.address is None:
            raise WeightTransportError("the collective weight transport was not set up")
        if self.rejoin:  # a restarted worker is not in the group: form a new one
            self.setup()
            self.rejoin = False
        # Metadata first (small, through Ray): the receivers allocate before the broadcast.
        metas = _wait(
            {"learner rank 0": self.learner.weight_metas()},
            self.timeout_s,
            "learner rank 0 to list its weights",
        )["learner rank 0"]
        calls = {"learner rank 0 (sender)": self.learner.send_weights()}
        calls |= self.pool.receive_weights(metas, version)
        _wait(calls, self.timeout_s, f"weights version {version} to cross the weight-update {self.address}")
        self.pool.set_reload(lambda pool, i, timeout_s: self._reload(version, pool, i, timeout_s))

    def _reload(self, version: int, pool: Any, i: int, timeout_s: float) -> None:
        """A restarted worker gets the learner's weights through the object store (it left
        the group when it died); the next push forms the group again. One step off, such a
        worker is labelled with the version before the update it got (docs/reliability.md)."""
        weights, gathering = self.learner.gather_weights()
        _wait(
            gathering | pool.load_weights(weights, version, only=i),
            timeout_s,
            f"a restarted rollout worker to load weights version {version}",
        )
        self.rejoin = True


def make_transport(
    name: TransportName, learner: Any, pool: Any, timeout_s: float
) -> ObjectStoreTransport | CollectiveTransport:
    transports = {t.name: t for t in (ObjectStoreTransport, CollectiveTransport)}
    if name not in transports:
        raise ValueError(f"weight transport {name!r}: must be one of {', '.join(transports)}")
    return transports[name](learner, pool, timeout_s)


class WeightSyncError(RuntimeError):
    """The engines do not run the weights the learner has."""


class WeightSync:
    """Learner -> engines through a transport, then a numerical check; ``version`` counts
    the pushes (the policy version the engines run)."""

    def __init__(
        self, learner: Any, pool: Any, timeout_s: float, tol: float, transport: TransportName = "object_store"
    ):
        self.learner, self.pool, self.timeout_s, self.tol = learner, pool, timeout_s, tol
        self.version = 0
        self.transport = make_transport(transport, learner, pool, timeout_s)
        self.transport.setup()

    def __call__(self, episodes: list[Episode]) -> dict[str, float]:
        """Push the learner's weights; checked on the step's longest episode."""
        probe = max(episodes, key=lambda e: e.num_generated)
        return self.push(probe.token_ids, probe.prompt_len)

    def push(self, probe: list[int], start: int) -> dict[str, float]:
        t0 = time.perf_counter()
        self.version += 1
        self.transport.push(self.version)
        sync_s = time.perf_counter() - t0
        gap = self.check(probe, start)
        return {"timing/sync_s": sync_s, "sync/logprob_gap_max": gap, "policy_version": float(self.version)}

    def check(self, probe: list[int], start: int) -> float:
        want = self.learner.score([probe], start)[0]
        # A worker that died meanwhile is revived with these weights and left out of the check.
        got = wait_named(
            self.pool.score([probe], start),
            self.timeout_s,
            "the engines' logprobs",
            _reviver(self.pool, self.timeout_s),
        )
        worst = max([0.0] + [abs(a - b) for scored in got.values() for a, b in zip(want, scored[0])])
        if worst > self.tol:
            raise WeightSyncError(
                f"after sync to version {self.version} the engine's logprobs "
                f"differ from the learner's by up to {worst:.2e} "
                f"(tolerance learner.sync_check_tol={self.tol})"
            )
        return float(worst)
