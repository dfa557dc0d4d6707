"""The console's Starlette app: routes, static files, security headers, and errors as pages.

Its own small service rather than routes in the command service: it only
calls the two APIs, as any client would, so it can fail or be redeployed
without touching the write path, and its cookies and templates stay out of a
JSON API. Only this module names the concrete adapters (Redis, httpx, Kafka);
tests hand in a `MemorySessionStore` and a fake `Api`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.auth.policy import Forbidden
from services.console import actions, keys, pages, signin
from services.console.changes import InvalidInput
from services.console.client import Api, ApiError, HttpApi
from services.console.live import Broadcaster, TopicFeed
from services.console.sessions import RedisSessionStore, SessionStore
from services.console.web import COOKIE, HERE, CsrfRejected, SignInRequired, render
from services.infra.settings import Settings
from services.observability import Metrics
from services.observability.asgi import install as install_metrics

__all__ = ["app_from_env", "create_app"]

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
    live: bool = True,
) -> Starlette:
    """The console; its lifespan connects Redis, the APIs and the topic unless `sessions` and `api_for` are given."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis: Redis | None = None
        http: httpx.AsyncClient | None = None
        feed_task: asyncio.Task[None] | None = None
        if app.state.sessions is None:
            redis = Redis.from_url(settings.redis_url, **settings.redis_options())
            app.state.sessions = RedisSessionStore(redis, prefix=settings.redis_prefix,
                                                   idle=settings.console_idle_seconds)
        if app.state.api_for is None:
            http = httpx.AsyncClient(timeout=10.0)
            command = f"http://{settings.command_host}:{settings.command_port}"
            query = f"http://{settings.query_host}:{settings.query_port}"
            app.state.api_for = lambda key: HttpApi(http, command_url=command, query_url=query, key=key)
        if live:
            app.state.feed = TopicFeed(settings, app.state.broadcaster)
            feed_task = asyncio.create_task(app.state.feed.run())
        try:
            yield
        finally:
            if feed_task is not None:
                feed_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feed_task
            if http is not None:
                await http.aclose()
            if redis is not None:
                await redis.aclose()

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            *signin.routes,
            *pages.routes,
            *actions.routes,
            *keys.routes,
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
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.api_for = api_for
    app.state.broadcaster = Broadcaster()
    app.state.feed = None
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
            await request.app.state.sessions.delete(session_id)
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


def app_from_env() -> Any:
    """Factory for granian: settings from the `FLAGS_*` environment."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call is noise, not a log
    return create_app(Settings())
