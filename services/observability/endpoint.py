"""A small HTTP endpoint for a service that serves no HTTP otherwise (the projector): `/metrics` and `/healthz`.

One asyncio server on the service's own loop, so a scrape reads the service's
state without threads. It reads a request's head only (GET has no body) and
closes the connection after each answer; anything else is a 404 or 405.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.observability.registry import Metrics

__all__ = ["MetricsEndpoint"]

log = logging.getLogger(__name__)
MAX_HEAD = 16 * 1024


class MetricsEndpoint:
    """Serves `metrics` on `host:port` between `start` and `stop`."""

    def __init__(self, metrics: Metrics, *, host: str, port: int) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port, limit=MAX_HEAD)
        log.info("metrics on http://%s:%d/metrics", self._host, self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            status, content_type, body = await self._answer(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        writer.write(
            f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n".encode("latin-1")
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _answer(self, head: bytes) -> tuple[str, str, bytes]:
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        headers = dict(
            (name.strip().lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])
        )
        if path not in ("/metrics", "/healthz"):
            return "404 Not Found", "text/plain", b"not found\n"
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"method not allowed\n"
        if path == "/healthz":
            return "200 OK", "application/json", b'{"status":"ok"}'
        body, content_type = await self._metrics.page(headers.get("accept"))
        return "200 OK", content_type, body
