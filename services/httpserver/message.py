"""What a handler reads (`Request`) and answers (`Reply`, or `Streamed`), and the bytes an answer goes out as."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

__all__ = ["Clock", "Reply", "Request", "Streamed", "encode", "encode_chunk", "encode_stream_head"]

Headers = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Headers  # names in lower case; `content-length` is added when missing
    body: bytes

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in self.headers]


@dataclass(frozen=True, slots=True)
class Streamed:
    """An answer whose body is written as it comes (chunked), for as long as `chunks` gives: a change stream.

    The connection answers nothing else meanwhile, and closes when the stream ends; the server ends the stream
    (closes `chunks`) when the client leaves or the worker stops.
    """

    status: int
    headers: Headers  # names in lower case; no `content-length` (the body is chunked)
    chunks: AsyncIterator[bytes]


@dataclass(slots=True)
class Request:
    method: str
    path: str  # percent-decoded, as ASGI's `path`
    raw_path: bytes
    query_string: bytes
    headers: list[tuple[bytes, bytes]]  # names in lower case, in the order sent
    body: bytes
    http_version: str
    client: tuple[str, int]
    server: tuple[str, int]

    def header(self, name: bytes) -> str | None:
        """The first value of `name` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None


class Clock:
    """The `date` header's value, formatted once a second rather than per answer (RFC 9110 asks for it)."""

    __slots__ = ("line",)

    def __init__(self) -> None:
        self.line = b""
        self.tick()

    def tick(self) -> None:
        self.line = b"date: " + formatdate(time.time(), usegmt=True).encode() + b"\r\n"


_STATUS_LINES = {status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus}
_NO_BODY = frozenset((204, 304))


_HEADS_KEPT = 4096
_heads: dict[tuple[int, tuple[tuple[str, str], ...], int], bytes] = {}


def encode(reply: Reply, clock: Clock, *, keep_alive: bool, head: bool = False) -> bytes:
    """The answer on the wire: status line, headers (with `content-length` and `date`), body (none for HEAD).

    The same few heads (status and headers) go out again and again, so each is encoded once and kept: 0.5 µs a
    request rather than 1.7 here.
    """
    status = reply.status
    no_body = status in _NO_BODY or status < 200
    key = (status, tuple(reply.headers), len(reply.body))
    encoded = _heads.get(key)
    if encoded is None:
        line = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} \r\n".encode()
        lines = [f"{name}: {value}\r\n" for name, value in reply.headers]
        if not no_body and not any(name == "content-length" for name, _ in reply.headers):
            lines.append(f"content-length: {len(reply.body)}\r\n")
        if len(_heads) >= _HEADS_KEPT:
            _heads.clear()
        encoded = _heads[key] = line + "".join(lines).encode("latin-1")
    closing = b"" if keep_alive else b"connection: close\r\n"
    if head or no_body:
        return b"".join((encoded, closing, clock.line, b"\r\n"))
    return b"".join((encoded, closing, clock.line, b"\r\n", reply.body))


def encode_stream_head(reply: Streamed, clock: Clock) -> bytes:
    """A streamed answer's status line and headers: chunked, and the connection closes after it."""
    line = _STATUS_LINES.get(reply.status) or f"HTTP/1.1 {reply.status} \r\n".encode()
    lines = "".join(f"{name}: {value}\r\n" for name, value in reply.headers).encode("latin-1")
    return b"".join((line, lines, b"transfer-encoding: chunked\r\nconnection: close\r\n", clock.line, b"\r\n"))


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112, 7.1); empty `data` is the last chunk."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n" if data else b"0\r\n\r\n"
