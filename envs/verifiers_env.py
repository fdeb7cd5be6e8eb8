"""verifiers environments (``pip install verifiers==0.4.0``) under the rlagent contract:
``env: {id: verifiers/<environment id>, kwargs: {...}}``.

verifiers 0.4.0 (its ``verifiers.v1`` API; the older ``SingleTurnEnv``/``Rubric`` API is gone)
calls an environment a *taskset*: an installed package whose module (the id with ``-`` as
``_``; a hub id ``owner/name`` installs as ``name``) exports a ``vf.Taskset`` subclass via
``__all__``, and optionally a ``vf.Env`` subclass whose ``run(task, agents)`` drives a
multi-turn exchange (a game engine answering each move). verifiers finds it the way its own
loaders do, built-in tasksets first (``verifiers/textarena``). ``kwargs`` are the taskset
config's fields (what verifiers' CLI sets with ``--env.taskset.*``), except this adapter's own:

- ``max_turns``: the agent's turn limit (default: the env's own, often none);
- ``task_limit``: draw tasks from the first ``task_limit`` only (needed for an infinite taskset);
- ``system_in_observation`` (True): put the task's system prompt at the top of the first
  observation; with False it is left out and only reported in ``info["system_prompt"]``
  (set ``env.system_prompt`` to it instead);
- ``success_threshold`` (1.0): ``info["success"]`` is ``reward >= success_threshold``, the
  rule of verifiers' best-of-n env;
- ``search_path``: a folder put on ``sys.path`` before the taskset is imported (an
  environment's source folder that is not pip-installed; relative to the working directory);
- ``max_text_length`` (65536): the spaces' bound;
- ``taskset: {...}``: more taskset fields, for one whose name is one of the above.

A task is one of the taskset's tasks, by position (``task["index"]``, else a stable hash of
its id or seed; ``task["key"]``, verifiers' task identity, is checked when given).
``generate_task`` draws positions, so a group's samples play the same task.

How an episode is played. verifiers runs an agent as a harness program in a sandbox whose
model calls pass through an interception server; here the model is the policy, whose replies
arrive through ``step``, so the adapter sits in the agent's seat in-process and runs the rest
with verifiers' own parts: the env's ``setup``/``run``/``finalize``, the trace and its
message graph, the task's ``@vf.stop`` and ``@vf.intercept`` hooks and the turn limit (checked
before each model call, as the interception server does), the task's ``setup``/``finalize``
and its ``@vf.reward``/``@vf.metric`` scoring (``task.score(trace)``). The seat behaves as the
tool-less ``null`` chat harness: the system prompt as a system message, one model call per
segment. Not supported (a clear error): envs with several agent seats, tasks with tool
servers (MCP toolsets) or containers; signals that need a runtime are skipped, as verifiers
does when it scores offline.

Observations are text: at reset the task's prompt (the system prompt first, see above);
after each reply, the messages the env sent back (``interaction.turn(...)``), their text
joined by blank lines (a non-user message is prefixed with its role, ``[tool] ...``). A
single-turn taskset ends at the first reply. The reward arrives at the end: the trace's
weighted sum of rewards (``trace.reward``, what verifiers trains on). ``info`` holds ``turn``
and, at the end, ``reward/<name>`` (each reward's unweighted score), ``reward_weights``,
``metric/<name>``, ``stop_condition`` (verifiers' words: ``agent_completed``, ``max_turns``,
a stop hook's name, ...), ``verifiers_reward`` and ``success``. An episode verifiers marks
failed (a task hook or reward raised, the env's ``run`` raised) raises from ``step``, so the
trainer leaves it out as an env error. A turn limit ends the episode as truncated.

verifiers' coroutines run on one event loop per process, in a thread of its own: ``reset``
and ``step`` (called from the trainer's worker threads) hand it work and wait, so a loop
running in the caller's thread is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, NoReturn

import gymnasium

from rlagent.envs.gym_text import task_seed
from rlagent.envs.text import AnyText

PREFIX = "verifiers/"
MODEL = "rlagent-policy"  # the model name recorded on traces: the policy being trained
# This adapter's own kwargs: the rest are taskset fields. The first group picks the tasks
# (so the task generator and the env must agree on them); the second only shapes episodes.
SOURCE_KWARGS = ("task_limit", "search_path", "taskset")
EPISODE_KWARGS = ("max_turns", "system_in_observation", "success_threshold", "max_text_length")
LIMIT_STOPS = ("max_turns", "max_input_tokens", "max_output_tokens", "max_total_tokens")


def register(env_id: str) -> None:
    """Register ``verifiers/<environment id>`` with Gymnasium (the environment is loaded when
    made). The entry point is a subclass naming the environment, so that its
    ``generate_task``, which gets only ``env.kwargs``, knows which one to draw from."""
    if env_id not in gymnasium.registry:
        gymnasium.register(id=env_id, entry_point=entry_point(env_id.removeprefix(PREFIX)))


_CLASSES: dict[str, type[VerifiersEnv]] = {}


def entry_point(environment: str) -> type[VerifiersEnv]:
    """The ``VerifiersEnv`` subclass for one environment id (one class per id and process)."""
    if environment not in _CLASSES:
        _CLASSES[environment] = type(
            "VerifiersEnv", (VerifiersEnv,), {"environment": environment, "__module__": __name__}
        )
    return _CLASSES[environment]


# ------------------------------------------------------------------ the verifiers event loop
_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None
_loop_pid = 0


def _event_loop() -> asyncio.AbstractEventLoop:
    """The process's verifiers loop, started on first use (and again in a forked child)."""
    global _loop, _loop_thread, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid() or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            _loop_thread = threading.Thread(target=_loop.run_forever, name="verifiers-loop", daemon=True)
            _loop_thread.start()
            _loop_pid = os.getpid()
        return _loop


