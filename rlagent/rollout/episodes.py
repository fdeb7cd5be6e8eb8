"""Multi-turn episodes on one engine: every episode is its own coroutine.

An episode generates, steps its env (in a thread, under ``rollout.step_timeout_s``),
generates again, and so on, never waiting for another episode: the engine batches whatever
requests are in flight (continuous batching), so a slow env step holds back only its own
episode. At most ``rollout.max_concurrent_episodes`` play at once; the next one starts as
soon as one ends. A group is handed on (``on_group``: to be scored) the moment its last
episode ends, while the others still play.

Token-in/token-out: each episode's ids grow by exactly what the engine produced, then by the
observation's template ids (loss mask 0). An env that raised or hung is closed and never
reused; later episodes get a fresh instance.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from rlagent.config import LatencyConfig, RolloutConfig
from rlagent.records import Episode, Task, Turn
from rlagent.rollout.chat import ChatTokens


class Slots:
    """At most ``n`` episodes at once, on whichever event loop plays them (a semaphore
    belongs to one loop: a new loop gets a new one)."""

    def __init__(self, n: int):
        self.n = n
        self._by: tuple[Any, asyncio.Semaphore] | None = None

    def get(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._by is None or self._by[0] is not loop:
            self._by = (loop, asyncio.Semaphore(self.n))
        return self._by[1]


async def play_groups(
    tasks: list[tuple[int, Task]],
    group_size: int,
    on_group: Callable[[list[Episode]], None],
    play: Callable[[int, Task], Awaitable[list[Episode]]],
) -> list[Episode]:
    """``group_size`` plays of each (group id, task) at once, each giving its episodes;
    ``on_group`` sees a group's episodes the moment its last play ends."""

    async def group(g: int, task: Task) -> list[Episode]:
        played = await asyncio.gather(*(play(g, task) for _ in range(group_size)))
        episodes = [e for one in played for e in one]
        on_group(episodes)
        return episodes

    groups = await asyncio.gather(*(group(g, t) for g, t in tasks))
    return [e for g in groups for e in g]


@dataclass
class _Live:
    """An episode being played."""

    task: Task
    group: int
    env: Any
    messages: list[dict[str, str]]
    ids: list[int]
    prompt_len: int
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    termination: str | None = None
    uid: str = ""

    def append(self, ids: list[int], policy: bool, logprobs: list[float] | None = None) -> None:
        self.ids += ids
        self.mask += [1 if policy else 0] * len(ids)
        self.logprobs += logprobs if logprobs is not None else [0.0] * len(ids)


