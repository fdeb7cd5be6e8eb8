"""OpenEnv environments (``pip install openenv-core``) under the rlagent contract:
``env: {id: openenv/<name>, kwargs: {...}}``.

An OpenEnv environment is a server (a FastAPI app made by OpenEnv's ``create_app``) that a
client drives over a WebSocket. This adapter starts that server itself, on this machine, as a
child process (uvicorn, bound to 127.0.0.1 on a free port; no Docker), waits until its
``/health`` answers, and plays episodes through OpenEnv's own client (``GenericEnvClient``,
synchronous). Which server runs:

- ``openenv/echo`` or ``openenv/echo_env``: an installed OpenEnv env package (``echo_env``,
  as OpenEnv itself names them), whose app its ``openenv.yaml`` names (else ``server.app:app``);
- ``openenv/my_pkg.my_server``: a dotted name is a module whose ``app`` is the server;
- ``kwargs.server: "package.module:app"``: any app, the id's name then only a label;
- ``kwargs.base_url: "http://host:port"``: a server already running; nothing is started.

Modules are looked up from ``sys.path`` and the working directory, without importing them
here; the server process gets the same search path.

A task seeds the reset (``task["seed"]``, else a stable hash of its id), so a group's samples
start from the same state in every env whose ``reset`` takes a seed. The task's other fields
(beyond ``id``, ``prompt``, ``answer``, ...) and ``kwargs.reset_kwargs`` go to the env's
``reset`` too; OpenEnv passes on the ones its ``reset`` accepts.

Actions: the reply text goes into one field of the env's Action (``action_field``, a dotted
path for a nested one), or, with ``action_json: true``, the reply is a JSON object of the
Action's fields (found in the text, e.g. in a code block). By default the field is the
Action's one required string field (else its only string field) as its JSON schema
(``/schema``) says, and JSON when there is none. ``action_defaults`` holds fixed fields sent
with every action. A reply that is not a valid action is answered with an observation that says
so (``info["invalid_action"]``), not an error.

Observations: the field ``observation_key``, or ``observation_format`` filled from the fields;
by default the observation's only string field, else the whole observation as JSON. The other
fields go to ``info["fields"]``. The env's reward is the step's reward (``None`` counts 0;
``info["raw_reward"]`` keeps it as sent) and its ``done`` ends the episode (``terminated``).

The server starts at the first ``reset``. Each env runs a server of its own unless
``sessions_per_server`` is above 1: then up to that many envs of this process share one, each in
a session of its own; it must not exceed the sessions the app allows (``create_app``'s
``max_concurrent_envs``). A server takes seconds to start and ~180 MB, since OpenEnv's server
side imports gradio and fastmcp. ``close()`` stops it (when no other env uses it) and every
process it started. The server also dies with this process: it watches a pipe from it and kills
its process group when the pipe closes.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import importlib.util
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium

from rlagent.envs.gym_text import TASK_KEYS, task_seed
from rlagent.envs.text import AnyText
from rlagent.typed_config import ConfigError

PREFIX = "openenv/"
INSTALL_HINT = "pip install openenv-core"
_HEALTH_POLL_S = 0.1
_STOP_GRACE_S = 5.0
# Reset arguments that the adapter sets itself.
_RESET_OWN = frozenset({"seed", "episode_id"})


def register(env_id: str) -> None:
    """Register ``openenv/<name>`` with Gymnasium (the name is resolved when made)."""
    if env_id not in gymnasium.registry:
        gymnasium.register(
            id=env_id,
            entry_point="rlagent.envs.openenv_env:OpenEnvEnv",
            kwargs={"name": env_id.removeprefix(PREFIX)},
        )


def generate_task(rng: random.Random, difficulty: int, **_env_kwargs: Any) -> dict[str, Any]:
    """A seeded task: the env draws its episode from the reset seed."""
    seed = rng.randrange(2**31)
    return {"id": f"openenv/seed-{seed}", "prompt": f"env reset with seed {seed}", "seed": seed}


# ---- which server: the id's name -> "module:app" ---------------------------------------------


def _module_path(dotted: str) -> Path | None:
    """Where module ``dotted`` lives (its file, or its folder for a package), looked up on
    ``sys.path`` and the working directory without importing it; None when it is not found."""
    parts = dotted.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(parts[0], [os.getcwd()])
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if locations:
        path = Path(locations[0])
    elif spec.origin and spec.has_location:
        path = Path(spec.origin)
    else:
        return None
    for part in parts[1:]:
        found = None
        for base in locations:
            if Path(base, part).is_dir():
                found, locations = Path(base, part), [str(Path(base, part))]
                break
            if Path(base, part + ".py").is_file():
                found, locations = Path(base, part + ".py"), []
                break
        if found is None:
            return None
        path = found
    return path


def _package_candidates(name: str) -> list[str]:
    """Module names an OpenEnv env package may have for ``name``: as given, and as OpenEnv
    normalizes it (``echo``, ``echo-env`` -> ``echo_env``)."""
    plain = name.replace("-", "_")
    base = re.sub(r"[-_]env$", "", name).replace("-", "_")
    return list(dict.fromkeys([plain, f"{base}_env"]))


def _manifest_app(package_dir: Path) -> str:
    """The app an env package's ``openenv.yaml`` names, relative to the package."""
    manifest = package_dir / "openenv.yaml"
    if manifest.is_file():
        import yaml

        with contextlib.suppress(OSError, yaml.YAMLError):
            data = yaml.safe_load(manifest.read_text())
            if isinstance(data, dict) and isinstance(data.get("app"), str) and ":" in data["app"]:
                return str(data["app"])
    return "server.app:app"