def _run(coro: Any) -> Any:
    """Run a coroutine on the verifiers loop and wait for its result in this thread."""
    loop = _event_loop()
    if threading.current_thread() is _loop_thread:
        coro.close()
        raise RuntimeError("a verifiers env was stepped from inside the verifiers event loop")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


# ------------------------------------------------------------------ loading an environment
def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``env.kwargs`` as (taskset fields, the adapter's task-choosing options)."""
    source = {k: kwargs[k] for k in SOURCE_KWARGS if kwargs.get(k) is not None}
    fields = {k: v for k, v in kwargs.items() if k not in SOURCE_KWARGS + EPISODE_KWARGS}
    nested = source.pop("taskset", None) or {}
    if not isinstance(nested, dict):
        raise ValueError(f"env.kwargs.taskset: expected a mapping of taskset fields, got {nested!r:.80}")
    return fields | nested, source


class _Source:
    """One verifiers environment loaded in this process (its ``Env``, which holds the
    taskset) and the tasks drawn from it, shared by every gym env and task generator that
    name it with the same kwargs. Tasks are built lazily, in ``load()`` order."""

    def __init__(self, name: str, fields: dict[str, Any], task_limit: int | None, search_path: str | None):
        self.name = name
        self.env = _load_env(name, fields, search_path)
        taskset = self.env.taskset
        if task_limit is not None:
            if isinstance(task_limit, bool) or not isinstance(task_limit, int) or task_limit < 1:
                raise ValueError(f"env.kwargs.task_limit: expected an int >= 1, got {task_limit!r}")
            taskset = taskset.take(task_limit)
        elif not taskset.bounded:
            raise ValueError(
                f"env.id {PREFIX}{name}: the taskset is infinite; set env.kwargs.task_limit "
                f"(how many of its first tasks to draw from)"
            )
        self._iter: Iterator[Any] | None = iter(taskset)
        self._tasks: list[Any] = []
        self._lock = threading.Lock()

    def _fill(self, upto: int | None) -> None:
        with self._lock:
            while self._iter is not None and (upto is None or len(self._tasks) <= upto):
                task = next(self._iter, None)
                if task is None:
                    self._iter = None
                else:
                    self._tasks.append(task)

    def count(self) -> int:
        self._fill(None)
        if not self._tasks:
            raise ValueError(f"env.id {PREFIX}{self.name}: the taskset loaded no tasks")
        return len(self._tasks)

    def task(self, index: int) -> Any:
        self._fill(index)
        if not 0 <= index < len(self._tasks):
            raise ValueError(f"{PREFIX}{self.name}: no task at index {index} ({self.count()} tasks)")
        return self._tasks[index]


_sources: dict[str, _Source] = {}
_sources_lock = threading.Lock()


def _source(name: str, kwargs: dict[str, Any]) -> _Source:
    fields, opts = _split(kwargs)
    key = json.dumps([name, fields, opts], sort_keys=True, default=repr)
    with _sources_lock:
        if key not in _sources:
            _sources[key] = _Source(name, fields, opts.get("task_limit"), opts.get("search_path"))
        return _sources[key]


def _load_env(name: str, fields: dict[str, Any], search_path: str | None) -> Any:
    """verifiers' ``Env`` for taskset ``name`` with config ``fields``; a one-line error naming
    ``env.id`` when it cannot be loaded or is of a kind this adapter cannot play."""
    where = f"env.id {PREFIX}{name}"
    try:
        from pydantic import ValidationError
        from verifiers.v1.configs.agent import agent_config_fields
        from verifiers.v1.utils.loaders import environment_class, import_taskset, resolve_env_config
    except ImportError as err:
        raise ValueError(
            f"{where}: verifiers is not installed (pip install 'verifiers==0.4.0'): {err}"
        ) from err
    module = name.rsplit("/", 1)[-1].split("@", 1)[0].replace("-", "_").lower()
    if not module.isidentifier():
        raise ValueError(
            f"{where}: verifiers imports an environment as the top-level module {module!r}, which "
            f"is not a module name (put its folder on the path with env.kwargs.search_path)"
        )
    if search_path:
        path = os.path.abspath(search_path)
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        import_taskset(name)
    except ImportError as err:
        missing = getattr(err.__cause__, "name", None) or ""
        if isinstance(err, ModuleNotFoundError) and module.startswith(missing or "\0"):
            raise ValueError(
                f"{where}: no verifiers environment {module!r} is installed (install its package, "
                f"or set env.kwargs.search_path to the folder that holds it)"
            ) from err
        raise ValueError(f"{where}: importing {module!r} failed: {err.__cause__ or err}") from err
    try:
        config = resolve_env_config({"taskset": {**fields, "id": name}})
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'taskset'}: {e['msg']}" for e in err.errors()
        )
        raise ValueError(f"env.kwargs ({where}): {problems}") from err
    except (AttributeError, TypeError, ValueError) as err:  # no Taskset exported, or two
        raise ValueError(f"{where}: {err}") from err
    try:
        env = environment_class(config.taskset.id, config.id)(config)
    except Exception as err:
        raise ValueError(f"{where}: loading it failed: {type(err).__name__}: {err}") from err
    seats = list(agent_config_fields(env.config))
    if len(seats) != 1:
        raise ValueError(
            f"{where}: {type(env).__name__} has agent seats {seats}; the adapter plays one (the policy)"
        )
    task_cls = type(env.taskset).task_type()
    if type(env.taskset).toolsets(env.taskset.config) or task_cls.toolsets(env.taskset.config.task):
        raise ValueError(
            f"{where}: its tasks use tool servers (MCP toolsets), which the adapter does not run"
        )
    if task_cls.NEEDS_CONTAINER:
        raise ValueError(f"{where}: its tasks need a container runtime, which the adapter does not provide")
    return env


