"""The HTTP hardening as the two real apps wire it: headers, CORS, the write rate, the throttle, the 500."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from flagcore import fold
from services.auth.authenticator import Authenticator
from services.auth.http import AuthGate
from services.auth.policy import Role
from services.command.api import create_app as command_app
from services.command.memory import InMemoryEventStore
from services.http import FailedAuthThrottle
from services.http.unhandled import INTERNAL_ERROR_DETAIL
from services.infra.cache_keys import CacheKeys
from services.infra.settings import Settings
from services.infra.tenancy import Tenancy
from services.query.api import create_app as query_app
from services.query.cache import DocumentCache
from services.query.service import QueryService
from tests.support.auth import MemoryKeys, bearer, memory_gate
from tests.support.query_fakes import StateSource
from tests.support.query_sample import KEY, sample_log

ADMIN_UI = "https://admin.flagstream.example"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}
ORG = "acme"
READ = {"command": "/v1/events", "query": "/v1/flags"}  # a read route of each service


def reason(**fields: Any) -> dict[str, Any]:
    return {"reason": "hardening test", **fields}


def assert_hardened(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code, dict(response.headers))
    assert response.headers.get_list("content-security-policy") == [SECURITY_HEADERS["content-security-policy"]]


class Apps:
    """Both apps in process, with in-memory fakes of their ports and one key table."""

    def __init__(self, settings: Settings, *, throttle: FailedAuthThrottle | None = None) -> None:
        self.keys = MemoryKeys()
        self.store = InMemoryEventStore(reader=Tenancy.CROSS_TENANT)
        gate = AuthGate(Authenticator(self.keys, ttl=0.0), throttle=throttle)
        self.command = command_app(settings, store=self.store, auth=gate)
        self.source = StateSource(fold(sample_log().events))
        service = QueryService(DocumentCache(None, ttl=60, local=False), self.source, CacheKeys("t"))
        query_gate = AuthGate(Authenticator(self.keys, ttl=0.0), throttle=throttle)
        self.query = query_app(settings, service=service, auth=query_gate)
        self.admin = bearer(self.keys.issue(Role.SYSTEM_ADMIN, name="ops"))

    def client(self, app: FastAPI) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url="http://service.test")


@pytest.fixture
def apps() -> Apps:
    return Apps(Settings(max_body_bytes=1024))


@pytest.fixture
async def command(apps: Apps) -> AsyncIterator[httpx.AsyncClient]:
    async with apps.client(apps.command) as client:
        defined = await client.post("/v1/flags", json=reason(key=KEY, group="ai"), headers=apps.admin)
        assert defined.status_code == 201, defined.text
        yield client


@pytest.fixture
async def query(apps: Apps) -> AsyncIterator[httpx.AsyncClient]:
    async with apps.client(apps.query) as client:
        yield client


# --- security headers on every answer --------------------------------------------------------------

Call = Callable[[httpx.AsyncClient, Apps], Awaitable[httpx.Response]]

COMMAND_ANSWERS: dict[str, tuple[int, Call]] = {
    "created": (201, lambda c, a: c.put(f"/v1/orgs/{ORG}/flags/{KEY}", json=reason(enabled=True), headers=a.admin)),
    "probe": (200, lambda c, a: c.get("/healthz")),
    "metrics": (200, lambda c, a: c.get("/metrics")),
    "no key": (401, lambda c, a: c.get("/v1/events")),
    "forbidden": (
        403,
        lambda c, a: c.get("/v1/events", headers=bearer(a.keys.issue(Role.EVALUATOR, ORG))),
    ),
    "no route": (404, lambda c, a: c.get("/v1/nothing", headers=a.admin)),
    "unknown flag": (404, lambda c, a: c.put("/v1/flags/no.such/system", json=reason(enabled=True), headers=a.admin)),
    "wrong method": (405, lambda c, a: c.get(f"/v1/flags/{KEY}/system", headers=a.admin)),
    "malformed json": (
        400,
        lambda c, a: c.post("/v1/flags", content=b"{", headers={**a.admin, "content-type": "application/json"}),
    ),
    "too large": (413, lambda c, a: c.post("/v1/flags", json=reason(description="x" * 2000), headers=a.admin)),
    "not json": (415, lambda c, a: c.post("/v1/flags", data={"key": "a"}, headers=a.admin)),
    "invalid": (422, lambda c, a: c.put(f"/v1/orgs/{ORG}/flags/{KEY}", json=reason(enabled=3), headers=a.admin)),
    "conflict": (
        409,
        lambda c, a: c.put(f"/v1/orgs/{ORG}/flags/{KEY}", json=reason(enabled=True, expected_version=7),
                           headers=a.admin),
    ),
}


@pytest.mark.parametrize("case", list(COMMAND_ANSWERS))
async def test_every_command_answer_carries_the_security_headers(
    case: str, command: httpx.AsyncClient, apps: Apps
) -> None:
    status, call = COMMAND_ANSWERS[case]
    response = await call(command, apps)
    assert response.status_code == status, response.text
    assert_hardened(response)


async def test_command_500_and_503_carry_the_headers_and_no_internals(apps: Apps) -> None:
    class Broken(InMemoryEventStore):
        async def list_events(self, **_: Any) -> Any:
            raise RuntimeError("password=hunter2 at SELECT * FROM event_store")

    app = command_app(Settings(), store=Broken(), auth=memory_gate(apps.keys))
    async with apps.client(app) as client:
        broken = await client.get("/v1/events", headers=apps.admin)
        apps.store.available = False
    assert broken.status_code == 500
    assert broken.json() == {"error": "internal_error", "detail": INTERNAL_ERROR_DETAIL, "field": None}
    assert_hardened(broken)
    async with apps.client(apps.command) as client:
        down = await client.put(f"/v1/flags/{KEY}/system", json=reason(enabled=True), headers=apps.admin)
    assert down.status_code == 503 and "SELECT" not in down.text
    assert_hardened(down)


QUERY_ANSWERS: dict[str, tuple[int, Call]] = {
    "evaluation": (200, lambda c, a: c.get(f"/v1/orgs/{ORG}/flags/{KEY}", headers=a.admin)),
    "catalogue": (200, lambda c, a: c.get("/v1/flags", headers=a.admin)),
    "probe": (200, lambda c, a: c.get("/healthz")),
    "no key": (401, lambda c, a: c.get(f"/v1/orgs/{ORG}/flags")),
    "forbidden": (
        403,
        lambda c, a: c.get("/v1/orgs/globex/flags", headers=bearer(a.keys.issue(Role.EVALUATOR, ORG))),
    ),
    "unknown flag": (404, lambda c, a: c.get(f"/v1/orgs/{ORG}/flags/no.such", headers=a.admin)),
    "no route": (404, lambda c, a: c.get("/v1/nothing", headers=a.admin)),
    "wrong method": (405, lambda c, a: c.post("/v1/flags", json={}, headers=a.admin)),
    "invalid": (422, lambda c, a: c.get(f"/v1/orgs/{ORG}/flags?platform=myspace", headers=a.admin)),
}


@pytest.mark.parametrize("case", list(QUERY_ANSWERS))
async def test_every_query_answer_carries_the_security_headers(case: str, query: httpx.AsyncClient, apps: Apps) -> None:
    status, call = QUERY_ANSWERS[case]
    response = await call(query, apps)
    assert response.status_code == status, response.text
    assert_hardened(response)


async def test_a_query_failure_is_a_generic_500_with_the_headers(
    query: httpx.AsyncClient, apps: Apps, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(org_id: str) -> bytes:
        raise RuntimeError("relation overrides at 10.0.0.7: SELECT org_id FROM overrides")

    apps.source.org = broken  # type: ignore[method-assign]
    response = await query.get(f"/v1/orgs/{ORG}/flags/{KEY}", headers=apps.admin)
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error", "detail": "unexpected error; see the service log", "field": None,
    }
    assert "SELECT" not in response.text and "Traceback" not in response.text
    assert "SELECT org_id FROM overrides" in caplog.text  # the log has it all
    assert_hardened(response)


async def test_a_503_from_the_query_service_names_no_internals(query: httpx.AsyncClient, apps: Apps) -> None:
    apps.source.down = True
    response = await query.get(f"/v1/orgs/{ORG}/flags/{KEY}", headers=apps.admin)
    assert response.status_code == 503
    assert "connection refused" not in response.text
    assert_hardened(response)


# --- the docs still load ---------------------------------------------------------------------------


def _inline_hashes(page: str) -> set[str]:
    hashes = set()
    for attributes, text in re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S):
        if "src=" not in attributes:
            digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
            hashes.add(f"'sha256-{digest}'")
    return hashes


@pytest.mark.parametrize("service", ["command", "query"])
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_load_with_a_policy_that_allows_exactly_their_assets(
    service: str, page: str, apps: Apps
) -> None:
    async with apps.client(getattr(apps, service)) as client:
        response = await client.get(page)
        spec = await client.get("/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    directives = (d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";"))
    policy = {d[0]: d[1] if len(d) > 1 else "" for d in directives}
    scripts = set(policy["script-src"].split())
    assert _inline_hashes(response.text) <= scripts and "'unsafe-inline'" not in scripts
    for url in re.findall(r'<script[^>]* src="([^"]+)"', response.text):
        assert url in scripts, url
    for url in re.findall(r'<link[^>]* href="([^"]+)"', response.text):
        assert any(url.startswith(source) for source in policy["style-src"].split() + policy["img-src"].split()), url
    assert policy["connect-src"] == "'self'"  # the page fetches /openapi.json from its own origin
    assert spec.status_code == 200 and spec.json()["paths"]
    assert_hardened(spec)


# --- CORS ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["command", "query"])
async def test_cors_is_closed_by_default(service: str, apps: Apps) -> None:
    path = READ[service]
    async with apps.client(getattr(apps, service)) as client:
        simple = await client.get(path, headers={**apps.admin, "Origin": ADMIN_UI})
        preflight = await client.options(path, headers={"Origin": ADMIN_UI, "Access-Control-Request-Method": "GET"})
    assert simple.status_code == 200
    for response in (simple, preflight):
        assert not any(name.startswith("access-control-") for name in response.headers), response.headers
        assert_hardened(response)


@pytest.mark.parametrize("service", ["command", "query"])
async def test_cors_opens_for_the_configured_admin_ui_only(service: str) -> None:
    apps = Apps(Settings(cors_origins=[ADMIN_UI]))
    path = READ[service]
    async with apps.client(getattr(apps, service)) as client:
        allowed = await client.get(path, headers={**apps.admin, "Origin": ADMIN_UI})
        other = await client.get(path, headers={**apps.admin, "Origin": "https://evil.example"})
        preflight = await client.options(
            path,
            headers={"Origin": ADMIN_UI, "Access-Control-Request-Method": "PUT",
                     "Access-Control-Request-Headers": "authorization, content-type"},
        )
        refused = await client.options(
            path, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"}
        )
        unauthenticated = await client.get(path, headers={"Origin": ADMIN_UI})
    assert allowed.status_code == other.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ADMIN_UI
    assert "access-control-allow-credentials" not in allowed.headers
    assert "access-control-allow-origin" not in other.headers
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == ADMIN_UI
    assert "PUT" in preflight.headers["access-control-allow-methods"]
    assert refused.status_code == 403 and refused.json()["error"] == "cors_refused"
    assert not any(name.startswith("access-control-") for name in refused.headers)
    # the admin UI can read a refusal, so it can tell its user why
    assert unauthenticated.status_code == 401 and unauthenticated.headers["access-control-allow-origin"] == ADMIN_UI
    for response in (allowed, other, preflight, refused, unauthenticated):
        assert_hardened(response)


def test_cors_origins_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().cors_origins == []
    monkeypatch.setenv("FLAGS_CORS_ORIGINS", f'["{ADMIN_UI}", "http://localhost:5173"]')
    assert Settings().cors_origins == [ADMIN_UI, "http://localhost:5173"]


def test_a_malformed_cors_origin_stops_the_app_from_being_built() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        command_app(Settings(cors_origins=["https://*.example.com"]))


# --- the per-key write rate on the command API ---------------------------------------------------------


async def test_writes_past_a_keys_burst_get_429_with_retry_after_and_write_nothing() -> None:
    apps = Apps(Settings(command_rate_per_second=0.05, command_rate_burst=3))
    other = bearer(apps.keys.issue(Role.ORG_ADMIN, ORG))
    async with apps.client(apps.command) as client:
        defined = await client.post("/v1/flags", json=reason(key=KEY, group="ai"), headers=apps.admin)
        statuses = [
            (await client.put(f"/v1/orgs/{ORG}/flags/{KEY}", json=reason(rollout_percentage=p), headers=apps.admin))
            for p in (10, 20, 30)
        ]
        written = await apps.store.count_unpublished()
        refused = statuses[-1]
        # another key has its own bucket; reads are never charged
        theirs = await client.put(f"/v1/orgs/{ORG}/flags/{KEY}", json=reason(enabled=True), headers=other)
        reads = [await client.get("/v1/events", headers=apps.admin) for _ in range(5)]
        stream = await client.get(f"/v1/streams/org/{ORG}/flag/{KEY}", headers=apps.admin)
        metrics = await client.get("/metrics")
    assert defined.status_code == 201
    assert [s.status_code for s in statuses] == [201, 201, 429]
    assert refused.json() == {
        "error": "rate_limited",
        "detail": f"too many changes from this key; retry after {refused.json()['retry_after']} s",
        "field": None,
        "retry_after": int(refused.headers["retry-after"]),
    }
    assert 1 <= int(refused.headers["retry-after"]) <= 20  # one token at 0.05/s
    assert_hardened(refused)
    assert written == 3  # the definition and two settings: the refused write wrote nothing
    assert theirs.status_code == 201
    assert [r.status_code for r in reads] == [200] * 5 and stream.status_code == 200
    assert 'flagstream_auth_denials_total{cause="rate_limited"} 1.0' in metrics.text


async def test_refused_and_key_management_writes_are_charged_too() -> None:
    apps = Apps(Settings(command_rate_per_second=0.05, command_rate_burst=2))
    evaluator = bearer(apps.keys.issue(Role.EVALUATOR, ORG))
    admin_keys = bearer(apps.keys.issue(Role.SYSTEM_ADMIN))
    body = reason(name="ci", role="evaluator", org_id=ORG)
    async with apps.client(apps.command) as client:
        forbidden = [
            (await client.put(f"/v1/flags/{KEY}/system", json=reason(enabled=True), headers=evaluator)).status_code
            for _ in range(3)
        ]
        keys = [(await client.post("/v1/keys", json=body, headers=admin_keys)).status_code for _ in range(3)]
        listing = await client.get("/v1/keys", headers=admin_keys)
    assert forbidden == [403, 403, 429]
    assert keys[2] == 429 and 429 not in keys[:2]  # (no key store in process: refused, but charged)
    assert listing.status_code != 429


async def test_unauthenticated_writes_are_not_charged_to_any_key() -> None:
    apps = Apps(Settings(command_rate_per_second=0.05, command_rate_burst=1))
    async with apps.client(apps.command) as client:
        for _ in range(3):
            assert (await client.post("/v1/flags", json=reason(key=KEY, group="ai"))).status_code == 401
        ok = await client.post("/v1/flags", json=reason(key=KEY, group="ai"), headers=apps.admin)
    assert ok.status_code == 201


def test_the_write_rate_defaults() -> None:
    settings = Settings()
    assert (settings.command_rate_per_second, settings.command_rate_burst) == (20.0, 40)


# --- the failed-auth throttle, as the apps answer it ------------------------------------------------------


@pytest.mark.parametrize("service", ["command", "query"])
async def test_a_client_sending_bad_keys_is_blocked_with_429_and_retry_after(service: str) -> None:
    throttle = FailedAuthThrottle(free_failures=2, base_delay_seconds=0.001, max_delay_seconds=0.001,
                                  block_after_capped=1, window_seconds=30)
    apps = Apps(Settings(), throttle=throttle)
    bad = bearer("fsk_0123456789abcdef_" + "A" * 43)
    async with apps.client(getattr(apps, service)) as client:
        failures = [(await client.get(READ[service], headers=bad)).status_code for _ in range(3)]
        blocked = await client.get(READ[service], headers=apps.admin)  # even a good key, from that client
        metrics = await client.get("/metrics") if service == "command" else None
    assert failures == [401, 401, 401]
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "rate_limited"
    assert blocked.json()["detail"].startswith("too many failed authentications; retry after ")
    assert 1 <= int(blocked.headers["retry-after"]) <= 30
    assert_hardened(blocked)
    if metrics is not None:
        assert 'flagstream_auth_denials_total{cause="throttled"} 1.0' in metrics.text