def _installed_envs() -> list[str]:
    """Module names of the installed ``openenv-*`` env packages (as OpenEnv discovers them)."""
    names = set()
    for dist in importlib.metadata.distributions():
        project = str(dist.metadata["Name"] or "")
        if project.startswith("openenv-") and project != "openenv-core":
            names.add(project.removeprefix("openenv-").replace("-", "_"))
    return sorted(names)


def resolve_app(name: str, server: str | None = None) -> str:
    """The ``module:attribute`` of the server app to run for ``openenv/<name>``; a
    ``ConfigError`` naming the key when there is none."""
    if server is not None:
        module, sep, attr = str(server).partition(":")
        if not sep or not module or not attr.isidentifier():
            raise ConfigError(f"env.kwargs.server: expected 'package.module:app', got {server!r}")
        if _module_path(module) is None:
            raise ConfigError(f"env.kwargs.server: no module {module!r} on the path or in {os.getcwd()}")
        return str(server)
    key = f"env.id {PREFIX}{name}"
    name = re.sub(r"-v\d+$", "", name)
    if "." in name:
        if _module_path(name) is None:
            raise ConfigError(
                f"{key}: no module {name!r} on the path or in {os.getcwd()} "
                f"(a dotted name is a module whose 'app' is an OpenEnv server app)"
            )
        return f"{name}:app"
    for module in _package_candidates(name):
        where = _module_path(module)
        if where is None or not where.is_dir():
            continue
        app_module, _, attr = _manifest_app(where).partition(":")
        if _module_path(f"{module}.{app_module}") is not None:
            return f"{module}.{app_module}:{attr}"
    installed = _installed_envs()
    raise ConfigError(
        f"{key}: no installed OpenEnv env {name!r} (looked for the packages "
        f"{' or '.join(_package_candidates(name))} with a server app; installed: "
        f"{', '.join(installed) or 'none'}): install the env's package, or set "
        f"env.kwargs.server to 'package.module:app', or env.kwargs.base_url to a running server"
    )


# ---- the server process -----------------------------------------------------------------------


def _child_pythonpath() -> str:
    """The working directory and this process's own ``sys.path`` additions (not the
    interpreter's standard and site folders), so the server imports what this process can."""
    prefixes = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix})
    extra = [os.getcwd()]
    for entry in sys.path:
        path = os.path.abspath(entry or os.curdir)
        if os.path.isdir(path) and not path.startswith(prefixes):
            extra.append(path)
    inherited = os.environ.get("PYTHONPATH")
    return os.pathsep.join(dict.fromkeys([*extra, *([inherited] if inherited else [])]))