# ------------------------------------------------------------------ one episode
def _text(messages: list[Any], with_system: bool) -> str:
    """Messages as one observation: their text joined by blank lines; a system message only
    ``with_system``; a message from another role than user is prefixed with it."""
    from verifiers.v1.types import content_text

    parts = []
    for m in messages:
        text = content_text(m.content) if m.content is not None else ""
        if m.role == "system" and not with_system:
            continue
        parts.append(text if m.role in ("user", "system") else f"[{m.role}] {text}")
    return "\n\n".join(p for p in parts if p)


class _Episode:
    """One episode on the verifiers loop: the env's ``setup``, ``run`` and ``finalize`` with
    the policy in its agent seat. Each model call the seat makes becomes an ``("ask",
    messages)`` event for the gym side and waits for the reply ``step`` brings; the episode
    ends with ``("done", episode)`` or ``("error", exception)``."""

    def __init__(self, source: _Source, task: Any, max_turns: int | None):
        self.source, self.task, self.max_turns = source, task, max_turns
        self._events: asyncio.Queue[tuple[str, Any]] | None = None
        self._reply: asyncio.Future[str] | None = None
        self._runner: asyncio.Task[None] | None = None
        self.traces: list[Any] = []
        self.seated = False

    async def begin(self) -> tuple[str, Any]:
        self._events = asyncio.Queue()
        self._runner = asyncio.create_task(self._play())
        return await self._events.get()

    async def answer(self, text: str) -> tuple[str, Any]:
        assert self._events is not None and self._reply is not None and not self._reply.done()
        self._reply.set_result(text)
        return await self._events.get()

    async def ask(self, messages: list[Any]) -> str:
        """The seat's model call: hand ``messages`` (the ones the model has not seen) over."""
        assert self._events is not None
        self._reply = asyncio.get_running_loop().create_future()
        self._events.put_nowait(("ask", messages))
        return await self._reply

    async def cancel(self) -> None:
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)

    async def _play(self) -> None:
        assert self._events is not None
        try:
            episode = await self._episode()
        except BaseException as err:  # noqa: BLE001 - handed to the gym side, which raises it
            # A cancelled episode reports too, so that a step still waiting on it returns.
            self._events.put_nowait(("error", err))
            if not isinstance(err, Exception):
                raise
        else:
            self._events.put_nowait(("done", episode))

    async def _episode(self) -> Any:
        """What verifiers' ``Env.run_episode`` does, with this adapter's agents."""
        from verifiers.v1.agent import Agents
        from verifiers.v1.episode import EnvInfo, Episode
        from verifiers.v1.errors import EnvError, boundary
        from verifiers.v1.trace import TraceTask

        env, task = self.source.env, self.task
        episode = Episode(
            env=EnvInfo(id=env.config.env_id),
            task=TraceTask(type=type(task).__name__, data=task.data, key=task.key, hash=task.hash),
        )
        self.traces = episode.traces  # where the seat puts its finished trace
        agents = Agents(env.config, make=lambda name, spec: _Seat(self, name, spec))
        async with boundary(EnvError, f"{type(env).__name__}.setup()"):
            await env.setup(agents)
        async with boundary(EnvError, f"{type(env).__name__}.run()"):
            await env.run(task, agents)
            if not episode.traces:
                raise ValueError(f"{type(env).__name__}.run() ran no agent")
        async with boundary(EnvError, f"{type(env).__name__}.finalize()"):
            await env.finalize(task, episode)
        episode.ok = all(t.ok for t in episode.traces)
        return episode


