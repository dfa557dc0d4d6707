"""The console's Starlette app: routes, static files, security headers, and errors as pages.

Its own small service rather than routes in the command service: it only
calls the two APIs, as any client would, so it can fail or be redeployed
without touching the write path, and its cookies and templates stay out of a
JSON API. It names no concrete adapter: `bootstrap` connects Redis, httpx and Kafka
in its lifespan; tests hand in a `MemorySessionStore` and a fake `Api`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.auth.policy import Forbidden
from services.console import actions, keys, notifications, pages, signin
from services.console.changes import InvalidInput
from services.console.dependencies import Wiring, wired
from services.console.ports import Api, ApiError, SessionStore
from services.console.web import COOKIE, HERE, CsrfRejected, SignInRequired, render
from services.infra.settings import Settings
from services.observability import Metrics
from services.observability.asgi import install as install_metrics

__all__ = ["create_app"]

log = logging.getLogger(__name__)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" would make Chrome send `Origin: null` on our own posts
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Every answer: a strict CSP (no inline script, nothing from elsewhere), no framing; pages not cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    settings: Settings,
    *,
    sessions: SessionStore | None = None,
    api_for: Callable[[str], Api] | None = None,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
) -> Starlette:
    """The console. Give `sessions` and `api_for` directly (tests, no live feed), or a `lifespan` that connects
    the app's `Wiring` (`bootstrap`)."""
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            *signin.routes,
            *pages.routes,
            *actions.routes,
            *keys.routes,
            *notifications.routes,
        ],
        exception_handlers={
            SignInRequired: _sign_in,
            CsrfRejected: _csrf,
            Forbidden: _forbidden,
            InvalidInput: _invalid,
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.wiring = Wiring(settings, sessions=sessions, api_for=api_for)
    app.add_middleware(SecurityHeaders)
    install_metrics(app, Metrics())  # /metrics: the console's requests by route and status
    return app


async def healthz(_: Request) -> Response:
    return PlainTextResponse("ok")


def _error(request: Request, status: int, title: str, detail: str, field: str | None = None) -> Response:
    return render(request, "error.html", {"status": status, "title": title, "detail": detail, "field": field},
                  status=status)


async def _sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    why = "expired" if request.cookies.get(COOKIE) else ""
    location = f"/signin?next={quote(target, safe='')}" + (f"&why={why}" if why else "")
    if request.method != "GET":
        return _error(request, 401, "Signed out", exc.message)  # a refused post is never replayed
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


async def _csrf(request: Request, _: Exception) -> Response:
    return _error(request, 403, "Refused", "This form was not sent from this console session "
                  "(missing or wrong CSRF token). Reload the page and try again.")


async def _forbidden(request: Request, _: Exception) -> Response:
    return _error(request, 403, "Not allowed", "Your key may not access that resource.")


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidInput)
    return _error(request, 422, "Please check the form", exc.detail, exc.field)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status == 401:  # the key was revoked or expired while signed in
        session_id = request.cookies.get(COOKIE)
        if session_id:
            await wired(request).session_store().delete(session_id)
        response = RedirectResponse("/signin?why=revoked", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response
    if exc.status == 403:
        return await _forbidden(request, exc)
    if exc.status == 404:
        return _error(request, 404, "Not found", exc.detail, exc.field)
    if exc.status == 429:
        return _error(request, 429, "Slow down", f"Too many changes at once: {exc.detail}")
    if exc.status < 500:
        return _error(request, exc.status, "The service refused the change", exc.detail, exc.field)
    log.warning("API failure behind %s %s: %s", request.method, request.url.path, exc)
    return _error(request, 503, "Service unavailable", "A flagstream service is unavailable; retry shortly.")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {404: "Not found", 405: "Method not allowed"}
    return _error(request, exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("console error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(request, 500, "Something went wrong", "The console hit an unexpected error; it has been logged.")
