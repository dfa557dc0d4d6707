"""ASGI middleware: one span per write request (a command), continuing the caller's `traceparent`.

Reads (GET, HEAD, OPTIONS) pass straight through: a command is what a trace follows through the
outbox, Kafka and the projector. The span is named by the matched route's template once the
app has routed it (`PUT /v1/orgs/{org_id}/flags/{flag_key}`), never by the raw path. With
tracing off it costs a method check and, for a write, a header look-up (about 1-3 µs here); a
caller's traceparent is then passed on unchanged (`services.observability.tracing`), so the
outbox still records it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.observability import tracing

__all__ = ["TraceRequests"]

TRACED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_TRACEPARENT = tracing.TRACEPARENT.encode()


class TraceRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in TRACED_METHODS:
            await self.app(scope, receive, send)
            return
        parent = _header(scope, _TRACEPARENT)
        if not tracing.enabled():
            if parent is None:
                await self.app(scope, receive, send)
                return
            with tracing.span("", parent=parent):  # passes the caller's traceparent on
                await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        attributes = {"http.request.method": scope["method"], "url.path": scope["path"]}
        with tracing.span(scope["method"], parent=parent, attributes=attributes, kind="server") as current:
            assert current is not None  # tracing is on
            try:
                await self.app(scope, receive, sending)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route is not None:
                    current.rename(f"{scope['method']} {route}")
                    current.set("http.route", route)
                current.set("http.response.status_code", status)
                if status >= 500:
                    current.fail()


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None
