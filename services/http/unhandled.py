"""The last resort: an exception no handler took becomes a logged, generic 500 in the product's shape.

Starlette answers such an exception from its outermost layer, outside every
middleware an app adds, so that answer would miss the security headers and
CORS. Placed inside them, this layer catches the exception first: the stack
goes to the log, and the client gets `{"error": "internal_error", …}` with no
trace, no SQL, no exception text. When the app had already started its
answer, nothing can be sent any more, and the exception is re-raised for the
server to close the connection.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.http.errors import problem

__all__ = ["INTERNAL_ERROR_DETAIL", "UnhandledErrors"]

log = logging.getLogger("flagstream.http")

INTERNAL_ERROR_DETAIL = "unexpected error; see the service log"


class UnhandledErrors:
    """Answer 500 `internal_error` for any exception that escapes `app` before it starts its answer."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await problem(500, "internal_error", INTERNAL_ERROR_DETAIL)(scope, receive, send)
