"""A small HTTP endpoint for a service that serves no HTTP otherwise (the projector): `/metrics`, `/healthz`, `/readyz`.

One asyncio server on the service's own loop, so a scrape reads the service's
state without threads. It reads a request's head only (GET has no body) and
closes the connection after each answer; anything else is a 404 or 405.
`/readyz` is served when the service says how to judge readiness: 200 when
ready, else 503 with `Retry-After`, each with the judgement's JSON body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from services.observability.registry import Metrics

__all__ = ["MetricsEndpoint", "Readiness"]

log = logging.getLogger(__name__)
MAX_HEAD = 16 * 1024


@dataclass(frozen=True)
class Readiness:
    """A service's answer to `/readyz`: whether to send it traffic, why, and when to ask again if not."""

    ready: bool
    body: dict[str, Any] = field(default_factory=dict)
    retry_after: int = 5  # seconds, on a 503


class MetricsEndpoint:
    """Serves `metrics` (and `/readyz` as `ready` judges, when given) on `host:port` between `start` and `stop`."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        host: str,
        port: int,
        ready: Callable[[], Awaitable[Readiness]] | None = None,
    ) -> None:
        self._metrics = metrics
        self._ready = ready
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port, limit=MAX_HEAD)
        log.info("metrics on http://%s:%d/metrics", self._host, self._port)

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose when asked for port 0)."""
        if self._server is None:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            status, content_type, extra, body = await self._answer(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        writer.write(
            f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n{extra}"
            "connection: close\r\n\r\n".encode("latin-1")
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _answer(self, head: bytes) -> tuple[str, str, str, bytes]:
        """Status line, content type, further header lines (each ending in CRLF) and body."""
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        headers = dict(
            (name.strip().lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])
        )
        if path not in ("/metrics", "/healthz") and not (path == "/readyz" and self._ready is not None):
            return "404 Not Found", "text/plain", "", b"not found\n"
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", "", b"method not allowed\n"
        if path == "/healthz":
            return "200 OK", "application/json", "", b'{"status":"ok"}'
        if path == "/readyz" and self._ready is not None:
            judged = await self._ready()
            body = json.dumps(judged.body).encode()
            if judged.ready:
                return "200 OK", "application/json", "", body
            return "503 Service Unavailable", "application/json", f"retry-after: {judged.retry_after}\r\n", body
        page, content_type = await self._metrics.page(headers.get("accept"))
        return "200 OK", content_type, "", page
