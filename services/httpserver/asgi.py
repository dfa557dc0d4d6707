"""Requests a handler does not answer itself go to an ASGI app; the worker runs the app's lifespan.

The answer is collected whole before it is written (the query service's answers
are small JSON documents and pages), so the connection needs no streaming state.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import ASGIApp, Message

from services.httpserver.message import Reply, Request

__all__ = ["ASGIBridge", "Lifespan"]

log = logging.getLogger("flagstream.http")

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_HOP_BY_HOP = frozenset(("connection", "keep-alive", "transfer-encoding"))  # the server frames the answer


class ASGIBridge:
    """One request through `app`, its answer collected into a `Reply`."""

    __slots__ = ("app", "state")

    def __init__(self, app: ASGIApp, state: dict[str, Any] | None = None) -> None:
        self.app = app
        self.state = state if state is not None else {}  # what the lifespan left for every request (ASGI `state`)

    async def __call__(self, request: Request) -> Reply:
        received = False

        async def receive() -> Message:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            await asyncio.Event().wait()  # the body is all there is; a listener for disconnects waits until cancelled
            return {"type": "http.disconnect"}

        status: int | None = None
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    key = name.decode("latin-1").lower()
                    if key not in _HOP_BY_HOP:
                        headers.append((key, value.decode("latin-1")))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(self._scope(request), receive, send)  # an exception is the connection's to log and answer
        if status is None:
            raise RuntimeError("the app gave no answer")
        return Reply(status, headers, b"".join(chunks))

    def _scope(self, request: Request) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": _ASGI,
            "http_version": request.http_version,
            "method": request.method,
            "scheme": "http",
            "path": request.path,
            "raw_path": request.raw_path,
            "query_string": request.query_string,
            "root_path": "",
            "headers": request.headers,
            "client": request.client,
            "server": request.server,
            "state": dict(self.state),
        }


class Lifespan:
    """ASGI's lifespan protocol: `startup` before the first request, `shutdown` after the last."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        answer = await self._outbox.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the app failed to start: {answer.get('message', '')}")

    async def shutdown(self) -> None:
        if self._task is None or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        answer = await self._outbox.get()
        if answer["type"] != "lifespan.shutdown.complete":
            log.error("the app failed to shut down cleanly: %s", answer.get("message", ""))

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": _ASGI, "state": self.state}
        try:
            await self.app(scope, self._inbox.get, self._outbox.put)
        except Exception as exc:
            log.exception("the app's lifespan failed")
            await self._outbox.put({"type": "lifespan.startup.failed", "message": repr(exc)})
