"""Hardening every HTTP API of the product shares: pure ASGI middleware and small, I/O-free classes.

- `SecurityHeaders`: security headers on every answer, a strict CSP, a docs-only one;
- `CORS`: closed by default, exact origins for an admin UI;
- `TokenBucketLimiter`: requests per key per second, with bursts;
- `FailedAuthThrottle`: delays, then blocks, clients that keep failing to authenticate;
- `problem`, `rate_limited`: the product's JSON error answers; `HTTPProblem` carries one as an exception;
- `UnhandledErrors`: an exception no handler took becomes a generic 500 inside the layers above.

None of it imports FastAPI; Starlette's types and `Response` only.
"""

from services.http.cors import CORS, normalise_origin
from services.http.errors import (
    UNAVAILABLE_HEADERS,
    HTTPProblem,
    error_body,
    problem,
    problem_handler,
    rate_limited,
    retry_after_seconds,
)
from services.http.headers import API_CSP, FASTAPI_CDN, SELF_HOSTED, DocsAssets, SecurityHeaders
from services.http.ratelimit import TokenBucketLimiter
from services.http.throttle import FailedAuthThrottle, client_key
from services.http.unhandled import UnhandledErrors

__all__ = [
    "API_CSP",
    "CORS",
    "FASTAPI_CDN",
    "SELF_HOSTED",
    "UNAVAILABLE_HEADERS",
    "DocsAssets",
    "FailedAuthThrottle",
    "HTTPProblem",
    "SecurityHeaders",
    "TokenBucketLimiter",
    "UnhandledErrors",
    "client_key",
    "error_body",
    "normalise_origin",
    "problem",
    "problem_handler",
    "rate_limited",
    "retry_after_seconds",
]