class _Server:
    """``uvicorn <app>`` in a child process of its own session, on a socket bound here (so no
    other process can take the port between choosing and binding it)."""

    def __init__(self, app: str, label: str, env_vars: Mapping[str, str], capacity: int = 1):
        self.app, self.label = app, label
        self.capacity, self.sessions = capacity, 0  # envs it may serve, and serves (see _acquire)
        self.healthy = False
        self._lock = threading.Lock()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            self.log = tempfile.TemporaryFile()
            env = {**os.environ, "ENABLE_WEB_INTERFACE": "false", **env_vars}
            env["PYTHONPATH"] = _child_pythonpath()
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-m", "rlagent.envs.openenv_env", app, str(sock.fileno())],
                stdin=subprocess.PIPE,  # the lifeline: closed when this process dies
                stdout=self.log,
                stderr=subprocess.STDOUT,
                pass_fds=(sock.fileno(),),
                start_new_session=True,
                env=env,
            )
        finally:
            sock.close()  # the child holds its own copy
        self.pid = self.proc.pid
        self._owner = os.getpid()

    def wait_healthy(self, timeout_s: float) -> None:
        """Until ``/health`` answers; an error naming the env when the server exits or does
        not answer within ``timeout_s`` (the server is stopped then)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout_s
        while not self.healthy:
            proc = self.proc
            code = -1 if proc is None else proc.poll()  # no proc: stopped (by an env sharing it)
            if code is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(
                    f"{self.label}: the server {self.app!r} exited at startup (exit code {code}): {tail}"
                )
            with contextlib.suppress(OSError, ValueError):
                left = max(deadline - time.monotonic(), 0.1)
                with opener.open(f"{self.url}/health", timeout=min(2.0, left)) as reply:
                    if reply.status == 200:
                        self.healthy = True
                        return
            if time.monotonic() >= deadline:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(
                    f"{self.label}: the server {self.app!r} did not answer /health within "
                    f"{timeout_s:g} s (env.kwargs.startup_timeout_s); its log ends: {tail or '(empty)'}"
                )
            time.sleep(_HEALTH_POLL_S)

    def log_tail(self) -> str:
        """The last line of the server's output."""
        with contextlib.suppress(OSError, ValueError):
            self.log.seek(0, os.SEEK_END)
            size = self.log.tell()
            self.log.seek(max(size - 4096, 0))
            lines = [line.strip() for line in self.log.read().decode("utf-8", "replace").splitlines()]
            return next((line for line in reversed(lines) if line), "")
        return ""

    def exit_code(self) -> int | None:
        proc = self.proc
        return -1 if proc is None else proc.poll()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL to its whole process group). Idempotent."""
        with self._lock:
            proc, self.proc = self.proc, None
        if proc is None or os.getpid() != self._owner:  # a forked child owns nothing
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_STOP_GRACE_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # what the server left behind, or a hung server
        proc.wait()
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        with contextlib.suppress(OSError):
            self.log.close()


def _serve(app: str, fd: int) -> None:
    """The server process: uvicorn on the socket ``fd``; when stdin closes (the process that
    started it died, or stopped it), its whole process group is killed."""
    import uvicorn

    def lifeline() -> None:
        with contextlib.suppress(Exception):
            sys.stdin.buffer.read()
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=lifeline, name="lifeline", daemon=True).start()
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3)
    uvicorn.Server(config).run(sockets=[sock])


# Servers of this process that envs share (``sessions_per_server`` > 1), by app and settings.
_SHARED: dict[tuple[str, tuple[tuple[str, str], ...]], list[_Server]] = {}
_SHARED_LOCK = threading.Lock()


def _acquire(app: str, label: str, env_vars: Mapping[str, str], capacity: int) -> _Server:
    """A running server of ``app`` with a free session, or a new one (not yet healthy)."""
    if capacity <= 1:
        server = _Server(app, label, env_vars)
        server.sessions = 1
        return server
    key = (app, tuple(sorted(env_vars.items())))
    with _SHARED_LOCK:
        servers = _SHARED.setdefault(key, [])
        for server in servers:
            if server.sessions < server.capacity and server.exit_code() is None:
                server.sessions += 1
                return server
        server = _Server(app, label, env_vars, capacity)
        server.sessions = 1
        servers.append(server)
        return server


def _release(server: _Server) -> None:
    """One env is done with ``server``: stopped when no env uses it any more (or it died)."""
    with _SHARED_LOCK:
        server.sessions -= 1
        if server.sessions > 0 and server.exit_code() is None:
            return
        for servers in _SHARED.values():
            if server in servers:
                servers.remove(server)
    server.stop()


def _shutdown(client: Any, server: _Server | None) -> None:
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()
    if server is not None:
        _release(server)


# ---- actions and observations -----------------------------------------------------------------


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (the whole text, or one inside prose or a code block)."""
    with contextlib.suppress(ValueError):
        value = json.loads(text)
        if isinstance(value, dict):
            return value
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        with contextlib.suppress(ValueError):
            value, _ = decoder.raw_decode(text, start)
            if isinstance(value, dict):
                return value
        start = text.find("{", start + 1)
    return None


