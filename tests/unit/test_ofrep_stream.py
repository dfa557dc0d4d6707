"""OFREP's change stream, without servers: the SSE frames, the hub's fan-out per org, the stream's first event and
heartbeats, the bound on subscribers, and a `Streamed` answer on the HTTP server (chunked, ended when the client
leaves or the worker stops)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import httpx
import orjson
import pytest

from flagcore import Evaluation, Reason, fold
from services.auth.policy import Role
from services.httpserver import Reply, Request, Streamed
from services.httpserver.connection import Connection, Connections, Limits
from services.httpserver.message import encode_chunk
from services.infra.cache_keys import CacheKeys
from services.infra.settings import Settings
from services.query import ofrep, sse
from services.query.api import create_app
from services.query.cache import DocumentCache
from services.query.changes_stream import (
    CHANGES_PATH,
    REFETCH,
    ChangeHub,
    StreamSettings,
    TooManyStreams,
    affected_orgs,
    event_streams,
    frames,
)
from services.query.dependencies import wiring_of
from services.query.fastpath import FastPath
from services.query.ofrep_code_defaults import defer_to_code
from services.query.service import QueryService
from services.query.site import QuerySite
from tests.support.auth import MemoryKeys, bearer, memory_gate
from tests.support.query_fakes import StateSource
from tests.support.query_sample import sample_log

# --- framing ----------------------------------------------------------------------------------------------------


def parse(raw: bytes) -> list[dict[str, str]]:
    """Blocks of an event stream as a client reads them (comments kept under ':')."""
    blocks = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        blocks.append(fields)
    return blocks


def test_an_event_is_id_then_one_line_of_compact_json_then_a_blank_line() -> None:
    raw = sse.event({"type": REFETCH, "note": "a\nb"}, event_id=42)
    assert raw == b'id: 42\ndata: {"type":"refetchEvaluation","note":"a\\nb"}\n\n'
    assert parse(raw) == [{"id": "42", "data": '{"type":"refetchEvaluation","note":"a\\nb"}'}]
    assert sse.event({"type": REFETCH}) == b'data: {"type":"refetchEvaluation"}\n\n'


def test_comments_and_retry_are_single_lines() -> None:
    assert sse.comment("keep-alive") == b": keep-alive\n\n"
    assert sse.comment("two\nlines\rhere") == b": two lines here\n\n"
    assert sse.retry(1000) == b"retry: 1000\n\n"
    with pytest.raises(ValueError, match="retry"):
        sse.retry(-1)


@pytest.mark.parametrize(
    ("header", "seen"),
    [(None, None), ("42", 42), (" 7 ", 7), ("0", 0), ("", None), ("-1", None), ("4.2", None), ("abc", None),
     ("١٢", None), ("9" * 20, None), (str(2**63), None), (str(2**63 - 1), 2**63 - 1)],
)  # fmt: skip
def test_last_event_id_is_one_of_our_positions_or_nothing(header: str | None, seen: int | None) -> None:
    assert sse.last_event_id(header) == seen


def test_the_bulk_answer_names_the_orgs_stream_on_the_providers_own_origin() -> None:
    streams = [{"type": "sse", "endpoint": {"requestUri": f"{CHANGES_PATH}?org=acme"}}]
    assert orjson.loads(event_streams("acme")) == streams


@pytest.mark.parametrize(
    ("message", "orgs"),
    [
        (b'{"scope":"org","org_id":"acme"}', "acme"),
        (b'{"scope":"user","org_id":"acme","user_id":"u1"}', "acme"),
        (b'{"scope":"catalog"}', "*"),
        (b"not json", "*"),
        (b'{"scope":"org"}', "*"),
        (None, "*"),
    ],
)
def test_an_invalidation_concerns_its_org_or_every_org(message: bytes | None, orgs: str) -> None:
    assert affected_orgs(message) == orgs


# --- the hub and a stream's frames --------------------------------------------------------------------------------


class FakePositions:
    """Positions set by the test; each read counted."""

    def __init__(self, **positions: int) -> None:
        self.positions = positions
        self.reads: list[str] = []
        self.fail = False

    async def position(self, org_id: str) -> int:
        self.reads.append(org_id)
        if self.fail:
            raise ConnectionError("postgres is down")
        return self.positions.get(org_id, 0)


FAST = StreamSettings(heartbeat_seconds=0.05, resync_seconds=0.05)


async def take(stream: AsyncIterator[bytes], n: int, timeout: float = 2.0) -> list[dict[str, str]]:
    got: list[dict[str, str]] = []
    for _ in range(n):
        got.extend(parse(await asyncio.wait_for(anext(stream), timeout)))
    return got


@pytest.fixture
async def hub() -> AsyncIterator[tuple[ChangeHub, FakePositions]]:
    positions = FakePositions(acme=5, other=9)
    changes = ChangeHub(positions, FAST)
    task = asyncio.create_task(changes.run())
    yield changes, positions
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_client_without_a_last_id_is_told_to_refetch_at_once(hub: tuple[ChangeHub, FakePositions]) -> None:
    changes, _ = hub
    stream = frames(changes, changes.subscribe("acme"), 5, None)
    assert await take(stream, 2) == [{"retry": "1000"}, {"id": "5", "data": '{"type":"refetchEvaluation"}'}]
    await stream.aclose()


async def test_a_client_up_to_date_is_not_and_one_behind_or_unknown_is(hub: tuple[ChangeHub, FakePositions]) -> None:
    changes, _ = hub
    current = frames(changes, changes.subscribe("acme"), 5, 5)
    assert (await take(current, 2))[1] == {"": "up to date"}
    for seen in (4, 6):  # behind; or ahead of anything this org was ever sent: not ours, refetch to be sure
        stream = frames(changes, changes.subscribe("acme"), 5, seen)
        assert (await take(stream, 2))[1]["id"] == "5"
        await stream.aclose()
    await current.aclose()


async def test_a_change_of_the_org_reaches_its_streams_only(hub: tuple[ChangeHub, FakePositions]) -> None:
    changes, positions = hub
    acme = frames(changes, changes.subscribe("acme"), 5, 5)
    other = frames(changes, changes.subscribe("other"), 9, 9)
    await take(acme, 2)
    await take(other, 2)
    positions.positions["acme"] = 6
    changes.invalidated(b'{"scope":"user","org_id":"acme","user_id":"u1"}')
    assert await take(acme, 1) == [{"id": "6", "data": '{"type":"refetchEvaluation"}'}]
    assert await take(other, 1) == [{"": "keep-alive"}]  # a heartbeat, not a refetch
    assert "other" not in positions.reads
    await acme.aclose()
    await other.aclose()


async def test_the_catalogue_and_a_resubscription_reach_every_org(hub: tuple[ChangeHub, FakePositions]) -> None:
    changes, positions = hub
    streams = {org: frames(changes, changes.subscribe(org), p, p) for org, p in (("acme", 5), ("other", 9))}
    for stream in streams.values():
        await take(stream, 2)
    positions.positions.update(acme=7, other=10)
    changes.invalidated(b'{"scope":"catalog"}')
    assert (await take(streams["acme"], 1))[0]["id"] == "7"
    assert (await take(streams["other"], 1))[0]["id"] == "10"
    positions.positions.update(acme=8)
    changes.invalidated(None)
    assert (await take(streams["acme"], 1))[0]["id"] == "8"
    for stream in streams.values():
        await stream.aclose()


async def test_a_position_no_later_than_the_last_sent_is_not_sent_again(hub: tuple[ChangeHub, FakePositions]) -> None:
    changes, _ = hub
    subscription = changes.subscribe("acme")
    subscription.offer(5)  # offered before the stream opened at 5: already covered by its first event
    stream = frames(changes, subscription, 5, None)
    assert [b.get("id") for b in await take(stream, 3)] == [None, "5", None]  # retry, refetch 5, keep-alive
    changes.offer("acme", 5)
    changes.offer("acme", 4)
    assert await take(stream, 1) == [{"": "keep-alive"}]
    await stream.aclose()


async def test_positions_are_read_again_after_a_failure(hub: tuple[ChangeHub, FakePositions]) -> None:
    changes, positions = hub
    stream = frames(changes, changes.subscribe("acme"), 5, 5)
    await take(stream, 2)
    positions.fail = True
    changes.invalidated(b'{"scope":"org","org_id":"acme"}')
    assert await take(stream, 1) == [{"": "keep-alive"}]  # the stream stays open
    positions.fail = False
    positions.positions["acme"] = 6
    changes.invalidated(b'{"scope":"org","org_id":"acme"}')
    assert (await take(stream, 1))[0]["id"] == "6"
    await stream.aclose()


async def test_without_invalidations_every_org_is_checked_now_and_then() -> None:
    positions = FakePositions(acme=5)
    changes = ChangeHub(positions, FAST, online=lambda: False)
    task = asyncio.create_task(changes.run())
    try:
        stream = frames(changes, changes.subscribe("acme"), 5, 5)
        await take(stream, 2)
        positions.positions["acme"] = 6
        blocks = await take(stream, 5)
        assert {"id": "6", "data": '{"type":"refetchEvaluation"}'} in blocks
        await stream.aclose()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_subscribers_are_bounded_and_let_go_however_a_stream_ends() -> None:
    changes = ChangeHub(FakePositions(), StreamSettings(max_subscribers=2, heartbeat_seconds=0.01))
    first, second = changes.subscribe("acme"), changes.subscribe("acme")
    with pytest.raises(TooManyStreams, match="maximum"):
        changes.subscribe("other")
    assert len(changes) == 2
    stream = frames(changes, first, 0, 0)
    await take(stream, 2)
    await stream.aclose()  # the client left
    assert len(changes) == 1

    async def no() -> bool:
        return False

    ended = frames(changes, second, 0, 0, still_allowed=no)  # the key was revoked: the stream ends
    assert [chunk async for chunk in ended][1:] == [sse.comment("up to date")]
    assert len(changes) == 0
    changes.subscribe("other")


# --- a streamed answer on the server -------------------------------------------------------------------------------


async def test_a_streamed_answer_is_chunked_and_ends_when_the_client_leaves() -> None:
    gone = asyncio.Event()

    async def stream(_request: Request) -> Streamed:
        return Streamed(200, [("content-type", "text/event-stream")], _chunks(gone))

    def handle(request: Request) -> Reply | Awaitable[Reply | Streamed]:
        return stream(request)

    loop = asyncio.get_running_loop()
    connections = Connections(Limits(), [])
    listener = await loop.create_server(lambda: Connection(handle, connections), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"transfer-encoding: chunked\r\n" in head and b"content-length" not in head
        assert b"content-type: text/event-stream\r\n" in head
        body = await asyncio.wait_for(reader.readexactly(len(encode_chunk(b"one\n") + encode_chunk(b"two\n"))), 2)
        assert body == encode_chunk(b"one\n") + encode_chunk(b"two\n")
        writer.close()
        await asyncio.wait_for(gone.wait(), 2)  # the server closed the stream's iterator
        assert len(connections) == 0 or await _closes(connections)
    finally:
        listener.close()
        connections.close_all()


async def test_a_stopping_worker_ends_a_stream_with_the_last_chunk() -> None:
    gone = asyncio.Event()

    async def stream(_request: Request) -> Streamed:
        return Streamed(200, [], _chunks(gone))

    loop = asyncio.get_running_loop()
    connections = Connections(Limits(), [])
    listener = await loop.create_server(lambda: Connection(stream, connections), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        await asyncio.wait_for(reader.readuntil(b"two\n\r\n"), 2)
        connections.shut_down()
        rest = await asyncio.wait_for(reader.read(), 2)  # to the end: the server closed the connection
        assert rest.endswith(encode_chunk(b""))
        assert gone.is_set()
        writer.close()
    finally:
        listener.close()
        connections.close_all()


async def _chunks(gone: asyncio.Event) -> AsyncIterator[bytes]:
    try:
        yield b"one\n"
        yield b"two\n"
        await asyncio.Event().wait()  # a quiet stream: until the server closes it
    finally:
        gone.set()


async def _closes(connections: Connections) -> bool:
    for _ in range(100):
        if len(connections) == 0:
            return True
        await asyncio.sleep(0.01)
    return False


# --- the route on the served site (`services.query.site`), and the app's refusals ---------------------------------


@pytest.fixture
async def site() -> AsyncIterator[tuple[QuerySite, MemoryKeys, ChangeHub, httpx.AsyncClient]]:
    keys = MemoryKeys()
    service = QueryService(DocumentCache(None, ttl=60), StateSource(fold(sample_log().events)), CacheKeys("t"))
    app = create_app(Settings(), service=service, auth=memory_gate(keys))
    changes = ChangeHub(FakePositions(acme=3), StreamSettings(max_subscribers=1, heartbeat_seconds=0.05))
    wiring_of(app).changes = changes
    transport = httpx.ASGITransport(app=FastPath(app), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://query.test") as client:
        yield QuerySite(app), keys, changes, client


def _get(target: str, headers: dict[str, str]) -> Request:
    path, _, query = target.partition("?")
    raw = [(n.lower().encode(), v.encode()) for n, v in headers.items()]
    peers = (("127.0.0.1", 40000), ("127.0.0.1", 8082))
    return Request("GET", path, target.encode(), query.encode(), raw, b"", "1.1", *peers)


async def _open(site: QuerySite, target: str, headers: dict[str, str]) -> Reply | Streamed:
    pending = site.handle(_get(target, headers))
    assert not isinstance(pending, Reply), "opening a stream awaits the key and the position"
    return await pending


async def test_the_site_streams_the_orgs_changes_with_the_security_headers(
    site: tuple[QuerySite, MemoryKeys, ChangeHub, httpx.AsyncClient],
) -> None:
    served, keys, changes, _ = site
    key = bearer(keys.issue(Role.EVALUATOR, "acme"))
    reply = await _open(served, CHANGES_PATH, {**key, "Last-Event-ID": "2"})
    assert isinstance(reply, Streamed)
    headers = dict(reply.headers)
    assert (reply.status, headers["content-type"], headers["cache-control"]) == (200, "text/event-stream", "no-store")
    assert headers["x-content-type-options"] == "nosniff" and headers["x-accel-buffering"] == "no"
    assert parse(await anext(reply.chunks)) == [{"retry": "1000"}]
    assert parse(await anext(reply.chunks)) == [{"id": "3", "data": '{"type":"refetchEvaluation"}'}]  # 2 < 3
    assert len(changes) == 1
    full = await _open(served, f"{CHANGES_PATH}?org=acme", key)  # this worker's one stream is taken
    assert isinstance(full, Reply)
    assert (full.status, dict(full.headers)["retry-after"]) == (503, "1")
    assert orjson.loads(full.body)["error"] == "too_many_streams"
    await reply.chunks.aclose()  # type: ignore[attr-defined]  # the client left: the stream is let go
    assert len(changes) == 0
    unread = await _open(served, CHANGES_PATH, key)  # a client gone before the first frame was asked for
    assert isinstance(unread, Streamed) and len(changes) == 1
    await unread.chunks.aclose()  # type: ignore[attr-defined]
    assert len(changes) == 0


@pytest.mark.parametrize(
    ("role", "org", "target", "status", "error", "field"),
    [
        (None, None, CHANGES_PATH, 401, "unauthenticated", None),
        (Role.AUDITOR, "acme", CHANGES_PATH, 403, "forbidden", None),
        (Role.EVALUATOR, "acme", f"{CHANGES_PATH}?org=globex", 403, "forbidden", None),
        (Role.SYSTEM_ADMIN, None, CHANGES_PATH, 422, "invalid_request", "org"),
        (Role.SYSTEM_ADMIN, None, f"{CHANGES_PATH}?org=not%20an%20org", 422, "invalid_request", "org"),
    ],
)
async def test_refusals_are_the_apps_on_both_paths(
    site: tuple[QuerySite, MemoryKeys, ChangeHub, httpx.AsyncClient],
    role: Role | None,
    org: str | None,
    target: str,
    status: int,
    error: str,
    field: str | None,
) -> None:
    served, keys, changes, client = site
    headers = {} if role is None else bearer(keys.issue(role, org))
    reply = await _open(served, target, headers)
    assert isinstance(reply, Reply)
    body = orjson.loads(reply.body)
    assert (reply.status, body["error"], body["field"]) == (status, error, field), body
    if status == 401:
        assert dict(reply.headers)["www-authenticate"].startswith("Bearer")
    asgi = await client.get(target, headers=headers)
    assert asgi.status_code == status
    if status != 422:  # FastAPI's own check of the query's pattern words a malformed org its own way
        assert asgi.json()["error"] == error
    assert len(changes) == 0


# --- OFREP's codeDefaultFlag, when configured ----------------------------------------------------------------------


def test_a_default_answer_defers_to_the_code_only_when_configured() -> None:
    unset = Evaluation("some.flag", False, Reason.DEFAULT, variant="off")
    decided = Evaluation("some.flag", True, Reason.STATIC, variant="on")
    assert orjson.loads(ofrep.render(unset))["value"] is False  # by default: the flag's off variant
    defer_to_code(True)
    try:
        answer = orjson.loads(ofrep.render(unset))
        metadata = {"valueType": "boolean"}
        assert answer == {"key": "some.flag", "reason": "DEFAULT", "variant": "off", "metadata": metadata}
        assert orjson.loads(ofrep.render(decided))["value"] is True  # a level set it: its value, as ever
    finally:
        defer_to_code(False)
    assert "value" in orjson.loads(ofrep.render(unset))
