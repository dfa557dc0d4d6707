"""The product's one JSON error shape, built in one place for every HTTP API.

Every refusal is `{"error": code, "detail": text, "field": dotted.path|null, …}`
(docs/architecture.md), served as `application/json` and serialised with
orjson. `problem` returns a Starlette `Response`, which is itself an ASGI app,
so a pure ASGI middleware answers with `await problem(...)(scope, receive, send)`
and a route or exception handler simply returns it. `HTTPProblem` is the base
of this package's exceptions: raise it (from a dependency, say) carrying the
answer, and `problem_handler` sends that answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "UNAVAILABLE_HEADERS",
    "HTTPProblem",
    "error_body",
    "problem",
    "problem_handler",
    "rate_limited",
    "retry_after_seconds",
]

JSON = "application/json"
# Every 503 (a store or broker out of reach) says when to try again: soon, the pools reconnect by themselves.
UNAVAILABLE_HEADERS = {"Retry-After": "1"}


def error_body(error: str, detail: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """The error document of every service: `error`, `detail`, `field`, then anything specific."""
    return {"error": error, "detail": detail, "field": field, **extra}


def problem(
    status: int,
    error: str,
    detail: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A JSON error answer: `status`, the error document, and any extra `headers`."""
    body = orjson.dumps(error_body(error, detail, field, **extra))
    return Response(body, status_code=status, headers=headers, media_type=JSON)


def retry_after_seconds(seconds: float) -> int:
    """A wait as `Retry-After` gives it: whole seconds, rounded up, at least 1."""
    if not math.isfinite(seconds):
        raise ValueError(f"retry_after must be a finite number of seconds, not {seconds!r}")
    return max(1, math.ceil(seconds))


def rate_limited(
    retry_after: float, *, reason: str = "too many requests", headers: Mapping[str, str] | None = None
) -> Response:
    """429 with `Retry-After`; `reason` opens the detail (e.g. "too many failed authentications")."""
    seconds = retry_after_seconds(retry_after)
    return problem(
        429,
        "rate_limited",
        f"{reason}; retry after {seconds} s",
        headers={**(headers or {}), "Retry-After": str(seconds)},
        retry_after=seconds,
    )


class HTTPProblem(Exception):
    """Base of the exceptions of `services.http`: a refusal that carries its own answer.

    Raise it where returning a response is not possible (a FastAPI dependency),
    and register `problem_handler` for it once per app.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


async def problem_handler(_request: Request, exc: Exception) -> Response:
    """Exception handler: answer with the response the `HTTPProblem` carries."""
    assert isinstance(exc, HTTPProblem)
    return exc.response
