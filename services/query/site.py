"""The query service on `services.httpserver`: evaluations answered by `HotPath`, the rest by the FastAPI app.

OFREP and native single-flag evaluation are the hot path. A verified evaluator
whose answer a plan holds (OFREP) or the answer cache kept (native) is answered
synchronously, inside the `data_received` call that completed the request; any other hot request is answered by
`HotPath.reply` (the same authentication, refusals, counts and logs as ever);
OFREP's change stream (`GET /ofrep/v1/changes`) is answered by `ChangeStreams`
as a `Streamed` answer; everything else (bulk native evaluation, the catalogue,
probes, the docs, and a browser's request when CORS is configured) goes to the app
through the ASGI bridge, after the app's lifespan started the worker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter

from fastapi import FastAPI

from services.httpserver import ASGIBridge, Lifespan, Reply, Request, Streamed
from services.infra.settings import Settings
from services.query.bootstrap import app_from_env as fastapi_app_from_env
from services.query.changes_http import ChangeStreams
from services.query.changes_stream import CHANGES_PATH
from services.query.fastpath import HotPath, HotRequest, endpoint_of, is_hot, security_headers

__all__ = ["QuerySite", "site_from_env"]


class QuerySite:
    """A `services.httpserver.Site` for the query app."""

    __slots__ = ("_bridge", "_changes", "_cors", "_endpoint", "_lifespan", "app")

    def __init__(self, app: FastAPI, *, cors: bool = False) -> None:
        self.app = app
        self._cors = cors  # the app has a CORS layer: leave requests from browsers to it
        self._endpoint = HotPath(app)
        self._lifespan = Lifespan(app)
        self._bridge = ASGIBridge(app, self._lifespan.state)
        self._changes = ChangeStreams(app, security_headers())

    async def start(self) -> None:
        await self._lifespan.startup()

    async def stop(self) -> None:
        await self._lifespan.shutdown()

    def handle(self, request: Request) -> Reply | Awaitable[Reply | Streamed]:
        method, path = request.method, request.path
        if method == "GET" and path == CHANGES_PATH:
            return self._changes.open(request)
        if not is_hot(method, path) or (self._cors and request.header(b"origin") is not None):
            return self._bridge(request)
        authorization = request.header(b"authorization")
        if_none_match = request.header(b"if-none-match")
        client = request.client[0]
        endpoint = self._endpoint
        started = perf_counter()
        query_string = request.query_string.decode("latin-1")
        principal = endpoint.evaluator(authorization, client)
        if principal is not None:  # a known evaluator: an answer from a plan or a kept one, with no await at all
            if method == "POST":
                reply = endpoint.planned(principal, path, request.body, if_none_match)
            else:
                reply = endpoint.kept_native(principal, path, query_string)
            if reply is not None:
                endpoint.metrics.answered(endpoint_of(method, path), reply.status, perf_counter() - started)
                return reply
        hot = HotRequest(method, path, query_string, client, authorization, if_none_match)
        return endpoint.reply(hot, _body(request.body), started)


def _body(body: bytes) -> Callable[[], Awaitable[bytes]]:
    """The reader `HotPath.reply` awaits: the server has read the whole body already."""

    async def read() -> bytes:
        return body

    return read


def site_from_env() -> QuerySite:
    """Factory for `services.httpserver.serve` (`python -m services.query`)."""
    return QuerySite(fastapi_app_from_env(), cors=bool(Settings().cors_origins))