def _is_string(prop: Mapping[str, Any]) -> bool:
    """A JSON-schema property that holds a string (``Optional[str]`` included)."""
    if prop.get("type") == "string":
        return True
    options = prop.get("anyOf") or []
    kinds = {o.get("type") for o in options if isinstance(o, Mapping)}
    return "string" in kinds and kinds <= {"string", "null"}


def _own_fields(schema: Mapping[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    props = schema.get("properties") or {}
    return {k: v for k, v in props.items() if k not in skip and isinstance(v, Mapping)}


def _text_field(schema: Mapping[str, Any], skip: frozenset[str]) -> str | None:
    """The one required string field, else the only string field; None when neither."""
    fields = _own_fields(schema, skip)
    required = [k for k in schema.get("required") or [] if k in fields]
    if len(required) == 1 and _is_string(fields[required[0]]):
        return str(required[0])
    strings = [k for k, v in fields.items() if _is_string(v)]
    if not required and len(strings) == 1:
        return strings[0]
    return None


def _schema_hint(schema: Mapping[str, Any]) -> str:
    """``message (string, required), count (integer)``: an Action's fields, for an invalid reply."""
    fields = _own_fields(schema, frozenset({"metadata"}))
    required = set(schema.get("required") or [])
    parts = []
    for name, prop in fields.items():
        kind = prop.get("type") or "/".join(
            str(o.get("type")) for o in prop.get("anyOf") or [] if isinstance(o, Mapping)
        )
        parts.append(f"{name} ({kind or 'any'}{', required' if name in required else ''})")
    return ", ".join(parts) or "(no fields)"


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[last] = value


def _http_url(url: str) -> str:
    url = url.rstrip("/")
    for ws, http in (("ws://", "http://"), ("wss://", "https://")):
        if url.startswith(ws):
            return http + url[len(ws) :]
    return url if "://" in url else f"http://{url}"


def _get_json(url: str, timeout_s: float, local: bool) -> Any:
    opener = urllib.request.build_opener(*([urllib.request.ProxyHandler({})] if local else []))
    with opener.open(url, timeout=timeout_s) as reply:
        return json.loads(reply.read().decode("utf-8"))


class OpenEnvEnv(gymnasium.Env[str, str]):
    """An OpenEnv environment, its server run here; see the module's docstring."""

    metadata = {"render_modes": []}
    generate_task = staticmethod(generate_task)

    def __init__(
        self,
        name: str,
        server: str | None = None,
        base_url: str | None = None,
        action_field: str | None = None,
        action_json: bool = False,
        action_defaults: Mapping[str, Any] | None = None,
        observation_key: str | None = None,
        observation_format: str | None = None,
        reset_kwargs: Mapping[str, Any] | None = None,
        server_env: Mapping[str, Any] | None = None,
        sessions_per_server: int = 1,
        startup_timeout_s: float = 120.0,
        message_timeout_s: float = 60.0,
        max_text_length: int = 65536,
        **unknown: Any,
    ):
        label = f"env.id {PREFIX}{name}"
        if unknown:
            raise ConfigError(
                f"env.kwargs.{sorted(unknown)[0]}: not an option of {PREFIX}{name} (options: server, "
                f"base_url, action_field, action_json, action_defaults, observation_key, "
                f"observation_format, reset_kwargs, server_env, sessions_per_server, startup_timeout_s, "
                f"message_timeout_s, max_text_length)"
            )
        if server is not None and base_url is not None:
            raise ConfigError("env.kwargs.base_url: a running server, so env.kwargs.server cannot be set too")
        if action_field is not None and action_json:
            raise ConfigError("env.kwargs.action_json: the reply is either one field or JSON, not both")
        if observation_key is not None and observation_format is not None:
            raise ConfigError("env.kwargs.observation_format: set it or observation_key, not both")
        for key, value in (
            ("action_defaults", action_defaults),
            ("reset_kwargs", reset_kwargs),
            ("server_env", server_env),
        ):
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"env.kwargs.{key}: expected a mapping, got {value!r}")
        if isinstance(sessions_per_server, bool) or not isinstance(sessions_per_server, int):
            raise ConfigError(
                f"env.kwargs.sessions_per_server: expected an int >= 1, got {sessions_per_server!r}"
            )
        if sessions_per_server < 1:
            raise ConfigError(
                f"env.kwargs.sessions_per_server: expected an int >= 1, got {sessions_per_server}"
            )
        if importlib.util.find_spec("openenv") is None:
            raise ConfigError(f"{label}: OpenEnv is not installed ({INSTALL_HINT})")
        self.name, self.label = name, label
        self.app = None if base_url is not None else resolve_app(name, server)
        self.base_url = base_url
        self.action_field = action_field
        self.action_json = bool(action_json)
        self.action_defaults = dict(action_defaults or {})
        self.observation_key = observation_key
        self.observation_format = observation_format
        self.reset_kwargs = dict(reset_kwargs or {})
        self.server_env = {str(k): str(v) for k, v in (server_env or {}).items()}
        self.sessions_per_server = sessions_per_server
        self.startup_timeout_s = float(startup_timeout_s)
        self.message_timeout_s = float(message_timeout_s)
        self.max_text_length = int(max_text_length)
        self.observation_space = AnyText(max_length=max_text_length)
        self.action_space = AnyText(max_length=max_text_length)
        self.server: _Server | None = None
        self._client: Any = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._action_schema: Mapping[str, Any] = {}
        self.turn = 0

    # -- connection

    def _connect(self) -> Any:
        """The client, on first use: the server started (unless ``base_url``), healthy, and the
        action and observation mappings settled from its schemas."""
        if self._client is not None:
            return self._client
        url = self.base_url
        if url is None:
            assert self.app is not None
            self.server = _acquire(self.app, self.label, self.server_env, self.sessions_per_server)
            self._finalizer = weakref.finalize(self, _shutdown, None, self.server)
        try:
            # OpenEnv's client imports its whole server side (gradio, fastmcp): seconds, once
            # per process, while the server starts
            from openenv.core.generic_client import GenericEnvClient

            if self.server is not None:
                self.server.wait_healthy(self.startup_timeout_s)
                url = self.server.url
            assert url is not None
            try:
                schemas = _get_json(f"{_http_url(url)}/schema", 30.0, local=self.server is not None)
            except (OSError, ValueError) as err:
                raise RuntimeError(f"{self.label}: no schema from the server at {url}: {err}") from err
            self._settle(schemas)
            client = GenericEnvClient(
                base_url=url, message_timeout_s=self.message_timeout_s, mode="simulation"
            ).sync()
            client.connect()
        except BaseException:
            self.close()
            raise
        self._client = client
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _shutdown, client, self.server)
        return client

    def _settle(self, schemas: Any) -> None:
        action = schemas.get("action") if isinstance(schemas, dict) else None
        observation = schemas.get("observation") if isinstance(schemas, dict) else None
        self._action_schema = action if isinstance(action, dict) else {}
        if self.action_field is None and not self.action_json:
            self.action_field = _text_field(self._action_schema, frozenset({"metadata"}))
            self.action_json = self.action_field is None
        if self.observation_key is None and self.observation_format is None:
            skip = frozenset({"reward", "done", "metadata"})
            self.observation_key = _text_field(
                {"properties": (observation or {}).get("properties") or {}}, skip
            )

    # -- the episode

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        client = self._connect()
        options = options or {}
        task = options.get("task")
        kwargs = dict(self.reset_kwargs)
        if task is not None:
            kwargs |= {k: v for k, v in task.items() if k not in TASK_KEYS and k not in _RESET_OWN}
            kwargs["seed"] = task_seed(task)
        else:  # Gymnasium's rule: an unseeded reset continues from the last seed
            kwargs["seed"] = int(self.np_random.integers(2**31))
        if options.get("episode_id") is not None:
            kwargs["episode_id"] = str(options["episode_id"])
        try:
            result = client.reset(**kwargs)
        except Exception as err:
            raise self._failure("reset", err) from err
        self.turn = 0
        text, fields = self._observation(result.observation)
        return text, {"env": self.name, "turn": 0, "invalid_action": False, "fields": fields}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        client = self._connect()
        self.turn += 1
        info: dict[str, Any] = {"env": self.name, "turn": self.turn}
        payload, problem = self._action(action)
        if payload is not None:
            try:
                result = client.step(payload)
            except Exception as err:
                if "VALIDATION_ERROR" not in str(err):
                    raise self._failure("step", err) from err
                problem = "the env rejected it as an action"
            else:
                text, fields = self._observation(result.observation)
                raw = result.reward
                info |= {"invalid_action": False, "raw_reward": raw, "fields": fields}
                reward = 0.0 if raw is None else float(raw)
                return text, reward, bool(result.done), False, info
        expected = (
            f"a JSON object with the fields {_schema_hint(self._action_schema)}"
            if self.action_json
            else f"text (it goes into the field {self.action_field!r})"
        )
        info |= {"invalid_action": True, "raw_reward": None, "fields": {}, "error": problem}
        return self._fit(f"invalid action: {problem}; expected {expected}"), 0.0, False, False, info

    def _action(self, text: str) -> tuple[dict[str, Any] | None, str]:
        """The action to send for a reply, or None and why it is not one."""
        action = copy.deepcopy(self.action_defaults)
        if self.action_json:
            fields = _json_object(text)
            if fields is None:
                return None, "no JSON object in the reply"
            action |= fields
        else:
            assert self.action_field is not None
            _set_path(action, self.action_field, text)
        return action, ""

    def _observation(self, observation: Any) -> tuple[str, dict[str, Any]]:
        obs = dict(observation) if isinstance(observation, Mapping) else {"observation": observation}
        if self.observation_format is not None:
            try:
                text = self.observation_format.format_map(obs)
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(
                    f"env.kwargs.observation_format: cannot fill it from the fields {sorted(obs)}: {err!r}"
                ) from err
            return self._fit(text), obs
        key = self.observation_key
        if key is None:
            return self._fit(json.dumps(obs, ensure_ascii=False, sort_keys=True, default=str)), obs
        if key not in obs:
            raise ValueError(
                f"env.kwargs.observation_key: the observation has no field {key!r} (fields: {sorted(obs)})"
            )
        value = obs[key]
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        return self._fit(text), {k: v for k, v in obs.items() if k != key}

    def _failure(self, call: str, err: Exception) -> RuntimeError:
        """An env call that failed, with why: the server's exit, or the error it sent."""
        if self.server is not None:
            code = self.server.exit_code()
            if code is not None:
                tail = self.server.log_tail()
                return RuntimeError(f"{self.label}: the server exited (code {code}) during {call}: {tail}")
        return RuntimeError(f"{self.label}: {call} failed: {err}")

    def _fit(self, text: str) -> str:
        cap = self.max_text_length
        return text if len(text) <= cap else text[: max(cap - 20, 0)] + "\n[observation cut]"[:cap]

    def close(self) -> None:
        """Close the client and stop the server (when this env started it). Idempotent."""
        client, self._client = self._client, None
        server, self.server = self.server, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        _shutdown(client, server)


if __name__ == "__main__":  # the server process: python -m rlagent.envs.openenv_env APP FD
    _serve(sys.argv[1], int(sys.argv[2]))
