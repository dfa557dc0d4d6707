"""The RSGI adapter (`services.query.rsgi`) with a fake granian scope and protocol: what `python -m services.query`
serves. Its synchronous OFREP branch (a known evaluator, documents at hand: a plan's answer) must answer exactly
what the hot path's general branch and the ASGI adapter answer, and refuse before reading a body as they do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import orjson
import pytest_asyncio

from flagcore import fold
from services.auth.policy import Role
from services.infra.cache_keys import CacheKeys
from services.infra.settings import Settings
from services.query.app import create_app
from services.query.cache import DocumentCache
from services.query.fastpath import FastPath
from services.query.rsgi import RSGIQueryApp
from services.query.service import QueryService
from tests.support.auth import MemoryKeys, bearer, memory_gate
from tests.unit.test_query_api import KEY, StateSource, sample_log

FLAG = f"/ofrep/v1/evaluate/flags/{KEY}"
BULK = "/ofrep/v1/evaluate/flags"


@dataclass
class Scope:
    """What the adapter reads of granian's RSGI scope."""

    path: str
    headers: dict[str, str]
    method: str = "POST"
    proto: str = "http"
    http_version: str = "1.1"
    scheme: str = "http"
    query_string: str = ""
    client: str = "127.0.0.1:40000"
    server: str = "127.0.0.1:8082"


@dataclass
class Protocol:
    """granian's RSGI HTTP protocol: the body in one call, the answer in one call."""

    body: bytes
    reads: int = 0
    answer: tuple[int, list[tuple[str, str]], bytes] | None = None
    closed: list[int] = field(default_factory=list)

    async def __call__(self) -> bytes:
        self.reads += 1
        await asyncio.sleep(0)
        return self.body

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.answer = (status, headers, body)


class World:
    def __init__(self, rsgi: RSGIQueryApp, asgi: httpx.AsyncClient, keys: MemoryKeys) -> None:
        self.rsgi = rsgi
        self.asgi = asgi
        self.keys = keys

    async def both(
        self,
        path: str,
        body: object,
        *,
        role: Role = Role.EVALUATOR,
        org: str | None = "acme",
        headers: dict[str, str] | None = None,
    ) -> tuple[Protocol, httpx.Response]:
        """The same request to the RSGI adapter (twice: the second from a plan when it can be) and the ASGI one."""
        raw = orjson.dumps(body)
        sent = {**{n.lower(): v for n, v in bearer(self.keys.issue(role, org)).items()}, **(headers or {})}
        sent |= {"content-type": "application/json", "content-length": str(len(raw))}
        first, again = Protocol(raw), Protocol(raw)
        await self.rsgi.__rsgi__(Scope(path, sent), first)
        await self.rsgi.__rsgi__(Scope(path, sent), again)
        assert first.answer == again.answer
        return again, await self.asgi.post(path, content=raw, headers=sent)


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    source = StateSource(fold(sample_log().events))
    service = QueryService(DocumentCache(None, ttl=60), source, CacheKeys("t"))
    service.cache.online = True  # documents kept in process: plans answer
    keys = MemoryKeys()
    app = create_app(Settings(), service=service, auth=memory_gate(keys))
    app.state.auth.authenticator._ttl = 60.0  # verified headers known at once, as on the server
    transport = httpx.ASGITransport(app=FastPath(app), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://query.test") as client:
        yield World(RSGIQueryApp(app), client, keys)


def _same(rsgi: Protocol, asgi: httpx.Response) -> None:
    assert rsgi.answer is not None
    status, headers, body = rsgi.answer
    assert (status, body) == (asgi.status_code, asgi.content)
    assert headers == asgi.headers.multi_items()


async def test_single_and_bulk_answers_are_the_asgi_adapters(world: World) -> None:
    for context in ({"targetingKey": "u-7"}, {"targetingKey": "u-1", "platform": "tiktok"}, {"platform": "meta"}, {}):
        for path in (FLAG, BULK, "/ofrep/v1/evaluate/flags/platform.google.enabled"):
            rsgi, asgi = await world.both(path, {"context": context})
            assert asgi.status_code == 200
            _same(rsgi, asgi)


async def test_a_held_bulk_answer_is_304_on_both(world: World) -> None:
    first, _ = await world.both(BULK, {"context": {"targetingKey": "u-3"}})
    assert first.answer is not None
    etag = dict(first.answer[1])["etag"]
    rsgi, asgi = await world.both(BULK, {"context": {"targetingKey": "u-3"}}, headers={"if-none-match": etag})
    assert asgi.status_code == 304
    _same(rsgi, asgi)


async def test_errors_and_refusals_are_the_asgi_adapters(world: World) -> None:
    for body, kwargs in [
        ({"context": {"targetingKey": ""}}, {}),
        ({"context": {"platform": "myspace"}}, {}),
        ({"context": {"org": "globex"}}, {}),
        ({"context": {}}, {"role": Role.SYSTEM_ADMIN, "org": None}),
        ({"context": {"targetingKey": "u-7"}}, {"role": Role.AUDITOR}),
    ]:
        for path in (FLAG, BULK, "/ofrep/v1/evaluate/flags/no.such.flag"):
            rsgi, asgi = await world.both(path, body, **kwargs)  # type: ignore[arg-type]
            assert asgi.status_code >= 400
            _same(rsgi, asgi)


async def test_a_role_that_never_evaluates_is_refused_before_its_body_is_read(world: World) -> None:
    key = bearer(world.keys.issue(Role.AUDITOR, "acme"))["Authorization"]
    for _ in range(2):  # the second time the key is verified already
        protocol = Protocol(b"{not json")
        await world.rsgi.__rsgi__(Scope(FLAG, {"authorization": key, "content-length": "9"}), protocol)
        assert protocol.answer is not None and protocol.answer[0] == 403
        assert protocol.reads == 0


async def test_no_key_is_401_and_the_body_is_not_read(world: World) -> None:
    protocol = Protocol(b"{}")
    await world.rsgi.__rsgi__(Scope(FLAG, {"content-length": "2"}), protocol)
    assert protocol.answer is not None and protocol.answer[0] == 401
    assert protocol.reads == 0
