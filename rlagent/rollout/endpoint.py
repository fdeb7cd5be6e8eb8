"""The agent endpoint: an OpenAI-compatible chat-completions server on a rollout worker's engine.

Every episode of an agent (``agent.entrypoint``) is a session with its own API key; the
endpoint answers ``POST /v1/chat/completions`` and ``GET /v1/models`` for a valid key and 401
(OpenAI's error shape) for any other. It renders the chat template itself and keeps, per
session, exactly the ids the engine was given and produced (``rlagent.rollout.session``).
It runs on the worker's event loop, beside the weight syncs, and listens on the node's own
address (``remote.node_address()``: loopback on a single machine), never on every interface.

``agent.request_log``: a folder where each call's engine input and output are written
(``worker_<i>.jsonl``), for checking token fidelity from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from rlagent.config import RolloutConfig
from rlagent.records import Task
from rlagent.rollout.chat import ChatTokens
from rlagent.rollout.engine import parse_tool_calls
from rlagent.rollout.openai_format import BadRequest, canonical, completion, error, parse_request
from rlagent.rollout.session import Session


def _server(app: Any) -> Any:
    """uvicorn's server without its signal handlers (the worker's process owns its signals)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False))


class AgentEndpoint:
    """Sessions on one engine, served over HTTP. Create, ``await start()``, then ``open``
    a session per episode and ``close`` it when the agent is done."""

    def __init__(
        self,
        engine: Any,
        chat: ChatTokens,
        tokenizer: Any,
        cfg: RolloutConfig,
        model: str,
        host: str,
        request_log: str | None = None,
    ):
        self.engine, self.chat, self.tokenizer, self.cfg = engine, chat, tokenizer, cfg
        self.model, self.host = model, host
        self.sessions: dict[str, Session] = {}
        self.log = Path(request_log) if request_log else None
        self._server: Any = None
        self._task: asyncio.Task | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = int(sock.getsockname()[1])
        self._server = _server(self.app())
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
            self._server = self._task = None

    # ---------------------------------------------------------------- sessions
    def open(self, task: Task, group: int, uid: str, started: float) -> tuple[str, Session]:
        """A new session and its API key."""
        key = "rla-" + secrets.token_urlsafe(24)
        self.sessions[key] = Session(self.chat, task, group, uid, self.cfg.max_episode_tokens, started)
        return key, self.sessions[key]

    def close(self, key: str) -> None:
        """Revoke the key: the session's later calls get 401."""
        self.sessions.pop(key, None)

    # ---------------------------------------------------------------- HTTP
    def app(self) -> FastAPI:
        api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        def answer(err: BadRequest) -> JSONResponse:
            kind = "authentication_error" if err.status == 401 else "invalid_request_error"
            return JSONResponse(error(str(err), err.param, err.code, kind), status_code=err.status)

        def session_of(request: Request) -> str:
            auth = request.headers.get("authorization", "")
            key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            if key not in self.sessions:
                raise BadRequest(
                    None,
                    "no valid API key: send the session's key as 'Authorization: Bearer <key>'"
                    if not key
                    else "this API key belongs to no open session",
                    status=401,
                    code="invalid_api_key",
                )
            return key

        @api.get("/v1/models")
        async def models(request: Request) -> Any:
            try:
                session_of(request)
            except BadRequest as err:
                return answer(err)
            entry = {"id": self.model, "object": "model", "created": 0, "owned_by": "rlagent"}
            return {"object": "list", "data": [entry]}

        @api.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Any:
            try:
                key = session_of(request)
                try:
                    body = json.loads(await request.body())
                except ValueError as err:
                    raise BadRequest(None, f"the body is not valid JSON: {err}") from err
                return await self.complete(key, parse_request(body))
            except BadRequest as err:
                return answer(err)

        return api

    async def complete(self, key: str, req: Any) -> dict[str, Any]:
        """One chat completion for session ``key``."""
        session = self.sessions[key]
        pending = session.begin(req)
        budget = min(req.max_tokens or self.cfg.max_new_tokens, self.cfg.max_new_tokens)
        budget = min(budget, self.cfg.max_episode_tokens - len(pending.prompt))
        try:
            # Sampling is the run's (rollout.temperature, top_p): the learner's importance
            # ratio assumes it. The request's stop strings are added to the run's.
            g = await self.engine.generate(
                pending.prompt,
                budget,
                temperature=self.cfg.temperature,
                top_p=self.cfg.top_p,
                stop=list(dict.fromkeys([*(self.cfg.stop or []), *req.stop])) or None,
            )
        except BaseException:
            session.cancel(pending)
            raise
        if key not in self.sessions:  # closed (timed out) while generating: nobody to answer
            session.cancel(pending)
            raise BadRequest(None, "this API key belongs to no open session", 401, "invalid_api_key")
        text = self.chat.decode(g.token_ids)
        content: str | None = _without_stop(text, req.stop, g.finish_reason)
        calls: list[dict[str, Any]] = []
        info: dict[str, Any] = {}
        if req.tools:
            parsed = parse_tool_calls(content or "", self.tokenizer)
            if parsed is None:
                info["malformed_tool_call"] = True
            else:
                content, calls = parsed
                for c in calls:
                    c["id"] = "call_" + secrets.token_hex(8)
        reply = {"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})}
        session.finish(pending, g, text, canonical(reply), info, session.now(), self.engine.version)
        if calls:
            info["tool_calls"] = [c["function"] for c in calls]
        self._write_log(session, pending, g)
        reason = "tool_calls" if calls else g.finish_reason
        return completion(
            f"chatcmpl-{session.uid}-{session.calls}",
            self.model,
            content,
            calls,
            reason,
            len(pending.prompt),
            len(g.token_ids),
        )

    def _write_log(self, session: Session, pending: Any, g: Any) -> None:
        if self.log is None:
            return
        row = {
            "session": session.uid,
            "call": session.calls,
            "sample": session.samples.index(pending.sample),
            "messages": pending.request.messages,
            "tools": pending.request.tools,
            "prompt_ids": pending.prompt,
            "generated_ids": list(g.token_ids),
        }
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as f:
            f.write(json.dumps(row) + "\n")


def _without_stop(text: str, stop: list[str], finish_reason: str) -> str:
    """OpenAI leaves a matched stop string out of the content (the tokens keep it)."""
    if finish_reason == "stop":
        for s in stop:
            if text.endswith(s):
                return text[: -len(s)]
    return text
