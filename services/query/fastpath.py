"""The OFREP hot path as plain ASGI, in front of FastAPI's routing, dependencies and exception handlers.

Measured on this 2-core machine (bench/ofrep.py), the same OFREP handler served
through FastAPI's route answered about 40% fewer requests per second than when
called straight from ASGI: routing, dependency injection and the request and
response objects cost more than the evaluation. This middleware sits inside the
app's security-header, CORS and last-resort-500 layers (so its answers carry the
same headers, and a browser's preflight and origin checks still apply) and
answers `POST /ofrep/v1/evaluate/flags[/{key}]` itself: the same authentication
(`AuthGate`, with its key cache and failed-auth throttle), the same
authorisation, the same use cases (`services.query.ofrep`). Everything else goes
on to FastAPI, which also documents these two routes and serves them when this
layer is absent.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from services.auth.authenticator import Unauthenticated
from services.auth.http import AuthGate, TooManyFailures
from services.auth.policy import Forbidden, Principal
from services.http.errors import problem, rate_limited
from services.query import ofrep

__all__ = ["OfrepFastPath"]

BULK = "/ofrep/v1/evaluate/flags"
SINGLE = BULK + "/"
_JSON = (b"content-type", b"application/json")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="flagstream"'}


class OfrepFastPath:
    """Answer OFREP evaluations straight from ASGI; pass every other request to `app`."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path == BULK:
                await self._serve(scope, receive, send, None)
                return
            if path.startswith(SINGLE) and "/" not in path[len(SINGLE) :] and len(path) > len(SINGLE):
                await self._serve(scope, receive, send, path[len(SINGLE) :])
                return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, key: str | None) -> None:
        state = scope["app"].state
        gate: AuthGate | None = state.auth
        request = Request(scope, receive)
        principal: Principal | None = None
        try:
            if gate is None:  # not started yet: fail closed, as `services.auth.http` does
                raise Unauthenticated("authentication is not available yet; retry shortly")
            principal = await gate.principal(request)
            body = await _read(receive)
            service = state.ofrep_service()
            if key is None:
                answer = await ofrep.evaluate_flags(service, principal, body, request.headers.get("if-none-match"))
            else:
                answer = await ofrep.evaluate_flag(service, principal, key, body)
        except Unauthenticated as exc:
            await problem(401, "unauthenticated", exc.detail, headers=_CHALLENGE)(scope, receive, send)
            return
        except Forbidden as exc:
            assert gate is not None
            gate.denied(request, "forbidden", exc.detail, principal)
            await problem(403, "forbidden", exc.detail)(scope, receive, send)
            return
        except TooManyFailures as exc:
            await rate_limited(exc.retry_after, reason="too many failed authentications")(scope, receive, send)
            return
        headers = [] if answer.status == 304 else [_JSON, (b"content-length", str(len(answer.body)).encode())]
        if answer.etag is not None:
            headers.append((b"etag", answer.etag.encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})


async def _read(receive: Receive) -> bytes:
    """The request body, or its first `ofrep.MAX_BODY + 1` bytes: enough to refuse the rest unread."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks, size = [body], len(body)
    while message.get("more_body", False) and size <= ofrep.MAX_BODY:
        message = await receive()
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