class _Seat:
    """The policy's agent seat for one episode (what ``Env.run`` calls ``agents.<name>``):
    ``run(task)`` for one segment on the task's prompt, ``interaction(task)`` for an exchange
    with the env as the user. One run per episode: a second would be a second conversation."""

    def __init__(self, episode: _Episode, name: str, config: Any):
        self.episode, self.name, self.config = episode, name, config
        self.trainable = True

    def _start(self, task: Any, runtime: Any, tools: Any, has_user: bool) -> _Run:
        if runtime is not None or tools:
            raise NotImplementedError("the rlagent adapter runs no runtimes or tool servers")
        if self.episode.seated:
            raise NotImplementedError("the rlagent adapter plays one agent run per episode")
        self.episode.seated = True
        return _Run(self, task, has_user)

    async def run(self, task: Any, *, runtime: Any = None, tools: Any = None, **_: Any) -> Any:
        run = self._start(task, runtime, tools, has_user=False)
        try:
            if await run.open():
                await run.step(None)
                if run.ok:
                    run.trace.stop("agent_completed")
            trace = await run.close()
        except BaseException:
            run.abort()
            raise
        self.episode.traces.append(trace)
        return trace

    @contextlib.asynccontextmanager
    async def interaction(
        self, task: Any, *, runtime: Any = None, tools: Any = None, **_: Any
    ) -> AsyncIterator[_Interaction]:
        run = self._start(task, runtime, tools, has_user=True)
        try:
            if not await run.open() and run.failure is not None:
                await run.close()
                raise run.failure
            interaction = _Interaction(run)
            try:
                yield interaction
            except Exception as err:
                run.fail(err)
                raise
            except BaseException:
                run.abort()
                raise
            finally:
                if not run.closed:
                    await interaction.close()
        finally:
            if run.trace.is_completed:
                self.episode.traces.append(run.trace)


