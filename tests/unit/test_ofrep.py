"""OFREP over the app in process: shapes, reasons, error codes, ETags and access, on both HTTP paths.

Every test runs twice: through the fast path's ASGI adapter and through
FastAPI's routes; the answers must be the same. The site `python -m services.query`
serves is compared with them in tests/unit/test_query_site.py, and tested on the
running stack (tests/integration/test_ofrep.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import pytest_asyncio

from flagcore import Reason, bucket, evaluate, fold
from services.auth.policy import Role
from services.infra.cache_keys import CacheKeys
from services.infra.settings import Settings
from services.query import ofrep
from services.query.api import create_app
from services.query.cache import DocumentCache
from services.query.fastpath import FastPath
from services.query.service import QueryService
from tests.support.auth import MemoryKeys, bearer, memory_gate
from tests.support.query_fakes import StateSource
from tests.support.query_sample import KEY, sample_log

FLAG = f"/ofrep/v1/evaluate/flags/{KEY}"
BULK = "/ofrep/v1/evaluate/flags"


class World:
    def __init__(
        self, client: httpx.AsyncClient, keys: MemoryKeys, source: StateSource, *, twice: bool = False
    ) -> None:
        self.client = client
        self.keys = keys
        self.source = source
        self.twice = twice  # ask each question twice: the second is answered from a plan when it can be

    def key(self, role: Role, org: str | None = None) -> dict[str, str]:
        return bearer(self.keys.issue(role, org))

    async def post(self, path: str, body: object = None, *, role: Role = Role.EVALUATOR, org: str | None = "acme",
                   headers: dict[str, str] | None = None, raw: bytes | None = None) -> httpx.Response:
        content = raw if raw is not None else (b"" if body is None else orjson.dumps(body))
        sent = {**self.key(role, org), **(headers or {})}
        first = await self.client.post(path, content=content, headers=sent)
        if not self.twice:
            return first
        again = await self.client.post(path, content=content, headers=sent)
        assert (again.status_code, again.content, again.headers.multi_items()) == (
            first.status_code, first.content, first.headers.multi_items()
        ), path  # the plan (services.query.plans) answers exactly what the use cases answered
        return again


@pytest_asyncio.fixture(params=["fast", "fastapi", "planned"], ids=["fast-path", "fastapi-routes", "fast-path-plans"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    source = StateSource(fold(sample_log().events))
    planned = request.param == "planned"  # documents kept in process, so the hot path's plans answer
    service = QueryService(DocumentCache(None, ttl=60, local=planned), source, CacheKeys("t"))
    service.cache.online = planned  # as the invalidation listener sets it once subscribed
    keys = MemoryKeys()
    app = create_app(Settings(), service=service, auth=memory_gate(keys))
    served = app if request.param == "fastapi" else FastPath(app)
    transport = httpx.ASGITransport(app=served, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://query.test") as client:
        yield World(client, keys, source, twice=planned)


def test_every_core_reason_has_an_ofrep_name() -> None:
    assert set(ofrep.REASONS) == set(Reason)


async def test_one_flag_answers_in_ofreps_shape(world: World) -> None:
    response = await world.post(FLAG, {"context": {"targetingKey": "u-1"}})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"  # the security layers still wrap it
    body = response.json()
    assert body == {
        "key": KEY,
        "value": False,
        "reason": "TARGETING_MATCH",
        "variant": "off",
        "metadata": {
            "level": "user",
            "eventId": body["metadata"]["eventId"],
            "version": 1,
            "valueType": "boolean",
            "stream": f"org/acme/user/u-1/flag/{KEY}",
            "occurredAt": body["metadata"]["occurredAt"],
        },
    }
    assert body["metadata"]["occurredAt"].endswith("Z")


async def test_answers_agree_with_the_pure_core(world: World) -> None:
    state = world.source.state
    for context, platform, user in [
        ({}, None, None),
        ({"platform": "tiktok"}, "tiktok", None),
        ({"targetingKey": "u-7"}, None, "u-7"),
        ({"targetingKey": "u-1", "platform": "tiktok"}, "tiktok", "u-1"),
        ({"targetingKey": "u-9", "platform": "meta", "plan": "enterprise", "seats": 3}, "meta", "u-9"),
    ]:
        expected = evaluate(state.catalog, state.tenant("acme"), KEY, platform=platform, user_id=user)
        body = (await world.post(FLAG, {"context": context})).json()
        assert (body["value"], body["reason"]) == (expected.value, expected.reason.value), context
        assert body["metadata"].get("level") == expected.level


async def test_a_rollout_is_a_split_on_the_users_bucket(world: World) -> None:
    for user in ("u-2", "u-3", "u-4", "u-5"):
        body = (await world.post(FLAG, {"context": {"targetingKey": user}})).json()
        assert body["reason"] == "SPLIT"
        assert body["value"] is (bucket(KEY, user) <= 30)
        assert body["variant"] == ("on" if body["value"] else "off")
        assert body["metadata"]["rolloutPercentage"] == 30


async def test_a_flag_no_level_sets_is_default(world: World) -> None:
    body = (await world.post("/ofrep/v1/evaluate/flags/platform.google.enabled", {})).json()
    assert (body["value"], body["reason"], body["metadata"]) == (False, "DEFAULT", {"valueType": "boolean"})


async def test_an_unknown_flag_is_flag_not_found(world: World) -> None:
    for key in ("no.such.flag", "Not-A-Key"):
        response = await world.post(f"/ofrep/v1/evaluate/flags/{key}", {})
        assert response.status_code == 404
        body = response.json()
        assert (body["key"], body["errorCode"]) == (key, "FLAG_NOT_FOUND")
        assert body["errorDetails"]


@pytest.mark.parametrize(
    ("raw", "status", "code", "names"),
    [
        (b"{not json", 400, "PARSE_ERROR", "JSON"),
        (b"[1, 2]", 400, "PARSE_ERROR", "object"),
        (b'{"context": "acme"}', 400, "PARSE_ERROR", "context"),
        (b'{"context": {"platform": "myspace"}}', 400, "INVALID_CONTEXT", "context.platform"),
        (b'{"context": {"platform": 7}}', 400, "INVALID_CONTEXT", "context.platform"),
        (b'{"context": {"targetingKey": 42}}', 400, "INVALID_CONTEXT", "context.targetingKey"),
        (b'{"context": {"targetingKey": "no spaces"}}', 400, "INVALID_CONTEXT", "context.targetingKey"),
        (b'{"context": {"targetingKey": ""}}', 400, "TARGETING_KEY_MISSING", "context.targetingKey"),
        (b'{"context": {"targetingKey": null}}', 400, "TARGETING_KEY_MISSING", "context.targetingKey"),
        (b'{"context": {"org": "bad org!"}}', 400, "INVALID_CONTEXT", "context.org"),
        (b'{"context": {"x": "' + b"y" * ofrep.MAX_BODY + b'"}}', 413, "PARSE_ERROR", "bytes"),
    ],
)
async def test_bad_requests_name_what_is_wrong(world: World, raw: bytes, status: int, code: str, names: str) -> None:
    single = await world.post(FLAG, raw=raw)
    assert (single.status_code, single.json()["errorCode"], single.json()["key"]) == (status, code, KEY)
    assert names in single.json()["errorDetails"]
    bulk = await world.post(BULK, raw=raw)
    assert (bulk.status_code, bulk.json()["errorCode"]) == (status, code)
    assert "key" not in bulk.json()


async def test_no_body_evaluates_for_the_keys_org(world: World) -> None:
    for raw in (b"", b"{}", b'{"context": null}'):
        response = await world.post(FLAG, raw=raw)
        assert response.status_code == 200, (raw, response.text)
        assert response.json()["metadata"]["level"] == "org"


async def test_bulk_answers_every_flag_with_an_etag(world: World) -> None:
    response = await world.post(BULK, {"context": {"targetingKey": "u-1", "platform": "google"}})
    assert response.status_code == 200
    flags = {f["key"]: f for f in response.json()["flags"]}
    assert set(flags) == set(world.source.state.catalog.definitions)
    assert flags[KEY]["value"] is False and flags[KEY]["metadata"]["level"] == "user"
    assert flags["platform.google.enabled"]["reason"] == "TARGETING_MATCH"
    # OFREP 0.3's eventStreams: the org's change stream, on the origin the provider already speaks to
    streams = [{"type": "sse", "endpoint": {"requestUri": "/ofrep/v1/changes?org=acme"}}]
    assert response.json()["eventStreams"] == streams
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')

    again = await world.post(BULK, {"context": {"targetingKey": "u-1", "platform": "google"}},
                             headers={"If-None-Match": f'"other", W/{etag}'})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    other_user = await world.post(BULK, {"context": {"targetingKey": "u-2"}}, headers={"If-None-Match": etag})
    assert other_user.status_code == 200 and other_user.headers["etag"] != etag


async def test_an_org_scoped_key_may_name_only_its_own_org(world: World) -> None:
    own = await world.post(FLAG, {"context": {"org": "acme"}})
    assert own.status_code == 200
    for path in (FLAG, BULK):
        other = await world.post(path, {"context": {"org": "globex"}})
        ghost = await world.post(path, {"context": {"org": "never-existed"}})
        assert other.status_code == ghost.status_code == 403
        assert other.json() == ghost.json() and other.json()["error"] == "forbidden"


async def test_a_system_wide_key_must_name_the_org(world: World) -> None:
    missing = await world.post(FLAG, {"context": {}}, role=Role.SYSTEM_ADMIN, org=None)
    assert (missing.status_code, missing.json()["errorCode"]) == (400, "INVALID_CONTEXT")
    assert "context.org" in missing.json()["errorDetails"]
    named = await world.post(FLAG, {"context": {"org": "acme"}}, role=Role.SYSTEM_ADMIN, org=None)
    assert named.status_code == 200 and named.json()["metadata"]["level"] == "org"


async def test_roles_that_do_not_evaluate_are_refused_before_the_body_is_read(world: World) -> None:
    for role, org in ((Role.AUDITOR, "acme"), (Role.AUDITOR, None)):
        response = await world.post(FLAG, raw=b"{not json", role=role, org=org)
        assert response.status_code == 403 and response.json()["error"] == "forbidden"


async def test_no_key_or_a_bad_key_is_401(world: World) -> None:
    for headers in ({}, {"Authorization": "Bearer fsk_0123456789abcdef_" + "x" * 43}, {"Authorization": "Basic x"}):
        response = await world.client.post(FLAG, content=b"{}", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthenticated"
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_postgres_down_is_general_with_503(world: World) -> None:
    world.source.down = True
    single = await world.post(FLAG, {})
    assert (single.status_code, single.json()["errorCode"]) == (503, "GENERAL")
    bulk = await world.post(BULK, {})
    assert (bulk.status_code, bulk.json()["errorCode"]) == (503, "GENERAL")


async def test_other_routes_and_methods_pass_through(world: World) -> None:
    assert (await world.client.get(FLAG, headers=world.key(Role.EVALUATOR, "acme"))).status_code == 405
    nested = await world.post(f"{FLAG}/extra", {})
    assert nested.status_code == 404 and nested.json()["error"] == "not_found"
    native = await world.client.get(f"/v1/orgs/acme/flags/{KEY}", headers=world.key(Role.EVALUATOR, "acme"))
    assert native.status_code == 200


async def test_a_browser_request_goes_through_the_apps_cors_layer() -> None:
    source = StateSource(fold(sample_log().events))
    service = QueryService(DocumentCache(None, ttl=60, local=False), source, CacheKeys("t"))
    keys = MemoryKeys()
    settings = Settings(cors_origins=["https://admin.example"])
    app = FastPath(create_app(settings, service=service, auth=memory_gate(keys)), cors=True)
    headers = {**bearer(keys.issue(Role.EVALUATOR, "acme")), "Origin": "https://admin.example"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query.test") as client:
        response = await client.post(FLAG, json={"context": {"targetingKey": "u-1"}}, headers=headers)
        direct = await client.post(FLAG, json={"context": {"targetingKey": "u-1"}}, headers=bearer(keys.issue(
            Role.EVALUATOR, "acme")))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://admin.example"
    assert response.json() == direct.json()


async def test_the_native_route_answers_alike_before_the_app() -> None:
    """`GET /v1/orgs/{org}/flags/{key}` is answered by the hot path too: the same bytes as the app's route."""
    source = StateSource(fold(sample_log().events))
    service = QueryService(DocumentCache(None, ttl=60, local=False), source, CacheKeys("t"))
    keys = MemoryKeys()
    app = create_app(Settings(), service=service, auth=memory_gate(keys))
    own, auditor = bearer(keys.issue(Role.EVALUATOR, "acme")), bearer(keys.issue(Role.AUDITOR, "acme"))
    requests = [
        (f"/v1/orgs/acme/flags/{KEY}", {"platform": "tiktok", "user": "u-1"}, own),
        (f"/v1/orgs/acme/flags/{KEY}", {"user": "u-5"}, own),
        (f"/v1/orgs/acme/flags/{KEY}", {"platform": ""}, own),
        (f"/v1/orgs/acme/flags/{KEY}", {"platform": "myspace"}, own),
        (f"/v1/orgs/acme/flags/{KEY}", {"user": "has space"}, own),
        ("/v1/orgs/acme/flags/Bad%20Key", {}, own),
        ("/v1/orgs/acme/flags/no.such.flag", {}, own),
        ("/v1/orgs/bad org!/flags/x", {}, own),
        (f"/v1/orgs/globex/flags/{KEY}", {}, own),
        (f"/v1/orgs/acme/flags/{KEY}", {}, auditor),
        (f"/v1/orgs/acme/flags/{KEY}", {}, {}),
    ]
    answers = []
    for served in (FastPath(app), app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://q.test") as client:
            answers.append([await client.get(path, params=query, headers=key) for path, query, key in requests])
    for (path, params, _), fast, routed in zip(requests, *answers, strict=True):
        assert (fast.status_code, fast.json()) == (routed.status_code, routed.json()), (path, params)
        assert fast.headers["content-security-policy"] == routed.headers["content-security-policy"]
    assert [r.status_code for r in answers[0]] == [200, 200, 200, 422, 422, 422, 404, 422, 403, 403, 401]
    source.down = True
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=FastPath(app)), base_url="http://q.test") as client:
        down = await client.get(f"/v1/orgs/acme/flags/{KEY}", params={"user": "u-9"}, headers=own)
    assert (down.status_code, down.json()["error"]) == (503, "unavailable")
