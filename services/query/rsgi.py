"""The query service on granian's RSGI interface: evaluations answered from RSGI, the rest bridged to the ASGI app.

granian serves a bare handler about 1.6 times faster over RSGI than over ASGI
here (shared/BRIEF.md: 42–52k against 25–30k requests/s), because RSGI hands the
request over as one object and takes the answer as one call, with no message
dicts. OFREP and native single-flag evaluation are the hot path, so they are
answered here by `HotPath`, exactly as the ASGI adapter answers them. The rest
(bulk native evaluation, the catalogue, probes, the docs) goes to the FastAPI app through a
small bridge that builds the ASGI scope and collects the answer; the app's
lifespan runs through granian's own ASGI lifespan protocol in `__rsgi_init__`.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI
from granian.asgi import LifespanProtocol
from starlette.types import Message

from services.infra.settings import Settings
from services.query import ofrep
from services.query.app import app_from_env as fastapi_app_from_env
from services.query.fastpath import HotPath, HotRequest, is_hot

__all__ = ["RSGIQueryApp", "app_from_env"]

_ASGI = {"version": "3.0", "spec_version": "2.3"}


class RSGIQueryApp:
    def __init__(self, app: FastAPI, *, cors: bool = False) -> None:
        self.app = app
        self._cors = cors  # the app has a CORS layer: leave requests from browsers to it
        self._endpoint = HotPath(app)
        self._lifespan = LifespanProtocol(app)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self._lifespan.startup())
        if self._lifespan.interrupt:
            raise RuntimeError("the query app failed to start") from self._lifespan.exc
        # What startup made (the app, its models, the modules: ~76k objects) lives as long as the worker; left to
        # the collector, every full collection walks it (80 ms measured here, a p99 spike under load). Frozen, a
        # full collection sees only what requests made since.
        gc.freeze()

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self._lifespan.shutdown())

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            protocol.close(403)  # no websockets here
            return
        if is_hot(scope.method, scope.path) and not (self._cors and scope.headers.get("origin") is not None):
            await self._hot(scope, protocol)
            return
        await self._bridge(scope, protocol)

    async def _hot(self, scope: Any, protocol: Any) -> None:
        headers = scope.headers
        read: bytes | None = None

        async def body() -> bytes:
            if read is not None:
                return read
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) <= ofrep.MAX_BODY:
                return bytes(await protocol())  # announced and small (the server holds it to that): one call
            chunks, size = [], 0
            async for chunk in protocol:  # stop past the limit: a huge body is refused unread
                chunks.append(chunk)
                size += len(chunk)
                if size > ofrep.MAX_BODY:
                    break
            return b"".join(chunks)

        path = unquote(scope.path)
        client = scope.client.rpartition(":")[0]
        authorization = headers.get("authorization")
        if_none_match = headers.get("if-none-match")
        endpoint = self._endpoint
        if scope.method == "POST":  # OFREP: a known evaluator's answer from a plan, with no await but the body's
            principal = endpoint.evaluator(authorization, client)
            if principal is not None:
                read = await body()
                reply = endpoint.planned(principal, path, read, if_none_match)
                if reply is not None:
                    protocol.response_bytes(reply.status, reply.headers, reply.body)
                    return
        request = HotRequest(scope.method, path, scope.query_string, client, authorization, if_none_match)
        reply = await endpoint.reply(request, body)
        protocol.response_bytes(reply.status, reply.headers, reply.body)

    async def _bridge(self, scope: Any, protocol: Any) -> None:
        """One ASGI request and answer over RSGI: the body read whole, the answer collected whole."""
        received = False

        async def receive() -> Message:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": await protocol(), "more_body": False}
            await protocol.client_disconnect()
            return {"type": "http.disconnect"}

        status, headers, chunks = 500, [], []

        async def send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in message.get("headers", ())]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(_asgi_scope(scope), receive, send)
        protocol.response_bytes(status, headers, b"".join(chunks))


def _asgi_scope(scope: Any) -> dict[str, Any]:
    """The ASGI scope of an RSGI request."""
    headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in scope.headers.items()]
    host, _, port = scope.client.rpartition(":")
    server_host, _, server_port = scope.server.rpartition(":")
    return {
        "type": "http",
        "asgi": _ASGI,
        "http_version": scope.http_version,
        "method": scope.method,
        "scheme": scope.scheme,
        "path": unquote(scope.path),
        "raw_path": scope.path.encode(),
        "query_string": scope.query_string.encode(),
        "root_path": "",
        "headers": headers,
        "client": (host, int(port or 0)),
        "server": (server_host, int(server_port or 0)),
    }


def app_from_env() -> RSGIQueryApp:
    """Factory for granian's RSGI interface (`python -m services.query`)."""
    return RSGIQueryApp(fastapi_app_from_env(), cors=bool(Settings().cors_origins))
