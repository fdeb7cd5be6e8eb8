"""Agents that run their own loop: ``agent.entrypoint`` is called once per episode with the
task and a session of the worker's endpoint (``rlagent.rollout.endpoint``).

``function(task: dict, session: AgentSession) -> float | None``, sync (run in a thread of
its own) or async (a coroutine on the worker's loop; it must not block). At most
``rollout.max_concurrent_episodes`` run at once. The returned number is the episode's reward
component ``agent`` (None: the config's reward plugins score the recorded messages). An agent
that raises, returns something else, or runs past ``agent.timeout_s`` is counted
(``agent/errors``, ``agent/timeouts``) and its episodes are left out of the update.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rlagent.imports import import_callable
from rlagent.records import Episode, Task
from rlagent.rollout.episodes import Slots, play_groups

if TYPE_CHECKING:
    from rlagent.rollout.endpoint import AgentEndpoint


@dataclass(frozen=True)
class AgentSession:
    """What an agent needs to call the policy: an OpenAI client's ``base_url`` and
    ``api_key``, and the ``model`` name to send. Valid while the agent's call runs."""

    base_url: str
    api_key: str
    model: str
    episode_id: str

    def env(self) -> dict[str, str]:
        """The variables an OpenAI client reads, for an agent in a subprocess."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": self.api_key}


def load_entrypoint(spec: str, search_path: str | None = None) -> Callable[..., Any]:
    """``agent.entrypoint``, ``package.module:function`` (``search_path``, e.g. the driver's
    working directory, is put on ``sys.path`` first); a ``ConfigError`` when it cannot load."""
    return import_callable(spec, "agent.entrypoint", search_path)


class AgentRunner:
    """Plays episodes by calling the agent; the same ``run`` as ``EpisodeRunner``."""

    def __init__(
        self, endpoint: AgentEndpoint, fn: Callable[..., Any], timeout_s: float, max_concurrent: int
    ):
        self.endpoint, self.fn, self.timeout_s, self.max_concurrent = endpoint, fn, timeout_s, max_concurrent
        self._slots = Slots(max_concurrent)

    async def run(
        self,
        tasks: list[tuple[int, Task]],
        group_size: int,
        on_group: Callable[[list[Episode]], None] = lambda g: None,
        started: float | None = None,
    ) -> list[Episode]:
        slots = self._slots.get()
        t0 = time.time() if started is None else started

        def one(g: int, task: Task) -> Any:
            return self._episode(g, task, t0, slots)

        return await play_groups(tasks, group_size, on_group, one)

    async def _episode(self, group: int, task: Task, t0: float, slots: asyncio.Semaphore) -> list[Episode]:
        async with slots:
            uid = uuid.uuid4().hex[:16]
            key, session = self.endpoint.open(task, group, uid, t0)
            public = AgentSession(self.endpoint.base_url, key, self.endpoint.model, uid)
            try:
                value, error = await self._call(task.to_dict(), public)
            finally:
                self.endpoint.close(key)
            termination = "terminated"
            if error is not None:
                termination = "agent_timeout" if error.startswith("TimeoutError") else "agent_error"
            elif not session.samples:
                termination, error = "agent_error", "the agent returned without calling the model"
            episodes = session.episodes(termination, value, error)
            return episodes or [Episode.failed(task, group, termination, error or "", uid=uid)]

    async def _call(self, task: dict[str, Any], session: AgentSession) -> tuple[float | None, str | None]:
        """The agent's return value and None, or None and what went wrong."""
        timeout = self.timeout_s
        try:
            if inspect.iscoroutinefunction(self.fn):
                got = await asyncio.wait_for(self.fn(task, session), timeout)
            else:
                got = await _in_thread(self.fn, timeout, task, session)
        except TimeoutError:
            return None, f"TimeoutError: the agent ran past agent.timeout_s={timeout}"
        except Exception as err:  # noqa: BLE001 - the agent's fault, counted
            return None, f"{type(err).__name__}: {err}"
        if got is None:
            return None, None
        if isinstance(got, (int, float)) and math.isfinite(float(got)):
            return float(got), None
        return None, f"ValueError: the agent returned {got!r:.80}, expected a finite number or None"

    def close(self) -> None:
        """Nothing to release per call (the endpoint stops with its worker)."""


async def _in_thread(fn: Callable[..., Any], timeout: float, *args: Any) -> Any:
    """``fn(*args)`` in a thread of its own, under ``timeout``: a hung agent keeps its thread
    (its session's key is revoked, so its later calls fail) and holds no slot."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, err: BaseException | None) -> None:
        if not future.done():
            future.set_exception(err) if err is not None else future.set_result(value)

    def target() -> None:
        try:
            value, err = fn(*args), None
        except BaseException as e:  # noqa: BLE001 - handed to the caller (SystemExit too)
            value, err = None, e if isinstance(e, Exception) else RuntimeError(f"{type(e).__name__}: {e}")
        try:
            loop.call_soon_threadsafe(settle, value, err)
        except RuntimeError:  # the loop has closed
            pass

    threading.Thread(target=target, name="agent", daemon=True).start()
    return await asyncio.wait_for(future, timeout)
