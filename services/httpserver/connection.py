"""One client connection: HTTP/1.1 parsed by httptools, answered in order, with limits and timeouts.

A handler returns a `Reply` (written at once, inside the `data_received` call
that completed the request) or an awaitable of one (run as a task; requests
pipelined behind it wait their turn, so answers leave in the order asked). The
awaitable may give a `Streamed` answer instead: its body is written chunk by chunk
as it comes, until it ends, the client leaves or the worker stops; then the
connection closes.
Everything a client can get wrong is answered here with a status and a short
JSON error and the connection closed: a malformed request 400, a head over the
limit 431, a body over the limit 413, a request too slow to arrive 408.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

import httptools
import orjson

from services.http.errors import error_body
from services.http.unhandled import INTERNAL_ERROR_DETAIL
from services.httpserver.message import Clock, Reply, Request, Streamed, encode, encode_chunk, encode_stream_head

__all__ = ["Connection", "Connections", "Handler", "Headers", "Limits"]

log = logging.getLogger("flagstream.http")

Headers = Sequence[tuple[str, str]]
Handler = Callable[[Request], "Reply | Awaitable[Reply | Streamed]"]

_JSON = ("content-type", "application/json")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_METHODS = {m.encode(): m for m in ("GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS")}
LINGER = 2.0  # seconds a refused connection's input is read and dropped before the close
_QUEUED_BEFORE_PAUSE = 16  # pipelined requests held while one is answered, before reading stops
STREAM_BACKLOG = 256 * 1024  # bytes of a streamed answer a client may leave unread before it is cut off


@dataclass(frozen=True, slots=True)
class Limits:
    max_head: int = 64 * 1024  # request line and headers, bytes
    max_body: int = 1024 * 1024
    request_timeout: float = 30.0  # from a request's first byte to its last
    keep_alive: float = 75.0  # an idle connection's life (longer than the usual load balancer's 60 s)


class Connection(asyncio.Protocol):
    """One connection's parser, its queue of pipelined requests and its timers (checked by `Connections`)."""

    __slots__ = (
        "_busy",
        "_chunks",
        "_client",
        "_clock",
        "_closing",
        "_head_bytes",
        "_headers",
        "_in_head",
        "_limits",
        "_parser",
        "_queue",
        "_refusal",
        "_server",
        "_size",
        "_streaming",
        "_url",
        "_writable",
        "connections",
        "handler",
        "idle_since",
        "lingering_since",
        "reading_since",
        "transport",
    )

    def __init__(self, handler: Handler, connections: Connections) -> None:
        self.handler = handler
        self.connections = connections
        self._limits = connections.limits
        self._clock = connections.clock
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[Request] = deque()
        self._busy = False  # a handler's task is answering
        self._closing = False  # close once the answers owed are written
        self._writable = True
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._size = 0
        self._head_bytes = 0
        self._in_head = False
        self._refusal: Reply | None = None  # owed once the answers before it are written
        self._streaming: asyncio.Task[None] | None = None  # the task writing a streamed answer
        self.reading_since: float | None = None  # monotonic start of a request not yet whole
        self.lingering_since: float | None = None  # a refusal was sent: input is dropped until the close
        self.idle_since = time.monotonic()

    # --- asyncio ----------------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]  # a stream's (uvloop's TCPTransport)
        self._client = _address(transport.get_extra_info("peername"))
        self._server = _address(transport.get_extra_info("sockname"))
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self._queue.clear()
        self._closing = True
        if self._streaming is not None:
            self._streaming.cancel()

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None or self.lingering_since is not None:
            return  # after a refusal: dropped unread
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish_then_close()  # the request was answered or queued; what follows it is not HTTP we speak
            return
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if not isinstance(refused, _Refused):
                log.error("the HTTP parser's callback failed", exc_info=refused)
            self._refuse(refused.reply if isinstance(refused, _Refused) else self._internal_error())
            return
        except httptools.HttpParserError:
            self._refuse(self.connections.refusal(400, "bad_request", "the request is not valid HTTP/1.1"))
            return
        if self._in_head:  # bound what the parser buffers of one head, even within a single header
            self._head_bytes += len(data)
            if self._head_bytes > 16 * self._limits.max_head:
                self._refuse(self._head_too_large())

    def pause_writing(self) -> None:
        self._writable = False
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writable = True
        if not self._busy and not self._closing:
            self.transport.resume_reading()

    # --- httptools --------------------------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = []
        self._headers = []
        self._chunks = []
        self._size = 0
        self._head_bytes = 0
        self._in_head = True
        self.reading_since = self.connections.now

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._size += len(url)
        if self._size > self._limits.max_head:
            detail = f"the request target exceeds {self._limits.max_head} bytes"
            raise _Refused(self.connections.refusal(414, "uri_too_long", detail, "path"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        self._size += len(name) + len(value) + 4
        if self._size > self._limits.max_head:
            raise _Refused(self._head_too_large())

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._size = 0  # from here, the body's size
        announced = expect = None
        for name, value in self._headers:
            if name == b"content-length":
                announced = value  # digits: the parser refused anything else
            elif name == b"expect":
                expect = value
        if announced is not None and int(announced) > self._limits.max_body:
            raise _Refused(self._body_too_large())  # refused unread
        if expect == b"100-continue" and self._parser.get_http_version() == "1.1":
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._size += len(body)
        if self._size > self._limits.max_body:
            raise _Refused(self._body_too_large())

    def on_message_complete(self) -> None:
        self.reading_since = None
        parser = self._parser
        raw = self._url[0] if len(self._url) == 1 else b"".join(self._url)
        if raw[:1] == b"/" and b"?" not in raw:  # the usual target: a plain path, nothing to split
            raw_path, query = raw, b""
        else:
            url = httptools.parse_url(raw)
            raw_path, query = url.path or b"/", url.query or b""
        path = raw_path.decode("latin-1")
        chunks = self._chunks
        method = parser.get_method()
        request = Request(
            _METHODS.get(method) or method.decode("latin-1"),
            unquote(path) if "%" in path else path,
            raw_path,
            query,
            self._headers,
            chunks[0] if len(chunks) == 1 else b"".join(chunks),
            parser.get_http_version(),
            self._client,
            self._server,
        )
        if not parser.should_keep_alive():
            self._closing = True  # answer this one, then close: the client said so (or spoke HTTP/1.0)
            self.transport.pause_reading()
        if self._busy:
            self._queue.append(request)
            if len(self._queue) >= _QUEUED_BEFORE_PAUSE:
                self.transport.pause_reading()
            return
        self._answer(request)

    # --- answering --------------------------------------------------------------------------------------------------

    def _answer(self, request: Request) -> None:
        try:
            reply = self.handler(request)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            reply = self._internal_error()
        if isinstance(reply, Reply):
            self._write(request, reply, last=self._owes_nothing_more())
            return
        self._busy = True
        asyncio.get_running_loop().create_task(self._await(request, reply))

    async def _await(self, request: Request, pending: Awaitable[Reply | Streamed]) -> None:
        try:
            reply = await pending
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            reply = self._internal_error()
        if isinstance(reply, Streamed):
            await self._stream(request, reply)
            return
        self._busy = False
        if self.transport.is_closing():
            return
        self._write(request, reply, last=self._owes_nothing_more())
        while self._queue and not self._busy:
            self._answer(self._queue.popleft())
        if self._busy:
            return
        if self._refusal is not None:
            self._send_refusal()
        elif not self._closing and self._writable:
            self.transport.resume_reading()

    def _write(self, request: Request, reply: Reply, *, last: bool) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(encode(reply, self._clock, keep_alive=not last, head=request.method == "HEAD"))
        self.idle_since = self.connections.now
        if last:
            transport.close()

    async def _stream(self, request: Request, reply: Streamed) -> None:
        """Write `reply`'s chunks as they come, then the last chunk, then close; nothing else is answered here.

        Cancelled (the client left, the worker stops: `connection_lost`, `shut_down`), it ends the same way. A
        client that leaves `STREAM_BACKLOG` bytes unread is cut off rather than buffered for.
        """
        transport = self.transport
        self._closing = True  # what was pipelined behind a stream is never answered
        self._queue.clear()
        self._streaming = asyncio.current_task()
        chunks = reply.chunks
        try:
            if transport.is_closing():
                return
            transport.write(encode_stream_head(reply, self._clock))
            async for data in chunks:
                if transport.is_closing():
                    break
                if not data:
                    continue  # an empty chunk would end the body
                if transport.get_write_buffer_size() > STREAM_BACKLOG:
                    log.info("a streamed answer to %s %s is not read; closing", request.method, request.path)
                    transport.abort()
                    break
                transport.write(encode_chunk(data))
                self.idle_since = self.connections.now
        except asyncio.CancelledError:
            pass  # the client left, or the worker stops: end the answer as if it had ended
        except Exception:
            log.exception("a streamed answer to %s %s failed", request.method, request.path)
        finally:
            self._streaming = None
            close = getattr(chunks, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
            if not transport.is_closing():
                transport.write(encode_chunk(b""))
                transport.close()

    def _refuse(self, reply: Reply) -> None:
        """Answer a request that cannot be read (after the answers owed before it), then close.

        What follows it on the wire cannot be trusted, so it is read and dropped: closing a socket with unread
        input resets the connection, and a reset can destroy the refusal before the client reads it. The write side
        is shut at once (the client reads the refusal, then the end); the rest closes when the client does, or
        after `LINGER` seconds.
        """
        self.reading_since = None
        self._closing = True
        self._refusal = reply
        if not self._busy:
            self._send_refusal()

    def _send_refusal(self) -> None:
        refusal, self._refusal = self._refusal, None
        transport = self.transport
        if refusal is None or transport.is_closing():
            return
        transport.write(encode(refusal, self._clock, keep_alive=False))
        self.lingering_since = time.monotonic()
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

    def _owes_nothing_more(self) -> bool:
        """This answer is the last one: the connection is closing and no answer or refusal waits behind it."""
        return self._closing and not self._queue and self._refusal is None

    def _finish_then_close(self) -> None:
        self._closing = True
        self.transport.pause_reading()
        if not self._busy and not self._queue:
            self.transport.close()

    def _internal_error(self) -> Reply:
        return self.connections.refusal(500, "internal_error", INTERNAL_ERROR_DETAIL)

    def _head_too_large(self) -> Reply:
        detail = f"the request's headers exceed {self._limits.max_head} bytes"
        return self.connections.refusal(431, "headers_too_large", detail, "headers")

    def _body_too_large(self) -> Reply:
        detail = f"the body exceeds {self._limits.max_body} bytes"
        return self.connections.refusal(413, "body_too_large", detail, "body")

    # --- timers and shutdown (`Connections` calls these) ------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Close the connection if it has been idle too long, or a request has taken too long to arrive."""
        if self.lingering_since is not None:
            if now - self.lingering_since > LINGER:
                self.transport.close()
            return
        if self._busy or self.transport.is_closing():
            return
        if self.reading_since is not None:
            if now - self.reading_since > self._limits.request_timeout:
                self._refuse(self.connections.refusal(408, "request_timeout", "the request took too long to arrive"))
        elif not self._queue and now - self.idle_since > self._limits.keep_alive:
            self.transport.close()

    def shut_down(self) -> None:
        """Close now if nothing is owed, else after the answers owed (each says `connection: close`); a stream ends."""
        if self._streaming is not None:
            self._streaming.cancel()
        elif self._busy or self._queue:
            self._finish_then_close()
        elif not self.transport.is_closing():
            self.transport.close()


class _Refused(Exception):
    """Raised from a parser callback: httptools stops, and `data_received` answers `reply` and closes."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


class Connections:
    """A worker's open connections, their limits, the `date` clock, and the timer that checks them each second."""

    def __init__(self, limits: Limits, headers: Headers = ()) -> None:
        self.limits = limits
        self.headers = headers  # on every answer the server writes itself (a refusal, a 500)
        self.clock = Clock()
        self.now = time.monotonic()  # as of the last tick: the timeouts count whole seconds
        self._open: set[Connection] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.on_close: Callable[[], None] | None = None  # a connection has closed (the acceptor counts them)

    def refusal(self, status: int, error: str, detail: str, field: str | None = None, **extra: object) -> Reply:
        """An answer the server writes itself: the product's error document (`services.http.errors`), its headers."""
        return Reply(status, [_JSON, *self.headers], orjson.dumps(error_body(error, detail, field, **extra)))

    def add(self, connection: Connection) -> None:
        self._open.add(connection)

    def discard(self, connection: Connection) -> None:
        if connection in self._open:
            self._open.remove(connection)
            if self.on_close is not None:
                self.on_close()

    def __len__(self) -> int:
        return len(self._open)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = loop.call_later(1.0, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.clock.tick()
        self.now = now = time.monotonic()
        for connection in list(self._open):
            connection.expire(now)
        self._timer = loop.call_later(1.0, self._tick, loop)

    def shut_down(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for connection in list(self._open):
            connection.shut_down()

    def close_all(self) -> None:
        """What is still open after the drain: cut."""
        for connection in list(self._open):
            connection.transport.abort()


def _address(address: object) -> tuple[str, int]:
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return ("unknown", 0)
