"""The query service's site (`services.query.site`) as `python -m services.query` serves it, fed requests as the
HTTP server parses them. Its synchronous OFREP branch (a known evaluator, documents at hand: a plan's answer) must
answer exactly what the hot path's general branch and the ASGI adapter answer, refusals included."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest_asyncio

from flagcore import fold
from services.auth.policy import Role
from services.httpserver import Reply, Request
from services.infra.cache_keys import CacheKeys
from services.infra.settings import Settings
from services.query.api import create_app
from services.query.cache import DocumentCache
from services.query.fastpath import FastPath
from services.query.service import QueryService
from services.query.site import QuerySite
from tests.support.auth import MemoryKeys, bearer, memory_gate
from tests.support.query_fakes import StateSource
from tests.support.query_sample import KEY, sample_log

FLAG = f"/ofrep/v1/evaluate/flags/{KEY}"
BULK = "/ofrep/v1/evaluate/flags"


def _request(path: str, headers: dict[str, str], body: bytes, method: str = "POST") -> Request:
    raw = [(n.lower().encode(), v.encode()) for n, v in headers.items()]
    target = path.encode()
    return Request(method, path, target, b"", raw, body, "1.1", ("127.0.0.1", 40000), ("127.0.0.1", 8082))


async def _answer(site: QuerySite, request: Request) -> tuple[Reply, bool]:
    """The site's reply, and whether it came at once (no await: the plan's branch)."""
    reply = site.handle(request)
    if isinstance(reply, Reply):
        return reply, True
    return await reply, False


class World:
    def __init__(self, site: QuerySite, asgi: httpx.AsyncClient, keys: MemoryKeys) -> None:
        self.site = site
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
    ) -> tuple[Reply, httpx.Response]:
        """The same request to the site (twice: the second from a plan when it can be) and the ASGI adapter."""
        raw = orjson.dumps(body)
        sent = {**{n.lower(): v for n, v in bearer(self.keys.issue(role, org)).items()}, **(headers or {})}
        sent |= {"content-type": "application/json", "content-length": str(len(raw))}
        first, _ = await _answer(self.site, _request(path, sent, raw))
        again, _ = await _answer(self.site, _request(path, sent, raw))
        assert first == again
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
        yield World(QuerySite(app), client, keys)


def _same(reply: Reply, asgi: httpx.Response) -> None:
    assert (reply.status, reply.body) == (asgi.status_code, asgi.content)
    assert reply.headers == asgi.headers.multi_items()


async def test_single_and_bulk_answers_are_the_asgi_adapters(world: World) -> None:
    for context in ({"targetingKey": "u-7"}, {"targetingKey": "u-1", "platform": "tiktok"}, {"platform": "meta"}, {}):
        for path in (FLAG, BULK, "/ofrep/v1/evaluate/flags/platform.google.enabled"):
            reply, asgi = await world.both(path, {"context": context})
            assert asgi.status_code == 200
            _same(reply, asgi)


async def test_a_held_bulk_answer_is_304_on_both(world: World) -> None:
    first, _ = await world.both(BULK, {"context": {"targetingKey": "u-3"}})
    etag = dict(first.headers)["etag"]
    reply, asgi = await world.both(BULK, {"context": {"targetingKey": "u-3"}}, headers={"if-none-match": etag})
    assert asgi.status_code == 304
    _same(reply, asgi)


async def test_errors_and_refusals_are_the_asgi_adapters(world: World) -> None:
    for body, kwargs in [
        ({"context": {"targetingKey": ""}}, {}),
        ({"context": {"platform": "myspace"}}, {}),
        ({"context": {"org": "globex"}}, {}),
        ({"context": {}}, {"role": Role.SYSTEM_ADMIN, "org": None}),
        ({"context": {"targetingKey": "u-7"}}, {"role": Role.AUDITOR}),
    ]:
        for path in (FLAG, BULK, "/ofrep/v1/evaluate/flags/no.such.flag"):
            reply, asgi = await world.both(path, body, **kwargs)  # type: ignore[arg-type]
            assert asgi.status_code >= 400
            _same(reply, asgi)


async def test_a_plan_answers_at_once_and_a_refusal_takes_the_general_path(world: World) -> None:
    key = bearer(world.keys.issue(Role.EVALUATOR, "acme"))
    raw = orjson.dumps({"context": {"targetingKey": "u-9"}})
    await _answer(world.site, _request(FLAG, key, raw))  # verifies the key, as the first request on a server does
    reply, at_once = await _answer(world.site, _request(FLAG, key, raw))
    assert (reply.status, at_once) == (200, True)
    auditor = bearer(world.keys.issue(Role.AUDITOR, "acme"))
    for headers in (auditor, auditor, {}):  # an auditor twice: the second time its key is verified already
        reply, at_once = await _answer(world.site, _request(FLAG, headers, raw))
        assert reply.status in (401, 403) and not at_once


async def test_other_routes_go_to_the_app(world: World) -> None:
    reply, at_once = await _answer(world.site, _request("/healthz", {}, b"", method="GET"))
    asgi = await world.asgi.get("/healthz")
    assert not at_once
    assert (reply.status, reply.body) == (asgi.status_code, asgi.content) == (200, b'{"status":"ok"}')
    assert reply.headers == asgi.headers.multi_items()


async def test_a_key_store_outage_is_503_with_retry_after_on_both(world: World) -> None:
    world.keys.down = True  # a key not seen before must be read from the store, which is out of reach
    for path in (FLAG, BULK):
        reply, asgi = await world.both(path, {"context": {"targetingKey": "u-7"}})
        assert asgi.status_code == 503 and asgi.headers["retry-after"] == "1"
        assert asgi.json()["error"] == "unavailable" and asgi.json()["dependency"] == "postgres"
        _same(reply, asgi)
    world.keys.down = False
    reply, asgi = await world.both(FLAG, {"context": {"targetingKey": "u-7"}})
    assert asgi.status_code == 200
    _same(reply, asgi)


def _get(path: str, query: str, headers: dict[str, str]) -> Request:
    raw = [(n.lower().encode(), v.encode()) for n, v in headers.items()]
    target = f"{path}?{query}".encode()
    return Request("GET", path, target, query.encode(), raw, b"", "1.1", ("127.0.0.1", 40000), ("127.0.0.1", 8082))


async def test_a_kept_native_answer_comes_at_once_and_is_the_asgi_adapters(world: World) -> None:
    native = f"/v1/orgs/acme/flags/{KEY}"
    key = {n.lower(): v for n, v in bearer(world.keys.issue(Role.EVALUATOR, "acme")).items()}
    for query in ("platform=tiktok&user=u-7", "user=u-1", "platform=myspace", ""):
        answers = [await _answer(world.site, _get(native, query, key)) for _ in range(3)]
        asgi = await world.asgi.get(f"{native}?{query}", headers=key)
        for reply, _ in answers:
            _same(reply, asgi)
        kept = asgi.status_code == 200
        assert answers[-1][1] is kept, query  # a 200 is kept and then served at once; a refusal never
    auditor = {n.lower(): v for n, v in bearer(world.keys.issue(Role.AUDITOR, "acme")).items()}
    for _ in range(2):
        reply, at_once = await _answer(world.site, _get(native, "user=u-7", auditor))
        assert (reply.status, at_once) == (403, False)
