"""Every wait on a Ray call, with its deadline; the table of fixed timeouts; the Ray session.

The stages run as Ray actors behind facades (``rollout.pool``, ``scoring.service``,
``learner.group``); their calls return ``ObjectRef``s and every result is taken here. A wait
never blocks without a deadline, its error says what it waited for (and which setting moves
the deadline), and of several calls the first failure is raised as soon as it is known: one
dead learner rank must not leave the driver waiting on the others.

Only Ray and the standard library are imported here, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ray


class WaitTimeout(TimeoutError):
    """A distributed call did not answer in time."""


class CallFailed(RuntimeError):
    """A named call of a group (``wait_named``) raised; the message names which one."""


@dataclass(frozen=True)
class Deadline:
    """A timeout and the setting it comes from (named in the error, so the user can raise it)."""

    seconds: float
    setting: str


# The waits that no component's own setting bounds: the engine start, a learner update, a
# checkpoint... Each can be raised in the run config (``ray.timeouts: {learner_step: 7200}``).
TIMEOUTS: dict[str, float] = {
    "engine_start": 600.0,  # a rollout worker's vLLM engine starts (model load, warm-up)
    "learner_start": 600.0,  # learner ranks start, meet and build their DeepSpeed engines
    "learner_step": 3600.0,  # one learner update (train_step)
    "learner_query": 600.0,  # learner logprobs, its training state
    "checkpoint": 1800.0,  # writing or loading a checkpoint
    "rewards_start": 120.0,  # the reward service loads its plugins
    "worker_restart": 600.0,  # Ray restarts a dead rollout worker
    "housekeeping": 60.0,  # memory polls, shutdowns
    "tracking": 600.0,  # a call to the W&B actor
}
_overrides: dict[str, float] = {}


def configure(timeouts: dict[str, float]) -> None:
    """Set the run's ``ray.timeouts`` (names from ``TIMEOUTS``; checked by the config)."""
    _overrides.clear()
    _overrides.update(timeouts)


def deadline(name: str) -> Deadline:
    """The fixed timeout ``name`` (``TIMEOUTS``), as overridden by ``ray.timeouts``."""
    return Deadline(_overrides.get(name, TIMEOUTS[name]), f"ray.timeouts.{name}")


def _seconds(timeout: float | Deadline) -> float:
    return timeout.seconds if isinstance(timeout, Deadline) else float(timeout)


def _timed_out(timeout: float | Deadline, what: str, still: str = "") -> WaitTimeout:
    setting = f" ({timeout.setting})" if isinstance(timeout, Deadline) else ""
    return WaitTimeout(f"timed out after {_seconds(timeout):.0f} s waiting for {what}{setting}{still}")


def wait(refs: Any, timeout: float | Deadline, what: str) -> Any:
    """``ray.get`` with a deadline, of one ref or a list. Of several refs, the first failure
    is raised as soon as it is known."""
    todo = refs if isinstance(refs, list) else [refs]
    end = time.monotonic() + _seconds(timeout)
    pending, done = list(dict.fromkeys(todo)), {}
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=max(end - time.monotonic(), 0.0))
            if not ready:
                raise _timed_out(timeout, what)
            if pending:  # and every other one that is ready by now, in one call
                more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                ready += more
            for ref in ready:
                done[ref] = ray.get(ref)
    except ray.exceptions.RayError as err:
        if hasattr(err, "add_note"):  # Python >= 3.11
            err.add_note(f"(while waiting for {what})")
        raise
    values = [done[r] for r in todo]
    return values if isinstance(refs, list) else values[0]


async def wait_async(refs: list[Any], timeout: float | Deadline, what: str) -> list[Any]:
    """``wait`` for a coroutine of an async actor: the values of ``refs`` (awaited on the
    actor's event loop, which goes on serving its other calls meanwhile)."""
    import asyncio

    try:
        return list(await asyncio.wait_for(asyncio.gather(*refs), _seconds(timeout)))
    except TimeoutError:
        raise _timed_out(timeout, what) from None


def wait_named(
    calls: dict[str, Any],
    timeout: float | Deadline,
    what: str,
    died: Callable[[str, Exception], bool] | None = None,
) -> dict[str, Any]:
    """Results of named calls (``{"learner rank 0": ref, ...}``). The first one to fail
    raises at once, naming it; a timeout names the calls still running. ``died(name, err)``
    sees a call whose actor died: when it returns True the death was dealt with (e.g. a
    restarted rollout worker got its weights another way) and the call is left out of the
    results; otherwise the error is raised."""
    names = {ref: name for name, ref in calls.items()}
    pending, results = list(names), {}
    end = time.monotonic() + _seconds(timeout)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(end - time.monotonic(), 0.0))
        if not ready:
            raise _timed_out(timeout, what, f"; still waiting on {', '.join(names[r] for r in pending)}")
        try:
            results[names[ready[0]]] = ray.get(ready[0])
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None) or err
            raise CallFailed(f"{what}: {names[ready[0]]} failed: {type(cause).__name__}: {cause}") from err
        except ray.exceptions.RayActorError as err:
            if died is None or not died(names[ready[0]], err):
                raise
    return {name: results[name] for name in calls if name in results}


def as_completed(refs: list[Any], end: float, what: str, timeout: Deadline) -> Iterator[Any]:
    """Each ref as soon as it is ready (not its value: the caller ``ray.get``s it and decides
    what a failure means), until every ref the caller is waiting on, including any it adds to
    ``refs`` meanwhile, is done. ``end`` is the ``time.monotonic()`` deadline ``timeout``
    set (the caller keeps it: a retry must fit in the same time)."""
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=max(end - time.monotonic(), 0.0))
        if not ready:
            raise _timed_out(timeout, what)
        refs.remove(ready[0])
        yield ready[0]


def await_restart(actor: Any, until: float, what: str) -> None:
    """Wait until a restarting actor answers (calls fail at once while Ray restarts it)."""
    while True:
        try:
            wait(actor.__ray_ready__.remote(), max(until - time.monotonic(), 1.0), what)
            return
        except ray.exceptions.ActorUnavailableError as err:
            if time.monotonic() > until:
                raise WaitTimeout(f"timed out waiting for {what}") from err
            time.sleep(0.5)


def placed(placement: Any, role: str, index: int) -> dict[str, Any]:
    """Scheduling options from ``rlagent.placement`` (none: Ray places the actor itself)."""
    return placement.options(role, index) if placement is not None else {}


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Connect to the job's cluster (``ray job submit``, RAY_ADDRESS, or ``address``) or
    start a local one; a session already open (a test's, a notebook's) is used as it is."""
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # "local": always a fresh local cluster, never a stale one left by `ray start`. No
        # dashboard, and no metrics exporter (plain HTTP on every interface, no token); Ray's
        # other ports require its token (docs/reliability.md).
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=True,
            _system_config={"enable_metrics_collection": False},
        )
    try:
        yield
    finally:
        ray.shutdown()


def node_address() -> str:
    """This node's address as Ray sees it (loopback on a single machine)."""
    return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]


def free_port(host: str = "") -> int:
    """A port free now on ``host`` (any interface when empty)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def peak_rss_gb(children: bool = False) -> float:
    """This process's peak resident memory (``ru_maxrss``), in GB; with ``children``, plus
    the peaks of its live child processes (an engine's own process), read from /proc."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return own + (sum(_peak_kb(pid) for pid in _children(os.getpid())) / 2**20 if children else 0.0)


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux; none elsewhere)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in map(int, f.read().split()):
                    found += [child, *_children(child)]
    except OSError:
        pass
    return found


def _peak_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