class _Interaction:
    """``agent.interaction(task)``'s object: ``turn(message)`` runs one segment."""

    def __init__(self, run: _Run):
        self._run = run
        self._over = False
        self._started = False

    @property
    def trace(self) -> Any:
        return self._run.trace

    async def turn(self, message: Any = None) -> Any:
        """As verifiers' ``Interaction.turn``: a prompted task's opening reply with a bare
        ``turn()``, then one reply per user turn; a terminated ``Segment`` when the run ended
        (a limit or a ``@stop``) instead of answering."""
        from verifiers.v1.agent import Segment
        from verifiers.v1.dialects.chat import parse_message
        from verifiers.v1.types import ToolMessage, UserMessage

        if self._run.closed:
            raise RuntimeError("this interaction is closed")
        if self._over:
            raise RuntimeError("the exchange is over (the run ended); read interaction.trace")
        prompted = not self._started and self.trace.task.data.prompt is not None
        if message is None and not prompted:
            raise ValueError("nothing to run a turn on: this exchange takes its next user message")
        if message is not None and prompted:
            raise ValueError("the task's prompt opens this exchange: take its first reply with a bare turn()")
        messages = None
        if isinstance(message, str):
            messages = [UserMessage(content=message)]
        elif message is not None:
            messages = [parse_message(m) if isinstance(m, dict) else m for m in message]
        self._started = True
        turns, nodes = self.trace.num_turns, len(self.trace.nodes)
        await self._run.step(messages)
        if self.trace.num_turns > turns:
            out, replied = [], False
            for node in self.trace.nodes[nodes:]:
                if node.sampled:
                    out.append(node.message)
                    replied = True
                elif replied and isinstance(node.message, ToolMessage):
                    out.append(node.message)
            return Segment(messages=out, root_reply=self.trace.root_reply)
        self._over = True
        return Segment(messages=[], terminated=True)

    async def send(self, message: str, **_: Any) -> dict[str, Any]:
        raise NotImplementedError("the rlagent adapter delivers user turns with turn() only")

    steer = send

    async def close(self) -> Any:
        if not self._run.closed and self._run.ok:
            self.trace.stop("user_closed")
        return await self._run.close()


