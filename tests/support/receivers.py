"""Real HTTP receivers on 127.0.0.1 for the notifier's tests: one that answers, fails, stalls or checks signatures.

A small asyncio HTTP/1.1 server (one request per connection, `Connection: close`): each request is
recorded, then answered by the receiver's `respond` after its `delay`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True, slots=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the request arrived


@dataclass(frozen=True, slots=True)
class Answer:
    status: int = 200
    body: bytes = b"ok"
    delay: float = 0.0


Respond = Callable[[Received, int], Answer]  # the request and how many came before it


def always(status: int = 200, body: bytes = b"ok") -> Respond:
    return lambda request, index: Answer(status, body)


def failing(times: int, status: int = 503) -> Respond:
    """Fails the first `times` requests on purpose, then answers 200."""
    return lambda request, index: Answer(status, b"down on purpose") if index < times else Answer()


def slow(seconds: float) -> Respond:
    return lambda request, index: Answer(delay=seconds)


def verifying(secret: str) -> Respond:
    """Answers 204 to a request that the `standardwebhooks` verifier accepts, 401 to any other."""
    verifier = Webhook(secret)

    def respond(request: Received, index: int) -> Answer:
        try:
            verifier.verify(request.body, request.headers)
        except WebhookVerificationError as exc:
            return Answer(401, str(exc).encode())
        return Answer(204, b"")

    return respond


@dataclass
class Receiver:
    respond: Respond = field(default_factory=always)
    received: list[Received] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.answered) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.received

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Received(headers, body, time.monotonic())
            index = len(self.received)
            self.received.append(request)
            answer = self.respond(request, index)
            await asyncio.sleep(answer.delay)
            head = f"HTTP/1.1 {answer.status} X\r\nContent-Length: {len(answer.body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + answer.body)
            await writer.drain()
            self.answered.append(answer.status)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up (a time-out under test)
        finally:
            writer.close()