class EpisodeRunner:
    """Plays episodes of one env id on one engine (an ``AsyncEngine``, or anything with its
    ``generate`` coroutine and ``version``); reuses env instances across calls. Its
    coroutines run on one event loop (the rollout worker's)."""

    def __init__(
        self,
        engine: Any,
        chat: ChatTokens,
        env_id: str,
        env_kwargs: dict[str, Any],
        cfg: RolloutConfig,
        system_prompt: str | None = None,
        latency: LatencyConfig | None = None,
    ):
        self.engine, self.chat, self.cfg = engine, chat, cfg
        self.env_id, self.env_kwargs, self.system_prompt = env_id, env_kwargs, system_prompt
        self.latency = latency
        self._free_envs: list[Any] = []
        self._slots = Slots(cfg.max_concurrent_episodes)

    async def run(
        self,
        tasks: list[tuple[int, Task]],
        group_size: int,
        on_group: Callable[[list[Episode]], None] = lambda g: None,
        started: float | None = None,
    ) -> list[Episode]:
        """Play ``group_size`` episodes of each (group id, task); ``on_group`` sees each
        group the moment its last episode ends. Turn times are seconds since ``started``
        (a ``time.time()``; default: now). Several calls may run at once: they share the
        ``max_concurrent_episodes`` slots."""
        slots = self._slots.get()
        t0 = time.time() if started is None else started

        async def one(g: int, task: Task) -> list[Episode]:
            return [await self._episode(g, task, t0, slots)]

        return await play_groups(tasks, group_size, on_group, one)

    async def _episode(self, group: int, task: Task, t0: float, slots: asyncio.Semaphore) -> Episode:
        async with slots:
            uid = uuid.uuid4().hex[:16]
            try:
                e = await self._start(group, task, uid)
            except Exception as err:  # the env failed to reset: the episode exists, flagged
                error = f"{type(err).__name__}: {err}"
                return Episode.failed(task, group, "env_error", error, self.engine.version, uid)
            while e.termination is None:
                await self._turn(e, t0)
            return self._finish(e)

    # ------------------------------------------------------------ one turn of one episode
    async def _turn(self, e: _Live, t0: float) -> None:
        budget = min(self.cfg.max_new_tokens, self.cfg.max_episode_tokens - len(e.ids))
        if budget < 1:
            e.termination = "max_tokens"
            return
        generate_start = time.time() - t0
        g = await self.engine.generate(
            e.ids, budget, temperature=self.cfg.temperature, top_p=self.cfg.top_p, stop=self.cfg.stop
        )
        generate_end = time.time() - t0
        start = len(e.ids)
        e.append(g.token_ids, policy=True, logprobs=g.logprobs)
        text = self.chat.decode(g.token_ids)
        e.messages.append({"role": "assistant", "content": text})
        versions = [(v, start + a, start + b) for v, a, b in g.versions]
        first = versions[0][0] if versions else self.engine.version
        turn = Turn(
            text,
            None,
            0.0,
            {},
            (start, len(e.ids)),
            g.finish_reason,
            first,
            versions if len({v for v, _, _ in versions}) > 1 else [],
            generate_start,
            generate_end,
        )
        e.turns.append(turn)
        turn.env_start = time.time() - t0
        result = await self._in_thread(e.env.step, text)
        turn.env_end = time.time() - t0
        self._after_step(e, result)

    def _after_step(self, e: _Live, res: Any) -> None:
        turn = e.turns[-1]
        if isinstance(res, BaseException):
            turn.info = {"error": f"{type(res).__name__}: {res}"}
            e.termination = "env_timeout" if isinstance(res, TimeoutError) else "env_error"
            # Never reuse an env that failed or may still be running; close it off the loop.
            threading.Thread(target=_close_quietly, args=(e.env,), daemon=True).start()
            e.env = None
            return
        obs, reward, terminated, truncated, info = res
        turn.env_reward, turn.info = float(reward), dict(info)
        if terminated or truncated:
            e.termination = "terminated" if terminated else "truncated"
        elif len(e.turns) >= self.cfg.max_turns:
            e.termination = "max_turns"
        else:
            obs_ids = self.chat.observation(obs, e.ids[turn.span[0] : turn.span[1]])
            if len(e.ids) + len(obs_ids) >= self.cfg.max_episode_tokens:
                e.termination = "max_tokens"
                return
            turn.observation = obs
            e.messages.append({"role": "user", "content": obs})
            e.append(obs_ids, policy=False)

    # ------------------------------------------------------------ start and finish
    async def _start(self, group: int, task: Task, uid: str) -> _Live:
        env = self._free_envs.pop() if self._free_envs else None
        obs: Any = None
        if env is not None:
            obs = await self._in_thread(_reset, env, task, uid)
            if isinstance(obs, BaseException):
                # A reused env that cannot reset most likely broke while it sat idle (its
                # browser or game process died): one more try, on a fresh instance.
                env = None
        if env is None:
            env = await self._in_thread(self._make_env)
            if isinstance(env, BaseException):
                raise env
            obs = await self._in_thread(_reset, env, task, uid)
        if isinstance(obs, BaseException):
            raise obs
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": obs})
        ids = self.chat.prompt(messages)
        return _Live(
            task,
            group,
            env,
            messages,
            ids,
            prompt_len=len(ids),
            mask=[0] * len(ids),
            logprobs=[0.0] * len(ids),
            uid=uid,
        )

    def _make_env(self) -> Any:
        env = gymnasium.make(self.env_id, **self.env_kwargs)
        if self.latency is not None:
            from rlagent.envs.latency import Latency

            env = Latency(env, self.latency.mean_s, self.latency.p99_s, self.latency.seed)
        return env

    def _finish(self, e: _Live) -> Episode:
        if e.env is not None:
            self._free_envs.append(e.env)
        episode = Episode(
            task=e.task,
            group=e.group,
            messages=e.messages,
            token_ids=e.ids,
            loss_mask=e.mask,
            logprobs=e.logprobs,
            prompt_len=e.prompt_len,
            turns=e.turns,
            termination=e.termination or "max_turns",
            policy_version=self.engine.version,
            uid=e.uid,
        )
        if e.turns:
            episode.policy_version = min(episode.versions_used())
        return episode

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a thread of its own: its result, or the exception it raised
        (``TimeoutError`` when it took longer than ``step_timeout_s``; the thread is left to
        finish on its own, and a hung call never holds a thread another episode needs)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(value: Any, error: BaseException | None) -> None:
            if not future.done():
                future.set_result(error if error is not None else value)

        def target() -> None:
            try:
                value, error = fn(*args), None
            except BaseException as err:  # noqa: BLE001 - handed to the episode
                value, error = None, err
            try:
                loop.call_soon_threadsafe(settle, value, error)
            except RuntimeError:  # the loop has closed: nobody waits for this call any more
                pass

        threading.Thread(target=target, name="env", daemon=True).start()
        try:
            return await asyncio.wait_for(future, self.cfg.step_timeout_s)
        except TimeoutError:
            return TimeoutError(f"env call exceeded step_timeout_s={self.cfg.step_timeout_s}")

    def close(self) -> None:
        for env in self._free_envs:
            _close_quietly(env)
        self._free_envs.clear()


def _reset(env: Any, task: Task, uid: str) -> str:
    """The first observation; an env that fails to reset is closed and the error raised."""
    try:
        obs, _ = env.reset(options={"task": task.to_dict(), "episode_id": uid})
    except BaseException:
        _close_quietly(env)
        raise
    return obs


def _close_quietly(env: Any) -> None:
    try:
        env.close()
    except Exception:  # a broken env may fail to close too; it is dropped either way
        pass
