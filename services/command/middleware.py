"""The ASGI guard in front of the write routes: body size and content type.

Size is checked twice, because a client may lie about or omit Content-Length:
the header is refused up front and the streamed body is counted as it
arrives. Bodies are small (≤ `max_body_bytes`), so the guard buffers the body
and replays it to the app. (The last-resort 500 is `services.http.UnhandledErrors`.)
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.http.errors import error_body

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestGuard:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITE_METHODS:
            refusal, receive = await self._check_write(scope, receive)
            if refusal is not None:
                await send_json(send, *refusal)
                return
        await self.app(scope, receive, send)

    async def _check_write(self, scope: Scope, receive: Receive) -> tuple[tuple[int, dict[str, Any]] | None, Receive]:
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return (400, error_body("malformed_request", "Content-Length is not a number")), receive
            if int(declared) > self.max_body_bytes:
                return self._too_large(), receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return self._too_large(), receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and not is_json(headers.get("content-type")):
            got = headers.get("content-type") or "none"
            return (
                415,
                error_body("unsupported_media_type", f"send application/json (got {got})"),
            ), receive
        return None, _replay(body, receive)

    def _too_large(self) -> tuple[int, dict[str, Any]]:
        detail = f"request body exceeds {self.max_body_bytes} bytes"
        return 413, error_body("body_too_large", detail, limit=self.max_body_bytes)


def _replay(body: bytes, downstream: Receive) -> Receive:
    """Hand the buffered body to the app once, then pass on what the server sends (a disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await downstream()

    return receive
