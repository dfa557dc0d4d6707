"""The HTTP layer with the real use cases wired to an in-memory document source (no I/O)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from events import Platform
from flagcore import bucket, fold
from services.auth.policy import Role
from services.infra.cache_keys import CacheKeys
from services.infra.settings import Settings
from services.query.api import create_app
from services.query.cache import DocumentCache
from services.query.service import QueryService
from tests.support.auth import MemoryKeys, bearer, memory_gate
from tests.support.query_fakes import StateSource
from tests.support.query_sample import KEY, sample_log


@pytest.fixture
def source() -> StateSource:
    return StateSource(fold(sample_log().events))


@pytest_asyncio.fixture
async def client(source: StateSource) -> AsyncIterator[httpx.AsyncClient]:
    """The app in process (its lifespan has nothing to connect: the service comes wired)."""
    service = QueryService(DocumentCache(None, ttl=60, local=False), source, CacheKeys("t"))
    keys = MemoryKeys()
    app = create_app(Settings(), service=service, auth=memory_gate(keys))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = bearer(keys.issue(Role.SYSTEM_ADMIN))
    async with httpx.AsyncClient(transport=transport, base_url="http://query.test", headers=headers) as c:
        yield c


async def one(client: httpx.AsyncClient, org: str = "acme", **params: str) -> dict:
    response = await client.get(f"/v1/orgs/{org}/flags/{KEY}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


async def test_the_four_levels_in_order_user_platform_org_system(client: httpx.AsyncClient) -> None:
    assert (await one(client, "acme", platform="tiktok", user="u-1"))["level"] == "user"
    assert (await one(client, "acme", platform="tiktok", user="u-2"))["level"] == "platform"
    org = await one(client, "acme", platform="meta", user="u-2")
    assert (org["level"], org["reason"], org["rollout"]) == (
        "org",
        "SPLIT",
        {"percentage": 30, "bucket": bucket(KEY, "u-2")},
    )
    assert (await one(client, "globex"))["level"] == "system"


async def test_without_a_user_the_org_is_the_rollout_subject(client: httpx.AsyncClient) -> None:
    answer = await one(client, "acme")
    assert answer["rollout"]["bucket"] == bucket(KEY, "acme")
    assert answer["value"] is (bucket(KEY, "acme") <= 30)


async def test_the_event_block_names_what_set_the_value(client: httpx.AsyncClient, source: StateSource) -> None:
    answer = await one(client, "acme", platform="tiktok")
    ref = source.state.tenant("acme").platform[("tiktok", KEY)].source
    assert ref is not None
    assert answer["event"]["id"] == ref.event_id
    assert answer["event"]["stream"] == f"org/acme/platform/tiktok/flag/{KEY}"
    assert answer["event"]["version"] == 1 and answer["event"]["actor"] == "alice"


async def test_all_flags_and_enabled_platforms(client: httpx.AsyncClient) -> None:
    listing = (await client.get("/v1/orgs/acme/flags", params={"platform": "tiktok"})).json()
    assert listing["org_id"] == "acme"
    assert [f["flag_key"] for f in listing["flags"]] == sorted(
        [KEY, "platform.meta.enabled", "platform.google.enabled"]
    )
    assert (await client.get("/v1/orgs/acme/platforms")).json() == {"org_id": "acme", "enabled": ["google"]}
    assert (await client.get("/v1/orgs/globex/platforms")).json() == {"org_id": "globex", "enabled": ["meta"]}


async def test_the_catalogue_listing(client: httpx.AsyncClient) -> None:
    flags = {f["key"]: f for f in (await client.get("/v1/flags")).json()["flags"]}
    assert flags[KEY]["system"]["enabled"] is False and flags[KEY]["version"] == 1
    assert flags["platform.google.enabled"]["system"] is None


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/orgs/bad org!/flags/" + KEY, {}, "org_id"),
        ("/v1/orgs/acme/flags/Not%20A%20Key", {}, "flag_key"),
        ("/v1/orgs/acme/flags/" + KEY, {"platform": "myspace"}, "platform"),
        ("/v1/orgs/acme/flags/" + KEY, {"user": "has space"}, "user"),
        ("/v1/orgs/acme/flags", {"platform": "META"}, "platform"),
        ("/v1/orgs/acme/flags", {"user": "x" * 200}, "user"),
        ("/v1/orgs/-acme/platforms", {}, "org_id"),
        ("/v1/orgs/acme/platforms", {"user": "new\nline"}, "user"),
    ],
)
async def test_malformed_identifiers_are_422_naming_the_field(
    client: httpx.AsyncClient, path: str, params: dict, field: str
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["error"], body["field"]) == ("invalid_request", field)
    assert body["detail"]


async def test_an_unknown_flag_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/orgs/acme/flags/no.such.flag")
    assert response.status_code == 404
    assert response.json() == {
        "error": "unknown_flag",
        "detail": "no flag 'no.such.flag' in the catalogue",
        "field": "flag_key",
        "flag_key": "no.such.flag",
    }


async def test_empty_optional_parameters_mean_absent(client: httpx.AsyncClient) -> None:
    assert (await one(client, "acme", platform="", user=""))["level"] == "org"


async def test_postgres_down_is_503_not_500(client: httpx.AsyncClient, source: StateSource) -> None:
    source.down = True
    response = await client.get(f"/v1/orgs/acme/flags/{KEY}")
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"


async def test_unknown_routes_and_methods_keep_the_error_shape(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/whatever")).json() == {"error": "not_found", "detail": "Not Found", "field": None}
    response = await client.post(f"/v1/orgs/acme/flags/{KEY}")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


async def test_openapi_documents_every_route_and_its_answers(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {"/v1/orgs/{org_id}/flags/{flag_key}", "/v1/orgs/{org_id}/flags", "/v1/orgs/{org_id}/platforms",
            "/v1/flags", "/healthz", "/readyz"} <= set(spec["paths"])  # fmt: skip
    single = spec["paths"]["/v1/orgs/{org_id}/flags/{flag_key}"]["get"]
    ok = single["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/EvaluationOut")
    assert {"404", "422", "503"} <= set(single["responses"])
    params = {p["name"]: p for p in single["parameters"]}
    assert set(params) == {"org_id", "flag_key", "platform", "user", "context"}
    assert params["platform"]["schema"]["enum"] == [p.value for p in Platform]
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
