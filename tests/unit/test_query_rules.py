"""Targeting rules through the query service in process: the native API and OFREP (single and bulk) with a context.

The world is the consistency table's (tests/support/consistency_cases.py), its documents built as Postgres
would give them (tests/support/query_fakes.StateSource); every rule case must be answered as the pure core
answers it with the same context. As in tests/unit/test_query_typed_values.py each test runs through the fast
path, through FastAPI's routes, and from the hot path's plans and kept answers (asked twice: the second answer
must be the very bytes of the first). Bad context values are refused naming the attribute; one context's
answer is never served to another.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio

from flagcore import evaluate, fold
from services.auth.policy import Role
from services.infra.cache_keys import CacheKeys
from services.infra.settings import Settings
from services.query import contexts
from services.query.api import create_app
from services.query.cache import DocumentCache
from services.query.errors import InvalidParameter
from services.query.fastpath import FastPath
from services.query.service import QueryService
from tests.support.auth import MemoryKeys, bearer, memory_gate
from tests.support.consistency_cases import ORG, OTHER, RULE_CASES, Case, sealed
from tests.support.query_fakes import StateSource

BULK = "/ofrep/v1/evaluate/flags"
BASE = datetime(2031, 1, 1, tzinfo=UTC)  # the world's schedules fall due then: never during these tests


class World:
    def __init__(self, client: httpx.AsyncClient, keys: MemoryKeys, source: StateSource, twice: bool) -> None:
        self.client, self.keys, self.source, self.twice = client, keys, source, twice

    async def send(self, method: str, path: str, org: str, **options: Any) -> httpx.Response:
        headers = {**bearer(self.keys.issue(Role.EVALUATOR, org)), **options.pop("headers", {})}
        first = await self.client.request(method, path, headers=headers, **options)
        if not self.twice:
            return first
        again = await self.client.request(method, path, headers=headers, **options)
        assert (again.status_code, again.content) == (first.status_code, first.content), path
        return again

    def expected(self, case: Case) -> tuple[Any, ...]:
        state = self.source.state
        e = evaluate(state.catalog, state.tenant(case.org), case.flag, platform=case.platform, user_id=case.user,
                     context=case.context)  # fmt: skip
        return e.value, e.variant, e.reason.value, None if e.level is None else e.level.value, e.rule


@pytest_asyncio.fixture(params=["fast", "fastapi", "planned"], ids=["fast-path", "fastapi-routes", "fast-path-plans"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    source = StateSource(fold(sealed(BASE)))
    planned = request.param == "planned"
    service = QueryService(DocumentCache(None, ttl=60, local=planned), source, CacheKeys("t"))
    service.cache.online = planned
    keys = MemoryKeys()
    app = create_app(Settings(), service=service, auth=memory_gate(keys))
    served = app if request.param == "fastapi" else FastPath(app)
    transport = httpx.ASGITransport(app=served, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://query.test") as client:
        yield World(client, keys, source, planned)


def _params(case: Case) -> list[tuple[str, str]]:
    params = [("user", case.user)] if case.user is not None else []
    attrs = case.context or {}
    params += [(f"context.{k}", v) for k, v in attrs.items() if isinstance(v, str)]
    typed = {k: v for k, v in attrs.items() if not isinstance(v, str)}
    return params + ([("context", json.dumps(typed))] if typed else [])


def _ofrep_body(case: Case) -> dict[str, Any]:
    context: dict[str, Any] = dict(case.context or {})
    if case.user is not None:
        context["targetingKey"] = case.user
    return {"context": context}


def test_the_table_exercises_both_levels_several_operators_and_a_split() -> None:
    rules = {c.expected.rule for c in RULE_CASES} - {None}
    assert {"staff", "new-app", "office", "globex-mail", "late", "tagged", "pilots"} <= rules  # the system's
    assert {"many-seats", "enterprise", "vip", "dach"} <= rules  # the orgs'
    assert {c.expected.level for c in RULE_CASES if c.expected.rule} == {"system", "org"}
    assert len({c.expected.variant for c in RULE_CASES if c.expected.rule == "dach"}) == 2  # a split's two arms


async def test_the_native_api_answers_every_rule_case_as_the_core(world: World) -> None:
    for case in RULE_CASES:
        body = (
            await world.send("GET", f"/v1/orgs/{case.org}/flags/{case.flag}", case.org, params=_params(case))
        ).json()
        got = (body["value"], body["variant"], body["reason"], body["level"], body["rule"])
        assert got == world.expected(case), case.name
        if case.expected.rule is not None:
            assert f"rule {case.expected.rule!r} matched" in body["explanation"]


async def test_ofrep_answers_every_rule_case_as_the_core_single_and_bulk(world: World) -> None:
    for case in RULE_CASES:
        one = (await world.send("POST", f"{BULK}/{case.flag}", case.org, json=_ofrep_body(case))).json()
        bulk = (await world.send("POST", BULK, case.org, json=_ofrep_body(case))).json()
        [listed] = [f for f in bulk["flags"] if f["key"] == case.flag]
        assert listed == one, case.name
        metadata = one["metadata"]
        got = (one["value"], one["variant"], one["reason"], metadata.get("level"), metadata.get("rule"))
        assert got == world.expected(case), case.name


async def test_one_contexts_answer_is_never_served_to_another(world: World) -> None:
    """Asked in turn with contexts that lead to different answers: the answer cache and the plans key on them."""
    contexts_ = [{"plan": "enterprise"}, {"seats": 500}, {}, {"plan": "enterprise"}]
    expected = ["enterprise", "many-seats", None, "enterprise"]
    for context, rule in zip(contexts_, expected, strict=True):
        case = Case("c.rules", ORG, None, "u-1", RULE_CASES[0].expected, context=context or None)
        native = (await world.send("GET", f"/v1/orgs/{ORG}/flags/c.rules", ORG, params=_params(case))).json()
        one = (await world.send("POST", f"{BULK}/c.rules", ORG, json=_ofrep_body(case))).json()
        bulk = (await world.send("POST", BULK, ORG, json=_ofrep_body(case))).json()
        [listed] = [f for f in bulk["flags"] if f["key"] == "c.rules"]
        assert (native["rule"], one["metadata"].get("rule"), listed["metadata"].get("rule")) == (rule,) * 3


async def test_a_flag_without_rules_answers_alike_whatever_the_context(world: World) -> None:
    plain = (await world.send("POST", f"{BULK}/c.levels", ORG, json={"context": {"targetingKey": "u-2"}})).content
    more = {"context": {"targetingKey": "u-2", "email": "ana@acme.com", "seats": 3}}
    assert (await world.send("POST", f"{BULK}/c.levels", ORG, json=more)).content == plain


@pytest.mark.parametrize(
    ("context", "attribute"),
    [
        ({"seats": {"n": 1}}, "context.seats"),
        ({"tags": ["a"]}, "context.tags"),
        ({"bad name": "x"}, "context.bad name"),
        ({"email": "x" * 1001}, "context.email"),
    ],
)
async def test_a_bad_context_value_is_refused_naming_the_attribute(
    world: World, context: dict[str, Any], attribute: str
) -> None:
    for path in (f"{BULK}/c.rules", BULK):
        r = await world.send("POST", path, ORG, json={"context": {"targetingKey": "u-1", **context}})
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["errorCode"] == "INVALID_CONTEXT" and body["errorDetails"].startswith(
            (f"{attribute} ", f"{attribute}:")
        )
    r = await world.send("GET", f"/v1/orgs/{ORG}/flags/c.rules", ORG, params={"context": json.dumps(context)})
    assert r.status_code == 422, r.text
    assert (r.json()["error"], r.json()["field"]) == ("invalid_request", attribute)


async def test_the_native_context_forms_are_refused_when_malformed(world: World) -> None:
    cases = [
        ([("context", "not json")], "context"),
        ([("context", "[1]")], "context"),
        ([("context.plan", "a"), ("context", '{"plan": "b"}')], "context.plan"),
        ([("context.plan", "a"), ("context.plan", "b")], "context.plan"),
    ]
    for params, field in cases:
        r = await world.send("GET", f"/v1/orgs/{OTHER}/flags/c.rules", OTHER, params=params)
        assert (r.status_code, r.json()["field"]) == (422, field), params


def test_from_query_reads_strings_and_one_json_object() -> None:
    pairs = [("user", "u-1"), ("context.email", "a@b.c"), ("context", '{"seats": 4, "beta": true, "x": null}')]
    assert contexts.from_query(pairs) == {"email": "a@b.c", "seats": 4, "beta": True, "x": None}
    assert contexts.from_query([("platform", "meta")]) is None
    with pytest.raises(InvalidParameter) as refused:
        contexts.from_query([("context", '{"n": 1e999}')])
    assert refused.value.field == "context"  # JSON's own limit: orjson refuses an infinite number
    with pytest.raises(InvalidParameter) as too_many:
        contexts.from_query([(f"context.a{i}", "x") for i in range(contexts.MAX_ATTRIBUTES + 1)])
    assert too_many.value.field == "context"


async def test_the_native_post_routes_take_the_context_as_json(world: World) -> None:
    for case in RULE_CASES:
        body = {"user": case.user, "context": case.context}
        one = (await world.send("POST", f"/v1/orgs/{case.org}/flags/{case.flag}/evaluate", case.org, json=body)).json()
        assert (one["value"], one["variant"], one["reason"], one["level"], one["rule"]) == world.expected(case)
        every = (await world.send("POST", f"/v1/orgs/{case.org}/evaluate", case.org, json=body)).json()
        assert [f for f in every["flags"] if f["flag_key"] == case.flag] == [one], case.name


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"[1]", "body"),
        (b"{", "body"),
        (b'{"users": "u-1"}', "users"),
        (b'{"platform": 3}', "platform"),
        (b'{"platform": "myspace"}', "platform"),
        (b'{"user": "bad user"}', "user"),
        (b'{"context": [1]}', "context"),
        (b'{"context": {"seats": {"n": 1}}}', "context.seats"),
    ],
)
async def test_a_bad_native_post_body_is_refused_naming_the_field(world: World, body: bytes, field: str) -> None:
    for path in (f"/v1/orgs/{ORG}/flags/c.rules/evaluate", f"/v1/orgs/{ORG}/evaluate"):
        r = await world.send("POST", path, ORG, content=body, headers={"content-type": "application/json"})
        assert (r.status_code, r.json()["error"], r.json()["field"]) == (422, "invalid_request", field), r.text