class _Run:
    """One agent run (verifiers' ``Rollout``) without a runtime or harness program: task
    setup, segments of one model call each (limits, stops and intercepts as the interception
    server applies them), then task finalize and scoring."""

    def __init__(self, seat: _Seat, task: Any, has_user: bool):
        from verifiers.v1.clients import ModelContext
        from verifiers.v1.configs.client import EvalClientConfig
        from verifiers.v1.session import RolloutLimits, RolloutSession, hook_boundary
        from verifiers.v1.state import state_cls
        from verifiers.v1.trace import AgentInfo, Trace, TraceTask
        from verifiers.v1.types import Request, Response
        from verifiers.v1.utils.decorators import discover_decorated

        self.episode, self.task, self.has_user = seat.episode, task, has_user
        config = seat.config.model_copy(update={"model": MODEL})
        self.trace = Trace(
            task=TraceTask(type=type(task).__name__, data=task.data, key=task.key, hash=task.hash),
            state=state_cls(type(task))(),
            agent=AgentInfo(config=config, name=seat.name, trainable=seat.trainable),
        )
        stops = [(hook_boundary(fn, allow_trace=True), fn) for fn in task.hooks("stop")]
        intercepts = [
            (hook_boundary(fn, allow_trace=False), fn) for fn in discover_decorated(task, "intercept")
        ]
        max_turns = self.episode.max_turns if self.episode.max_turns is not None else config.max_turns
        self.session = RolloutSession(
            ctx=ModelContext(model=MODEL, client=EvalClientConfig()),
            trace=self.trace,
            trace_stops=[fn for kind, fn in stops if kind is Trace],
            limits=RolloutLimits(max_turns=max_turns),
            request_interceptors=[fn for kind, fn in intercepts if kind is Request],
            response_interceptors=[fn for kind, fn in intercepts if kind is Response],
            request_stops=[fn for kind, fn in stops if kind is Request],
            response_stops=[fn for kind, fn in stops if kind is Response],
        )
        self.opened = self.closed = self.failed = False
        self.failure: Exception | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and self.trace.stop_condition is None

    def fail(self, error: Exception) -> None:
        self.failed, self.failure = True, error
        self.trace.record_error(error)

    def abort(self) -> None:
        self.closed = True

    async def open(self) -> bool:
        from verifiers.v1.errors import TaskError, boundary
        from verifiers.v1.utils.decorators import invoke

        self.opened = True
        try:
            if self.task.data.prompt is None and not self.has_user:
                raise TaskError("task has no prompt and no user to open the conversation")
            async with boundary(TaskError, "task setup"):
                await invoke(self.task.setup, {"trace": self.trace, "runtime": None})
        except Exception as err:  # noqa: BLE001 - recorded on the trace, as verifiers does
            self.fail(err)
            return False
        return not bool(self.session.stopped)

    async def step(self, messages: list[Any] | None) -> bool:
        """One segment: the task's prompt (``messages`` None) or the conversation so far plus
        the user's ``messages``, and one model call on it."""
        if not self.opened or self.closed or not self.ok:
            return False
        trace = self.trace
        turns, root_reply = trace.num_turns, trace.root_reply
        trace.root_reply = None
        try:
            await self._model_call(self._conversation(messages))
        except Exception as err:  # noqa: BLE001 - recorded on the trace, as verifiers does
            self.fail(err)
            return False
        finally:
            if trace.num_turns == turns:
                trace.root_reply = root_reply
        return self.ok and bool(trace.num_turns > turns)

    def _conversation(self, messages: list[Any] | None) -> list[Any]:
        """The request the null chat harness sends: the system prompt, then the task's prompt
        or (resuming) the branch so far and the new messages."""
        from verifiers.v1.types import SystemMessage, UserMessage

        data = self.trace.task.data
        if messages is None:
            prompt = data.prompt
            conversation = [UserMessage(content=prompt)] if isinstance(prompt, str) else list(prompt or [])
        else:
            branch = self.trace.branches[-1].messages if self.trace.branches else []
            conversation = [m for m in branch if m.role != "system" or data.system_prompt is None]
            conversation += messages
        system = [SystemMessage(content=data.system_prompt)] if data.system_prompt else []
        return system + conversation

    async def _model_call(self, messages: list[Any]) -> None:
        """One model call, as verifiers' interception server serves it, the reply coming from
        the policy: refused by a limit or a ``@stop``, rewritten by ``@intercept``s, committed
        to the trace's message graph and recorded as a ``ModelCall``."""
        from verifiers.v1 import graph
        from verifiers.v1.trace import ModelCall, TimeSpan
        from verifiers.v1.types import AssistantMessage, Request, Response

        session, trace = self.session, self.trace
        if await session.refused() is not None:
            return
        request, rewrites, stopped = await session.rewrite_request(Request(messages=messages))
        trace.request_rewrites.extend(rewrites)
        if stopped is not None:
            graph.prepare_turn(trace, request.messages, request.tools).commit_prompt()
            trace.stop(stopped)
            return
        turn = graph.prepare_turn(trace, request.messages, request.tools)
        started, node = time.time(), None
        try:
            text = await self.episode.ask(list(turn.tail))
            response = Response(
                id=uuid.uuid4().hex,
                created=int(started),
                model=MODEL,
                message=AssistantMessage(content=text),
                finish_reason="stop",
            )
            rewrites, stopped = [], None
            if session.response_interceptors or session.response_stops:
                response, rewrites, stopped = await session.rewrite_response(response)
            if session.stopped:
                return
            node = turn.commit(response)
            session.consume_prepared(turn.tail)
            trace.response_rewrites.extend(rewrites)
            if stopped is not None:
                trace.stop(stopped)
        finally:
            if node is None:
                turn.abandon()
            trace.calls.append(
                ModelCall(
                    node=node,
                    model=MODEL,
                    finish_reason="stop" if node is not None else None,
                    time=TimeSpan(start=started, end=time.time()),
                )
            )

    async def close(self) -> Any:
        """Task finalize and scoring (skipped after a failure; a stopped run scores what it
        has), as ``Rollout.close`` without a runtime: signals that need one are skipped."""
        from verifiers.v1.errors import TaskError, boundary
        from verifiers.v1.utils.decorators import invoke

        if self.closed:
            return self.trace
        self.closed = True
        try:
            if not self.failed and self.opened:
                async with boundary(TaskError, "task finalize"):
                    await invoke(self.task.finalize, {"trace": self.trace, "runtime": None})
                async with boundary(TaskError, "scoring"):
                    await self.task.score(self.trace, None)
        except Exception as err:  # noqa: BLE001 - recorded on the trace, as verifiers does
            self.fail(err)
        finally:
            self.trace.is_completed = True
            self.trace.ok = not self.failed
        return self.trace


