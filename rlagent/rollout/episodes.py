"""Multi-turn episodes on one engine: every live episode's next turn in one batched call.

Token-in/token-out: each episode's ids grow by exactly what the engine produced, then by
the observation's template ids (loss mask 0). Env steps run in threads with a timeout, so
a slow or hung env truncates its own episode and never stalls the others. An env that
raised or hung is closed and never reused; later episodes get a fresh instance.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from rlagent.config import RolloutConfig
from rlagent.records import Episode, Task, Turn
from rlagent.rollout.chat import ChatTokens
from rlagent.rollout.engine import VLLMEngine


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

    def append(self, ids: list[int], policy: bool, logprobs: list[float] | None = None) -> None:
        self.ids += ids
        self.mask += [1 if policy else 0] * len(ids)
        self.logprobs += logprobs if logprobs is not None else [0.0] * len(ids)


class EpisodeRunner:
    """Plays episodes of one env id with one engine; reuses env instances across calls."""

    def __init__(
        self,
        engine: VLLMEngine,
        chat: ChatTokens,
        env_id: str,
        env_kwargs: dict[str, Any],
        cfg: RolloutConfig,
        system_prompt: str | None = None,
    ):
        self.engine, self.chat, self.cfg = engine, chat, cfg
        self.env_id, self.env_kwargs, self.system_prompt = env_id, env_kwargs, system_prompt
        self._free_envs: list[Any] = []
        self._envs_lock = threading.Lock()  # episodes start in threads and share the free list
        self._pool: cf.ThreadPoolExecutor | None = None
        # Held by each batched generate call. Whoever changes the engine's weights takes it
        # too, so new weights land between two turns, never inside one.
        self.weights_lock = threading.Lock()

    def run(
        self,
        tasks: list[tuple[int, Task]],
        group_size: int,
        version: int | Callable[[], int],
        on_done: Callable[[Episode], None] = lambda e: None,
    ) -> list[Episode]:
        """Play ``group_size`` episodes of each (group id, task); ``on_done`` sees each
        episode the moment it ends, while the others are still generating. ``version`` is
        the engine's weights version, or a function giving it at each turn (in-flight
        weight updates: each turn records the version that generated it)."""
        self._version = version if callable(version) else (lambda: version)
        jobs = [(g, t) for g, t in tasks for _ in range(group_size)]
        # A thread per episode: every env call starts at once, so its timeout measures the
        # call itself, and a hung call from an earlier step cannot hold a thread we need.
        self._pool = cf.ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="env")
        try:
            return self._play(jobs, on_done)
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _play(self, jobs: list[tuple[int, Task]], on_done: Callable[[Episode], None]) -> list[Episode]:
        results = self._in_threads(self._start, jobs)
        live: list[_Live] = []
        done: list[Episode] = []
        for (g, t), res in zip(jobs, results):
            if isinstance(res, _Live):
                live.append(res)
            else:  # the env failed to reset: the episode exists, flagged, with no turns
                ep = self._failed_start(g, t, res, self._version())
                done.append(ep)
                on_done(ep)
        while active := [e for e in live if e.termination is None]:
            self._turn(active)
            for e in active:
                if e.termination is not None:
                    done.append(self._finish(e))
                    on_done(done[-1])
        return done

    # ------------------------------------------------------------ one turn of all episodes
    def _turn(self, active: list[_Live]) -> None:
        budgets = [min(self.cfg.max_new_tokens, self.cfg.max_episode_tokens - len(e.ids)) for e in active]
        for e, b in zip(active, budgets):
            if b < 1:
                e.termination = "max_tokens"
        todo = [(e, b) for e, b in zip(active, budgets) if b >= 1]
        if not todo:
            return
        with self.weights_lock:
            version = self._version()
            gens = self.engine.generate(
                [e.ids for e, _ in todo],
                [b for _, b in todo],
                temperature=self.cfg.temperature,
                top_p=self.cfg.top_p,
                stop=self.cfg.stop,
            )
        actions = []
        for (e, _), g in zip(todo, gens):
            start = len(e.ids)
            e.append(g.token_ids, policy=True, logprobs=g.logprobs)
            text = self.chat.decode(g.token_ids)
            e.messages.append({"role": "assistant", "content": text})
            e.turns.append(Turn(text, None, 0.0, {}, (start, len(e.ids)), g.finish_reason, version))
            actions.append((e, text))
        steps = self._in_threads(lambda ea: ea[0].env.step(ea[1]), actions)
        for (e, _), res in zip(actions, steps):
            self._after_step(e, res)

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
    def _start(self, job: tuple[int, Task]) -> _Live:
        group, task = job
        with self._envs_lock:
            env = self._free_envs.pop() if self._free_envs else None
        obs = None
        if env is not None:
            try:
                obs = _reset(env, task)
            except Exception:
                # A reused env that cannot reset most likely broke while it sat idle (its
                # browser or game process died): one more try, on a fresh instance.
                env = None
        if env is None:
            env = gymnasium.make(self.env_id, **self.env_kwargs)
            obs = _reset(env, task)
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
        )

    def _finish(self, e: _Live) -> Episode:
        if e.env is not None:
            self._free_envs.append(e.env)
        version = e.turns[0].policy_version if e.turns else self._version()
        return Episode(
            task=e.task,
            group=e.group,
            messages=e.messages,
            token_ids=e.ids,
            loss_mask=e.mask,
            logprobs=e.logprobs,
            prompt_len=e.prompt_len,
            turns=e.turns,
            termination=e.termination or "max_turns",
            policy_version=version,
        )

    @staticmethod
    def _failed_start(group: int, task: Task, err: BaseException, version: int) -> Episode:
        info = {"error": f"{type(err).__name__}: {err}"}
        return Episode(
            task=task,
            group=group,
            messages=[],
            token_ids=[],
            loss_mask=[],
            logprobs=[],
            prompt_len=0,
            turns=[Turn("", None, 0.0, info, (0, 0), "")],
            termination="env_error",
            policy_version=version,
        )

    def _in_threads(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        """fn over items concurrently; each result or the exception it raised (TimeoutError
        when it took longer than ``step_timeout_s``)."""
        futures = [self._pool.submit(fn, it) for it in items]
        cf.wait(futures, timeout=self.cfg.step_timeout_s)
        out: list[Any] = []
        for f in futures:
            if not f.done():
                out.append(TimeoutError(f"env call exceeded step_timeout_s={self.cfg.step_timeout_s}"))
            elif f.exception() is not None:
                out.append(f.exception())
            else:
                out.append(f.result())
        return out

    def close(self) -> None:
        for env in self._free_envs:
            _close_quietly(env)
        self._free_envs.clear()


def _reset(env: Any, task: Task) -> str:
    """The first observation; an env that fails to reset is closed and the error raised."""
    try:
        obs, _ = env.reset(options={"task": task.to_dict()})
    except BaseException:
        _close_quietly(env)
        raise
    return obs


def _close_quietly(env: Any) -> None:
    try:
        env.close()
    except Exception:  # a broken env may fail to close too; it is dropped either way
        pass
