"""The HTTP server (`services.httpserver`) on a real socket: framing, keep-alive, pipelining order, limits, timeouts,
errors, shutdown, and an ASGI app behind the bridge with its lifespan."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.httpserver import ASGIBridge, Lifespan, Limits, Reply, Request
from services.httpserver.connection import Connection, Connections

Handler = Callable[[Request], "Reply | Awaitable[Reply]"]
HEADERS = [("x-served-by", "test")]


def echo(request: Request) -> Reply:
    """Answers at once: what was asked, as JSON."""
    body = orjson.dumps(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query_string.decode(),
            "body": request.body.decode(),
            "agent": request.header(b"user-agent"),
        }
    )
    return Reply(200, [("content-type", "application/json")], body)


async def slow(request: Request) -> Reply:
    await asyncio.sleep(float(request.query_string.decode() or "0.05"))
    return echo(request)


def handler(request: Request) -> Reply | Awaitable[Reply]:
    if request.path == "/slow":
        return slow(request)
    if request.path == "/boom":
        raise RuntimeError("boom")
    if request.path == "/boom-later":
        return _fail_later()
    return echo(request)


async def _fail_later() -> Reply:
    await asyncio.sleep(0)
    raise RuntimeError("boom later")


@asynccontextmanager
async def server(limits: Limits | None = None, serve: Handler = handler) -> AsyncIterator[tuple[int, Connections]]:
    loop = asyncio.get_running_loop()
    connections = Connections(limits or Limits(), HEADERS)
    listener = await loop.create_server(lambda: Connection(serve, connections), "127.0.0.1", 0)
    connections.start(loop)
    try:
        yield listener.sockets[0].getsockname()[1], connections
    finally:
        listener.close()
        connections.shut_down()
        connections.close_all()


async def exchange(port: int, data: bytes, *, until_closed: bool = True, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        if until_closed:
            return await asyncio.wait_for(reader.read(), timeout)
        return await asyncio.wait_for(reader.read(65536), timeout)
    finally:
        writer.close()


def answers(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a stream of HTTP/1.1 answers (each framed by content-length)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
        length = int(headers.get("content-length", "0")) if status not in (100, 204, 304) else 0
        out.append((status, headers, rest[:length]))
        raw = rest[length:]
    return out


def get(path: str, *extra: str) -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", "Host: t", *extra]) + "\r\n\r\n").encode()


async def test_answers_with_length_and_date_and_keeps_the_connection() -> None:
    async with server() as (port, _):
        raw = await exchange(port, get("/a?x=1") + get("/b%20c", "User-Agent: tester", "Connection: close"))
    (s1, h1, b1), (s2, h2, b2) = answers(raw)
    assert (s1, s2) == (200, 200)
    assert orjson.loads(b1) == {"method": "GET", "path": "/a", "query": "x=1", "body": "", "agent": None}
    assert orjson.loads(b2)["path"] == "/b c" and orjson.loads(b2)["agent"] == "tester"
    assert h1["content-length"] == str(len(b1)) and h1["date"].endswith("GMT")
    assert "connection" not in h1 and h2["connection"] == "close"


async def test_a_refusal_waits_for_the_answers_owed_before_it() -> None:
    async with server() as (port, _):
        raw = await exchange(port, get("/slow") + b"BAD REQUEST\r\n\r\n" + get("/never"))
    assert [status for status, _, _ in answers(raw)] == [200, 400]


async def test_pipelined_answers_leave_in_the_order_asked() -> None:
    async with server() as (port, _):
        raw = await exchange(port, get("/slow") + get("/fast") + get("/slow") + get("/last", "Connection: close"))
    paths = [orjson.loads(body)["path"] for _, _, body in answers(raw)]
    assert paths == ["/slow", "/fast", "/slow", "/last"]


async def test_http_1_0_is_answered_and_closed() -> None:
    async with server() as (port, _):
        raw = await exchange(port, b"GET /old HTTP/1.0\r\n\r\n")
    ((status, headers, body),) = answers(raw)
    assert status == 200 and headers["connection"] == "close" and orjson.loads(body)["path"] == "/old"


async def test_bodies_by_length_and_chunked_arrive_whole() -> None:
    async with server() as (port, _):
        by_length = b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"
        chunked = b"POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        chunked += b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        raw = await exchange(port, by_length + chunked)
    assert [orjson.loads(body)["body"] for _, _, body in answers(raw)] == ["hello world", "hello world"]


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    async with server() as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"{}")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 OK")


async def test_head_has_the_length_but_no_body() -> None:
    async with server() as (port, _):
        raw = await exchange(port, b"HEAD /h HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: " in head and rest == b""


@pytest.mark.parametrize(
    ("data", "status", "error", "field"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "bad_request", None),
        (b"POST /p HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, "bad_request", None),
        (b"POST /p HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", 413, "body_too_large", "body"),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" + b"x" * 2000, 413, "body_too_large", "body"),
        (get("/h", "X-Big: " + "y" * 2000), 431, "headers_too_large", "headers"),
        (get("/" + "u" * 2000), 414, "uri_too_long", "path"),
    ],
)
async def test_what_cannot_be_read_is_refused_with_the_products_error_and_closed(
    data: bytes, status: int, error: str, field: str | None
) -> None:
    async with server(Limits(max_head=1024, max_body=1024)) as (port, _):
        raw = await exchange(port, data + get("/never"))
    ((got, headers, body),) = answers(raw)  # what followed is never answered: the connection closed
    assert got == status and headers["connection"] == "close" and headers["x-served-by"] == "test"
    assert orjson.loads(body) == {"error": error, "detail": orjson.loads(body)["detail"], "field": field}


async def test_a_head_too_large_in_one_header_is_refused_before_the_parser_holds_it_all() -> None:
    async with server(Limits(max_head=1024)) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nX-Endless: ")
        for _ in range(40):  # 40 KiB of one header value, never finished
            writer.write(b"z" * 1024)
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert answers(raw)[0][0] == 431


async def test_a_handlers_exception_is_a_generic_500_and_the_connection_goes_on() -> None:
    async with server() as (port, _):
        raw = await exchange(port, get("/boom") + get("/boom-later") + get("/ok", "Connection: close"))
    (s1, h1, b1), (s2, _, b2), (s3, _, _) = answers(raw)
    assert (s1, s2, s3) == (500, 500, 200)
    assert orjson.loads(b1)["error"] == orjson.loads(b2)["error"] == "internal_error"
    assert b"boom" not in b1 + b2 and h1["x-served-by"] == "test"


async def test_a_request_too_slow_to_arrive_is_408_and_an_idle_connection_closes() -> None:
    async with server(Limits(request_timeout=0.3, keep_alive=0.3)) as (port, connections):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n")  # never finished
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answers(raw)[0][0] == 408
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/once"))
        started = time.monotonic()
        raw = await asyncio.wait_for(reader.read(), 5)  # the answer, then the close once idle
        writer.close()
        assert answers(raw)[0][0] == 200 and time.monotonic() - started < 3
        assert len(connections) == 0


async def test_shutdown_finishes_the_answer_owed_then_closes() -> None:
    async with server() as (port, connections):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/slow", "X-A: 1").replace(b"/slow", b"/slow?0.3"))
        await asyncio.sleep(0.1)
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        connections.shut_down()
        raw = await asyncio.wait_for(reader.read(), 5)
        assert await asyncio.wait_for(idle_reader.read(), 5) == b""  # idle: closed at once
        writer.close()
        idle_writer.close()
    ((status, headers, _),) = answers(raw)
    assert status == 200 and headers["connection"] == "close"


async def test_a_client_gone_mid_answer_leaves_the_server_serving() -> None:
    async with server() as (port, connections):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/slow"))
        writer.close()
        await asyncio.sleep(0.15)
        assert len(connections) == 0
        raw = await exchange(port, get("/after", "Connection: close"))
    assert answers(raw)[0][0] == 200


# --- an ASGI app behind the bridge ------------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
    yield {"greeting": "hello"}


async def greet(request: StarletteRequest) -> Response:
    return JSONResponse(
        {
            "greeting": request.state.greeting,
            "q": request.query_params.get("q"),
            "body": (await request.body()).decode(),
        },
        headers={"x-app": "1"},
    )


async def nothing(_request: StarletteRequest) -> Response:
    return Response(status_code=204)


async def test_the_bridge_serves_an_asgi_app_with_its_lifespan_state() -> None:
    app = Starlette(routes=[Route("/greet", greet, methods=["POST"]), Route("/none", nothing)], lifespan=lifespan)
    life = Lifespan(app)
    await life.startup()
    bridge = ASGIBridge(app, life.state)
    try:
        async with server(serve=bridge) as (port, _):
            post = b"POST /greet?q=%C3%A9 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"
            raw = await exchange(port, post + get("/none") + get("/missing", "Connection: close"))
    finally:
        await life.shutdown()
    (s1, h1, b1), (s2, h2, _), (s3, _, _) = answers(raw)
    assert (s1, s2, s3) == (200, 204, 404)
    assert orjson.loads(b1) == {"greeting": "hello", "q": "é", "body": "hi"} and h1["x-app"] == "1"
    assert "content-length" not in h2


async def test_an_app_that_fails_to_start_says_so() -> None:
    @asynccontextmanager
    async def broken(_app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    with pytest.raises(RuntimeError, match="failed to start"):
        await Lifespan(Starlette(lifespan=broken)).startup()


# --- worker processes -----------------------------------------------------------------------------------------


class TinySite:
    """A `Site` for the process tests: answers at once."""

    async def start(self) -> None:
        pass

    def handle(self, request: Request) -> Reply:
        return Reply(200, [("content-type", "text/plain")], f"pid {os.getpid()}".encode())

    async def stop(self) -> None:
        pass


def tiny_site() -> TinySite:
    return TinySite()


def _serve(port: int) -> subprocess.Popen[bytes]:
    code = (
        "from services.httpserver import serve; "
        f"serve('tests.unit.test_httpserver:tiny_site', host='127.0.0.1', port={port}, workers=2)"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(port: int) -> bytes | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as client:
            client.sendall(get("/", "Connection: close"))
            return b"".join(iter(lambda: client.recv(4096), b""))
    except OSError:
        return None


def _pids_of(clients: list[socket.socket]) -> Counter[bytes]:
    """Which worker holds each kept-alive connection (each answer names its worker's pid)."""
    pids: Counter[bytes] = Counter()
    for client in clients:
        client.sendall(get("/"))
        pids[client.recv(4096).rpartition(b"pid ")[2]] += 1
    return pids


def test_workers_serve_a_port_refuse_a_taken_one_and_stop_on_sigterm() -> None:
    port = _free_port()
    process = _serve(port)
    try:
        deadline = time.monotonic() + 20
        while (raw := _get(port)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert raw is not None and raw.startswith(b"HTTP/1.1 200 OK") and b"pid " in raw
        time.sleep(1.0)  # both workers started (the first answer needed only one)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(16)]
        try:  # 16 connections opened at once are spread evenly over the two workers, not left to who wakes first
            pids = _pids_of(clients)
            assert len(pids) == 2 and max(pids.values()) - min(pids.values()) <= 2, pids
        finally:
            for client in clients:
                client.close()
        second = _serve(port)
        _, err = second.communicate(timeout=20)
        assert second.returncode != 0 and b"cannot listen on 127.0.0.1:" in err
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert _get(port) is None
    finally:
        process.kill()
        process.wait()