# ------------------------------------------------------------------ the Gymnasium env
class VerifiersEnv(gymnasium.Env[str, str]):
    """A verifiers environment; see the module's docstring. ``environment`` (the id after
    ``verifiers/``) is set by the subclass ``register`` makes, or given."""

    metadata = {"render_modes": []}
    environment = ""

    @classmethod
    def generate_task(cls, rng: random.Random, difficulty: int, **kwargs: Any) -> dict[str, Any]:
        """A task drawn uniformly from the taskset (seeded by ``rng``): its position, verifiers'
        key for it, its prompt text and, when its data has one, its ``answer``."""
        source = _source(cls._name(), kwargs)
        return _task_record(source, rng.randrange(source.count()))

    @classmethod
    def _name(cls) -> str:
        if not cls.environment:
            raise ValueError("VerifiersEnv: no environment id (register 'verifiers/<id>' and make that)")
        return cls.environment

    def __init__(
        self,
        environment: str | None = None,
        max_turns: int | None = None,
        system_in_observation: bool = True,
        success_threshold: float = 1.0,
        max_text_length: int = 65536,
        **kwargs: Any,
    ):
        if environment:
            self.environment = environment
        if max_turns is not None and (
            isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1
        ):
            raise ValueError(f"env.kwargs.max_turns: expected an int >= 1, got {max_turns!r}")
        self.source = _source(self._name(), kwargs)
        self.max_turns = max_turns
        self.system_in_observation = bool(system_in_observation)
        self.success_threshold = float(success_threshold)
        self.max_text_length = max_text_length
        self.observation_space = AnyText(max_length=max_text_length)
        self.action_space = AnyText(max_length=max_text_length)
        self._episode: _Episode | None = None
        self.turn = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self._end_episode()
        task = (options or {}).get("task")
        index = self._index(task, seed)
        vf_task = self.source.task(index)
        self.turn = 0
        self._episode = _Episode(self.source, vf_task, self.max_turns)
        kind, value = _run(self._episode.begin())
        if kind != "ask":
            self._episode = None
            self._fail(kind, value)
        system = vf_task.data.system_prompt
        info = {"task_index": index, "turn": 0, "system_prompt": system}
        return self._fit(_text(value, self.system_in_observation)), info

    def _index(self, task: dict[str, Any] | None, seed: int | None) -> int:
        if task is None:
            return (seed or 0) % self.source.count()
        index = task.get("index")
        if index is None:
            index = task_seed(task) % self.source.count()
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(f"task {task.get('id')!r}: index must be an int, got {index!r}")
        key = task.get("key")
        if key is not None and self.source.task(index).key != key:
            raise ValueError(
                f"task {task.get('id')!r}: the task at index {index} of {PREFIX}{self.source.name} "
                f"is not the one drawn (its key differs: the taskset or its kwargs changed)"
            )
        return index

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._episode is None:
            raise RuntimeError("step() before reset(), or after the episode ended")
        self.turn += 1
        kind, value = _run(self._episode.answer(action))
        if kind == "ask":
            return self._fit(_text(value, True)), 0.0, False, False, {"turn": self.turn}
        self._episode = None
        if kind != "done" or not value.ok:
            self._fail(kind, value)
        return self._end(value)

    def _end(self, episode: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """The last step: the trace's reward and what verifiers recorded about it."""
        trace = episode.traces[-1]
        reward = float(trace.reward)
        info: dict[str, Any] = {
            "turn": self.turn,
            "stop_condition": trace.stop_condition,
            "verifiers_reward": reward,
            "success": reward >= self.success_threshold,
        }
        info |= {f"reward/{k}": None if r is None else r.score for k, r in trace.rewards.items()}
        info["reward_weights"] = {k: r.weight for k, r in trace.rewards.items() if r is not None}
        info |= {f"metric/{k}": v for k, v in trace.metrics.items()}
        truncated = trace.stop_condition in LIMIT_STOPS
        return "", reward, not truncated, truncated, info

    def _fail(self, kind: str, value: Any) -> NoReturn:
        """Raise why an episode gave no result: an exception on the loop (the env's ``run``
        raised), an episode verifiers marks failed (its last error), or one that ended
        before the model's first turn."""
        name = f"{PREFIX}{self.source.name}"
        if kind == "error":
            raise RuntimeError(f"{name}: the episode failed ({type(value).__name__}: {value})") from value
        if not value.ok:
            error = (value.traces[-1].last_error if value.traces else None) or value.last_error
            what = f"{error.type}: {error.message}" if error else "no error recorded"
            raise RuntimeError(f"{name}: the episode failed ({what})")
        raise RuntimeError(f"{name}: the episode ended before the model's first turn")

    def _fit(self, text: str) -> str:
        cap = self.max_text_length
        return text if len(text) <= cap else text[: cap - 20] + "\n[observation cut]"

    def _end_episode(self) -> None:
        """Cancel an episode still waiting on the model (its trace is dropped, unscored)."""
        episode, self._episode = self._episode, None
        if episode is not None:
            _run(episode.cancel())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._end_episode()


def _task_record(source: _Source, index: int) -> dict[str, Any]:
    task = source.task(index)
    record: dict[str, Any] = {
        "id": f"{PREFIX}{source.name}/{index}",
        "prompt": task.data.prompt_text,
        "index": index,
        "key": task.key,
    }
    answer = task.data.model_dump(mode="json").get("answer")
    if answer is not None:
        record["answer"] = answer
    return record


__all__ = ["PREFIX", "VerifiersEnv", "entry_point", "register"]
