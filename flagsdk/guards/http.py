"""HTTP guards: a FastAPI dependency for one route, an ASGI middleware for whole path prefixes.

Both answer `403 {"error": "feature_disabled", "flag_key", "detail"}` when the flag
is off for the request's platform and user (the project's error shape).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from flagsdk.client import FlagClient

ContextOf = Callable[[Request], str | None]  # reads the platform or the user from the request


def disabled_body(flag_key: str) -> dict[str, Any]:
    return {"error": "feature_disabled", "flag_key": flag_key, "detail": f"{flag_key} is off for this request"}


def require_flag(
    client: FlagClient, flag_key: str, *, platform: ContextOf | None = None, user: ContextOf | None = None
) -> Callable[[Request], None]:
    """A dependency: `Depends(require_flag(flags, "ai.insights.enabled", user=lambda r: r.headers.get("x-user")))`."""

    def guard(request: Request) -> None:
        p = None if platform is None else platform(request)
        u = None if user is None else user(request)
        if not client.is_enabled(flag_key, platform=p, user=u):
            raise HTTPException(status_code=403, detail=disabled_body(flag_key))

    return guard


class FeatureGate:
    """ASGI middleware: requests under a path prefix need its flag on (`{"/ai/": "ai.insights.enabled"}`).

    The longest matching prefix decides; `platform` and `user` read the request's context.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        client: FlagClient,
        prefixes: Mapping[str, str],
        platform: ContextOf | None = None,
        user: ContextOf | None = None,
    ) -> None:
        self.app = app
        self.client = client
        self.prefixes = sorted(prefixes.items(), key=lambda item: len(item[0]), reverse=True)
        self.platform = platform
        self.user = user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            flag = next((f for prefix, f in self.prefixes if path.startswith(prefix)), None)
            if flag is not None:
                request = Request(scope)
                p = None if self.platform is None else self.platform(request)
                u = None if self.user is None else self.user(request)
                if not self.client.is_enabled(flag, platform=p, user=u):
                    await _forbidden(send, flag)
                    return
        await self.app(scope, receive, send)


async def _forbidden(send: Send, flag_key: str) -> None:
    body = orjson.dumps(disabled_body(flag_key))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})
