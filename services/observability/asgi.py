"""An ASGI app's requests by route and status, and its `/metrics` route.

The route label is the matched route's template (`/v1/flags/{flag_key}`), never
the raw path, so a scan of random paths adds one series (`__unmatched__`), not
one per path. Each request's log lines carry its `request_id`: the caller's
`X-Request-Id` when it sent a sane one, else a fresh one.
"""

from __future__ import annotations

import time
import uuid

import orjson
from fastapi import FastAPI, Request, Response
from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.observability.guard import LabelGuard
from services.observability.logs import log_ids
from services.observability.registry import Metrics

__all__ = ["UNMATCHED", "HttpMetrics", "RequestMetrics", "install"]

UNMATCHED = "__unmatched__"
MAX_ERROR_BODY = 64 * 1024  # an error body longer than this is not read for its code
MAX_REQUEST_ID = 128


class HttpMetrics:
    """The two series every HTTP service has."""

    def __init__(self, metrics: Metrics, *, errors: Counter | None = None) -> None:
        self.errors = errors  # by the `error` code of a JSON error body (`services.http.errors`)
        self.error_codes = LabelGuard(limit=100)
        self.requests = metrics.counter(
            "http_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
        )
        self.duration = metrics.histogram(
            "http_request_duration_seconds", "Time to answer an HTTP request, by route template.", ("route", "method")
        )


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request the app answers."""

    def __init__(self, app: ASGIApp, http: HttpMetrics) -> None:
        self.app = app
        self.http = http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        errors = self.http.errors
        error_body: list[bytes] | None = None

        async def sending(message: Message) -> None:
            nonlocal status, error_body
            if message["type"] == "http.response.start":
                status = message["status"]
                if errors is not None and status >= 400 and _is_json(message.get("headers", ())):
                    error_body = []
            elif error_body is not None and message["type"] == "http.response.body":
                error_body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self._count_error(b"".join(error_body))
                    error_body = None
            await send(message)

        try:
            with log_ids(request_id=request_id(scope)):
                await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.http.requests.labels(route, scope["method"], str(status)).inc()
            self.http.duration.labels(route, scope["method"]).observe(time.perf_counter() - started)

    def _count_error(self, body: bytes) -> None:
        if self.http.errors is None or len(body) > MAX_ERROR_BODY:
            return
        try:
            code = orjson.loads(body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if isinstance(code, str):
            self.http.errors.labels(self.http.error_codes(code)).inc()


def request_id(scope: Scope) -> str:
    """The caller's `X-Request-Id` if short and printable ASCII (it goes into log lines), else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            if 0 < len(value) <= MAX_REQUEST_ID and value.isascii() and value.decode().isprintable():
                return str(value.decode())
            break
    return uuid.uuid4().hex


def _is_json(headers: object) -> bool:
    return any(name == b"content-type" and value.startswith(b"application/json") for name, value in headers)  # type: ignore[attr-defined]


def install(app: Starlette, metrics: Metrics, *, errors: Counter | None = None) -> HttpMetrics:
    """Count `app`'s requests and serve `metrics` at `GET /metrics` (Prometheus text or OpenMetrics).

    `errors`, a counter with one label (the code), counts the app's JSON error answers by their `error` code.
    """
    http = HttpMetrics(metrics, errors=errors)
    app.add_middleware(RequestMetrics, http=http)

    async def page(request: Request) -> Response:
        body, content_type = await metrics.page(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    if isinstance(app, FastAPI):  # documented with the other probes
        app.add_api_route("/metrics", page, methods=["GET"], summary="Prometheus metrics", tags=["probes"])
    else:
        app.add_route("/metrics", page, methods=["GET"])
    return http
