"""Typed flags through the query service in process: the native API, OFREP's single and bulk answers.

A string flag with a variant chosen at the system, platform and user levels, and an object flag with
a split at one org and a variant at the other (tests/support/eventlog.every_row_log). Each answer must
be the pure core's: the typed value, the variant, the reason. As in tests/unit/test_ofrep.py every test
runs through the fast path, through FastAPI's routes, and from the hot path's plans (asked twice: the
second answer, from a plan, must be the very bytes of the first).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from flagcore import evaluate, evaluate_all, fold
from services.auth.policy import Role
from services.infra.cache_keys import CacheKeys
from services.infra.settings import Settings
from services.query.api import create_app
from services.query.cache import DocumentCache
from services.query.fastpath import FastPath
from services.query.service import QueryService
from tests.support.auth import MemoryKeys, bearer, memory_gate
from tests.support.eventlog import LIMITS, THEMES, every_row_log
from tests.support.query_fakes import StateSource

ORG, OTHER = "acme", "globex"
BULK = "/ofrep/v1/evaluate/flags"
SUBJECTS = [(None, None), ("meta", None), (None, "u1"), ("meta", "u1"), ("google", "u7"), (None, "u-42")]


class World:
    def __init__(self, client: httpx.AsyncClient, keys: MemoryKeys, source: StateSource, twice: bool) -> None:
        self.client, self.keys, self.source, self.twice = client, keys, source, twice

    async def send(self, method: str, path: str, org: str, **options: Any) -> httpx.Response:
        headers = bearer(self.keys.issue(Role.EVALUATOR, org))
        first = await self.client.request(method, path, headers=headers, **options)
        if not self.twice:
            return first
        again = await self.client.request(method, path, headers=headers, **options)
        assert (again.status_code, again.content) == (first.status_code, first.content), path
        return again

    def expected(self, org: str, key: str, platform: str | None, user: str | None) -> tuple[Any, ...]:
        state = self.source.state
        e = evaluate(state.catalog, state.tenant(org), key, platform=platform, user_id=user)
        return e.value, e.variant, e.reason.value


@pytest_asyncio.fixture(params=["fast", "fastapi", "planned"], ids=["fast-path", "fastapi-routes", "fast-path-plans"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    source = StateSource(fold(every_row_log(ORG, OTHER).events))
    planned = request.param == "planned"
    service = QueryService(DocumentCache(None, ttl=60, local=planned), source, CacheKeys("t"))
    service.cache.online = planned
    keys = MemoryKeys()
    app = create_app(Settings(), service=service, auth=memory_gate(keys))
    served = app if request.param == "fastapi" else FastPath(app)
    transport = httpx.ASGITransport(app=served, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://query.test") as client:
        yield World(client, keys, source, planned)


def _context(org: str, platform: str | None, user: str | None) -> dict[str, Any]:
    context: dict[str, Any] = {"org": org}
    if platform is not None:
        context["platform"] = platform
    if user is not None:
        context["targetingKey"] = user
    return {"context": context}


async def test_the_native_api_answers_the_typed_value_and_variant(world: World) -> None:
    for org in (ORG, OTHER):
        for key in ("c.theme", "c.limits"):
            for platform, user in SUBJECTS:
                params = {k: v for k, v in (("platform", platform), ("user", user)) if v is not None}
                response = await world.send("GET", f"/v1/orgs/{org}/flags/{key}", org, params=params)
                assert response.status_code == 200, response.text
                body = response.json()
                got = (body["value"], body["variant"], body["reason"])
                assert got == world.expected(org, key, platform, user), (org, key, platform, user)
    body = (await world.send("GET", f"/v1/orgs/{ORG}/flags/c.theme", ORG, params={"platform": "meta"})).json()
    assert (body["value"], body["variant"], body["level"]) == (THEMES["dark"], "dark", "platform")
    assert "variant dark" in body["explanation"]


async def test_ofrep_answers_the_typed_value_with_the_protocols_reasons(world: World) -> None:
    seen = set()
    for org in (ORG, OTHER):
        for key in ("c.theme", "c.limits"):
            for platform, user in SUBJECTS:
                response = await world.send("POST", f"{BULK}/{key}", org, json=_context(org, platform, user))
                assert response.status_code == 200, response.text
                body = response.json()
                assert list(body) == ["key", "value", "reason", "variant", "metadata"]
                assert (body["value"], body["variant"], body["reason"]) == world.expected(org, key, platform, user)
                seen.add(body["reason"])
    assert seen == {"STATIC", "TARGETING_MATCH", "SPLIT"}
    body = (await world.send("POST", f"{BULK}/c.limits", OTHER, json=_context(OTHER, None, None))).json()
    assert (body["value"], body["variant"], body["metadata"]["level"]) == (LIMITS["list"], "list", "org")


async def test_the_bulk_answer_holds_every_flags_typed_value(world: World) -> None:
    state = world.source.state
    for org in (ORG, OTHER):
        for platform, user in SUBJECTS:
            response = await world.send("POST", BULK, org, json=_context(org, platform, user))
            assert response.status_code == 200, response.text
            got = [(f["key"], f["value"], f["variant"], f["reason"]) for f in response.json()["flags"]]
            want = evaluate_all(state.catalog, state.tenant(org), platform=platform, user_id=user)
            assert got == [(e.flag_key, e.value, e.variant, e.reason.value) for e in want]


async def test_a_split_gives_each_user_their_sticky_variant(world: World) -> None:
    variants = set()
    for n in range(40):
        user = f"user-{n}"
        body = (await world.send("POST", f"{BULK}/c.limits", ORG, json=_context(ORG, None, user))).json()
        assert (body["value"], body["variant"], body["reason"]) == world.expected(ORG, "c.limits", None, user)
        assert body["value"] == LIMITS[body["variant"]]
        variants.add(body["variant"])
    assert variants == {"small", "large"}  # a 700/300 split: 40 users land on both sides


async def test_a_boolean_answer_keeps_its_shape(world: World) -> None:
    """A boolean flag's answers are as they were before typed values: same keys, in the same order (the metadata
    has since gained `valueType` and the event's `stream` and `occurredAt`, after the keys it had)."""
    body = orjson.loads((await world.send("POST", f"{BULK}/c.release", ORG, json=_context(ORG, None, "u1"))).content)
    assert list(body) == ["key", "value", "reason", "variant", "metadata"]
    assert (body["value"], body["variant"]) == (True, "on")
    assert list(body["metadata"]) == ["level", "eventId", "version", "valueType", "stream", "occurredAt"]
    assert body["metadata"]["valueType"] == "boolean"
    native = (await world.send("GET", f"/v1/orgs/{ORG}/flags/c.release", ORG, params={"user": "u1"})).json()
    assert list(native) == [
        "flag_key", "value", "reason", "level", "error_code", "variant", "rule", "explanation", "rollout", "event"
    ]  # fmt: skip
