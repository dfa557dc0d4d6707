"""The command API's HTTP contract, over the in-memory store (a fake of our own port)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from events import Platform, decode
from services.auth.policy import Role
from services.command.api import create_app
from services.command.memory import InMemoryEventStore
from services.http.unhandled import INTERNAL_ERROR_DETAIL
from services.infra.settings import Settings
from services.infra.tenancy import Tenancy
from tests.support.auth import MemoryKeys, bearer, memory_gate

KEY = "ai.insights.enabled"
ORG = "acme"
MAX_BODY = 1024
SETTINGS = Settings(max_body_bytes=MAX_BODY)


def body(**fields: Any) -> dict[str, Any]:
    return {"reason": "testing", **fields}


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore(reader=Tenancy.CROSS_TENANT)


@pytest.fixture
def keys() -> MemoryKeys:
    return MemoryKeys()


@pytest.fixture
async def client(store: InMemoryEventStore, keys: MemoryKeys) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SETTINGS, store=store, auth=memory_gate(keys))
    admin = keys.issue(Role.SYSTEM_ADMIN, name="ops")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://command", headers=bearer(admin)
    ) as c:
        yield c


@pytest.fixture
async def defined(client: httpx.AsyncClient) -> httpx.AsyncClient:
    response = await client.post("/v1/flags", json=body(key=KEY, group="ai"))
    assert response.status_code == 201, response.text
    return client


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"] == code, payload
    assert payload["field"] == field, payload
    assert payload["detail"]
    return payload


# --- the happy paths -------------------------------------------------------------------


async def test_define_set_and_read_back(defined: httpx.AsyncClient) -> None:
    client = defined
    response = await client.put(f"/v1/orgs/{ORG}/flags/{KEY}", json=body(enabled=True, rollout_percentage=40))
    assert response.status_code == 201
    result = response.json()
    assert result["changed"] is True
    assert result["stream"] == f"org/{ORG}/flag/{KEY}"
    assert result["version"] == 2
    assert [(e["type"], e["version"], e["new"]) for e in result["events"]] == [
        ("OrgOverrideSet", 1, {"enabled": True, "rollout_percentage": None}),
        ("RolloutPercentageSet", 2, {"enabled": True, "rollout_percentage": 40}),
    ]
    assert set(result["events"][0]) == {"event_id", "type", "stream", "version", "sequence", "previous", "new"}

    stream = (await client.get(f"/v1/streams/org/{ORG}/flag/{KEY}")).json()
    assert stream == {
        "stream": f"org/{ORG}/flag/{KEY}",
        "version": 2,
        "value": {"enabled": True, "rollout_percentage": 40},
    }


async def test_the_same_request_twice_writes_nothing_the_second_time(defined: httpx.AsyncClient) -> None:
    url = f"/v1/orgs/{ORG}/platforms/meta/flags/{KEY}"
    assert (await defined.put(url, json=body(enabled=False))).status_code == 201
    again = await defined.put(url, json=body(enabled=False))
    assert again.status_code == 200
    assert again.json() == {
        "changed": False,
        "stream": f"org/{ORG}/platform/meta/flag/{KEY}",
        "version": 1,
        "events": [],
    }


async def test_every_write_route(defined: httpx.AsyncClient) -> None:
    client = defined
    cases = [
        ("PUT", f"/v1/flags/{KEY}/system", body(enabled=True), 201, ["SystemDefaultSet"]),
        ("PUT", f"/v1/orgs/{ORG}/users/u@example.com/flags/{KEY}", body(enabled=False), 201, ["UserOverrideSet"]),
        ("DELETE", f"/v1/orgs/{ORG}/users/u@example.com/flags/{KEY}", body(), 201, ["UserOverrideCleared"]),
        ("DELETE", f"/v1/orgs/{ORG}/users/u@example.com/flags/{KEY}", body(), 200, []),
        (
            "PUT",
            f"/v1/orgs/{ORG}/platforms/tiktok/flags/{KEY}",
            body(rollout_percentage=5),
            201,
            ["RolloutPercentageSet"],
        ),
        ("DELETE", f"/v1/orgs/{ORG}/platforms/tiktok/flags/{KEY}", body(), 201, ["PlatformOverrideCleared"]),
        ("PUT", f"/v1/orgs/{ORG}/flags/{KEY}", body(enabled=True), 201, ["OrgOverrideSet"]),
        ("DELETE", f"/v1/orgs/{ORG}/flags/{KEY}", body(expected_version=1), 201, ["OrgOverrideCleared"]),
        ("PATCH", f"/v1/flags/{KEY}", body(description="AI insights", owner="ai-team"), 201, ["FlagUpdated"]),
        ("PATCH", f"/v1/flags/{KEY}", body(owner="ai-team"), 200, []),
        ("POST", f"/v1/flags/{KEY}/archive", body(), 201, ["FlagArchived"]),
        ("POST", f"/v1/flags/{KEY}/archive", body(), 200, []),
    ]
    for method, url, payload, status, types in cases:
        response = await client.request(method, url, json=payload)
        assert response.status_code == status, (method, url, response.text)
        assert [e["type"] for e in response.json()["events"]] == types, (method, url)


async def test_the_actor_is_the_key_and_the_reason_is_recorded(
    defined: httpx.AsyncClient, store: InMemoryEventStore, keys: MemoryKeys
) -> None:
    await defined.put(f"/v1/orgs/{ORG}/flags/{KEY}", json={"enabled": True, "reason": "  pilot  "})
    (stored,) = await store.list_events(org=ORG)
    envelope = decode(stored.body)
    (admin_id,) = keys.records
    assert (envelope.actor.id, envelope.actor.name, envelope.reason) == (f"key:{admin_id}", "ops", "pilot")


async def test_an_actor_in_the_body_is_refused_not_believed(
    defined: httpx.AsyncClient, store: InMemoryEventStore
) -> None:
    response = await defined.put(f"/v1/orgs/{ORG}/flags/{KEY}", json={"enabled": True, "reason": "x", "actor": "ceo"})
    assert response.status_code == 422 and response.json()["field"] == "actor"
    assert await store.list_events(org=ORG) == []


async def test_events_are_listed_as_the_stored_bytes(defined: httpx.AsyncClient, store: InMemoryEventStore) -> None:
    for i in range(3):
        await defined.put(f"/v1/orgs/{ORG}/flags/{KEY}", json=body(rollout_percentage=10 * (i + 1)))
    await defined.put(f"/v1/orgs/other/flags/{KEY}", json=body(enabled=True))

    first = await defined.get("/v1/events", params={"org": ORG, "limit": 2})
    assert first.status_code == 200
    page = first.json()
    assert [e["version"] for e in page["events"]] == [1, 2]
    second = (await defined.get("/v1/events", params={"org": ORG, "after": page["next_after"]})).json()
    assert [e["version"] for e in second["events"]] == [3]
    assert second["next_after"] == second["events"][-1]["sequence"]

    stored = {e.sequence: e.body for e in await store.list_events(org=ORG)}
    raw = first.content.decode()
    for event in page["events"]:
        assert json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False) in raw
        assert decode(stored[event["sequence"]]).hash == event["hash"]
    everything = (await defined.get("/v1/events", params={"flag": KEY})).json()["events"]
    assert len(everything) == 5


async def test_a_stream_name_with_control_characters_is_422(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/streams/org/a%00b/flag/x"), 422, "invalid_request", "stream")


async def test_empty_stream_reads_as_version_zero(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/streams/flag/nothing.here")
    assert response.json() == {"stream": "flag/nothing.here", "version": 0, "value": None}


# --- the error contract -------------------------------------------------------------------


async def test_malformed_json_is_400(defined: httpx.AsyncClient) -> None:
    response = await defined.put(
        f"/v1/orgs/{ORG}/flags/{KEY}", content=b'{"enabled": tru', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "malformed_json")


async def test_a_body_over_the_limit_is_413_by_header(client: httpx.AsyncClient) -> None:
    big = body(key=KEY, group="ai", description="x" * (MAX_BODY + 10))
    payload = assert_error(await client.post("/v1/flags", json=big), 413, "body_too_large")
    assert payload["limit"] == MAX_BODY


async def test_a_body_over_the_limit_is_413_when_streamed_without_length(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"reason": "r", "key": "a.b", "group": "g", "description": "'
        for _ in range(10):
            yield b"x" * 200
        yield b'"}'

    response = await client.post("/v1/flags", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "body_too_large")


async def test_a_lying_content_length_is_caught_while_streaming(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"{" + b" " * (MAX_BODY + 100) + b"}"

    response = await client.post(
        "/v1/flags", content=chunks(), headers={"content-type": "application/json", "content-length": "10"}
    )
    assert_error(response, 413, "body_too_large")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_writes_must_be_json(defined: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await defined.put(
        f"/v1/orgs/{ORG}/flags/{KEY}", content=b'{"reason":"r","enabled":true}', headers=headers
    )
    assert_error(response, 415, "unsupported_media_type")


async def test_json_with_a_charset_is_accepted(defined: httpx.AsyncClient) -> None:
    response = await defined.put(
        f"/v1/orgs/{ORG}/flags/{KEY}",
        content=b'{"reason":"r","enabled":true}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201


URL = f"/v1/orgs/{ORG}/flags/{KEY}"

INVALID_BODIES = [
    pytest.param(URL, {"enabled": True}, "reason", id="missing-reason"),
    pytest.param(URL, {"enabled": True, "reason": "   "}, "reason", id="blank-reason"),
    pytest.param(URL, {"enabled": True, "reason": 7}, "reason", id="reason-not-text"),
    pytest.param(URL, body(rollout_percentage=101), "rollout_percentage", id="rollout-101"),
    pytest.param(URL, body(rollout_percentage=-1), "rollout_percentage", id="rollout-minus-1"),
    pytest.param(URL, body(rollout_percentage=50.5), "rollout_percentage", id="rollout-fraction"),
    pytest.param(URL, body(rollout_percentage="50"), "rollout_percentage", id="rollout-string"),
    pytest.param(URL, body(rollout_percentage=True), "rollout_percentage", id="rollout-bool"),
    pytest.param(URL, body(enabled="yes"), "enabled", id="enabled-string"),
    pytest.param(URL, body(enabled=1), "enabled", id="enabled-int"),
    pytest.param(URL, body(enabled=True, colour="red"), "colour", id="extra-field"),
    pytest.param(URL, body(enabled=True, expected_version=-1), "expected_version", id="negative-version"),
    pytest.param(URL, body(enabled=True, expected_version="1"), "expected_version", id="version-string"),
    pytest.param(URL, body(enabled=True, actor="ops"), "actor", id="actor-from-body"),
    pytest.param(URL, body(), None, id="nothing-to-set"),
    pytest.param(URL, {"enabled": True, "reason": "a\u0000b"}, "reason", id="nul-in-reason"),
    pytest.param(URL, body(enabled=True, expected_version=2**31), "expected_version", id="huge-version"),
    pytest.param("/v1/flags", body(key="a.b", group="g", description="\u0000"), "description", id="nul-in-description"),
    pytest.param(URL, [1, 2], None, id="not-an-object"),
    pytest.param(f"/v1/flags/{KEY}/system", body(enabled=None), "enabled", id="system-clear"),
    pytest.param("/v1/flags", body(key="Bad Key", group="g"), "key", id="bad-key-in-body"),
    pytest.param("/v1/flags", body(key="", group="g"), "key", id="empty-key-in-body"),
    pytest.param("/v1/flags", body(key="a/b", group="g"), "key", id="slash-in-key"),
    pytest.param("/v1/flags", body(key="Feature.A\n", group="g"), "key", id="newline-after-key"),
    pytest.param("/v1/flags", body(key="caf\u00e9", group="g"), "key", id="non-ascii-key"),
    pytest.param("/v1/flags", body(key="k" * 256, group="g"), "key", id="key-of-256"),
    pytest.param("/v1/flags", body(key="..", group="g"), "key", id="dots-alone"),
    pytest.param("/v1/flags", body(key="a.b"), "group", id="missing-group"),
    pytest.param("/v1/flags", body(key="a.b", group="g", kind="forever"), "kind", id="unknown-kind"),
    pytest.param(f"/v1/flags/{KEY}", body(kind=None), "kind", id="null-kind"),
    pytest.param(f"/v1/flags/{KEY}", body(), None, id="nothing-to-update"),
]


@pytest.mark.parametrize(("url", "payload", "field"), INVALID_BODIES)
async def test_invalid_bodies_are_422_naming_the_field(
    defined: httpx.AsyncClient, url: str, payload: Any, field: str | None
) -> None:
    method = "PATCH" if url == f"/v1/flags/{KEY}" else "POST" if url == "/v1/flags" else "PUT"
    response = await defined.request(method, url, json=payload)
    error = assert_error(response, 422, "invalid_request", field)
    if field is not None:
        assert field in error["detail"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"1e999", b"12345678901234567890123"])
async def test_odd_json_numbers_are_422(defined: httpx.AsyncClient, literal: bytes) -> None:
    raw = b'{"reason": "r", "rollout_percentage": ' + literal + b"}"
    response = await defined.put(URL, content=raw, headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_request", "rollout_percentage")


async def test_an_empty_body_is_422(defined: httpx.AsyncClient) -> None:
    response = await defined.put(URL, content=b"", headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_request")


INVALID_PATHS = [
    pytest.param("PUT", f"/v1/orgs/{ORG}/flags/Bad%20Key", "flag_key", id="bad-key"),
    pytest.param("PUT", f"/v1/orgs/{ORG}/flags/{'a' * 256}", "flag_key", id="long-key"),
    pytest.param("PUT", "/v1/flags/caf%C3%A9/system", "flag_key", id="bad-key-system"),
    pytest.param("PUT", f"/v1/orgs/{ORG}/platforms/myspace/flags/{KEY}", "platform", id="unknown-platform"),
    pytest.param("DELETE", f"/v1/orgs/{ORG}/platforms/META/flags/{KEY}", "platform", id="platform-case"),
    pytest.param("PUT", f"/v1/orgs/-acme/flags/{KEY}", "org_id", id="bad-org"),
    pytest.param("PUT", f"/v1/orgs/{'o' * 65}/flags/{KEY}", "org_id", id="long-org"),
    pytest.param("PUT", f"/v1/orgs/{ORG}/users/%20bob/flags/{KEY}", "user_id", id="bad-user"),
    pytest.param("POST", "/v1/flags/No%09pe/archive", "flag_key", id="bad-key-archive"),
]


@pytest.mark.parametrize(("method", "url", "field"), INVALID_PATHS)
async def test_invalid_path_parameters_are_422(defined: httpx.AsyncClient, method: str, url: str, field: str) -> None:
    response = await defined.request(method, url, json=body(enabled=True) if method == "PUT" else body())
    error = assert_error(response, 422, "invalid_request", field)
    if field == "platform":
        assert error["allowed"] == [p.value for p in Platform]
        assert "tiktok" in error["detail"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after": 2**63}, "after"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"after": -1}, "after"),
        ({"org": "bad org"}, "org"),
        ({"flag": "Bad flag"}, "flag"),
        ({"limit": "many"}, "limit"),
    ],
)
async def test_invalid_event_queries_are_422(client: httpx.AsyncClient, params: dict[str, Any], field: str) -> None:
    assert_error(await client.get("/v1/events", params=params), 422, "invalid_request", field)


async def test_unknown_flag_is_404(client: httpx.AsyncClient) -> None:
    for method, url, payload in [
        ("PUT", URL, body(enabled=True)),
        ("PUT", f"/v1/flags/{KEY}/system", body(enabled=True)),
        ("DELETE", URL, body()),
        ("PATCH", f"/v1/flags/{KEY}", body(description="x")),
        ("POST", f"/v1/flags/{KEY}/archive", body()),
    ]:
        error = assert_error(await client.request(method, url, json=payload), 404, "unknown_flag", "flag_key")
        assert error["flag_key"] == KEY


async def test_an_archived_flag_takes_no_settings(defined: httpx.AsyncClient) -> None:
    await defined.post(f"/v1/flags/{KEY}/archive", json=body())
    error = assert_error(await defined.put(URL, json=body(enabled=True)), 404, "unknown_flag", "flag_key")
    assert "archived" in error["detail"]
    assert_error(await defined.patch(f"/v1/flags/{KEY}", json=body(owner="x")), 409, "invalid_transition")


async def test_defining_twice_is_409_invalid_transition(defined: httpx.AsyncClient) -> None:
    assert_error(await defined.post("/v1/flags", json=body(key=KEY, group="ai")), 409, "invalid_transition")


async def test_a_stale_expected_version_is_409_with_the_current_version(defined: httpx.AsyncClient) -> None:
    assert (await defined.put(URL, json=body(enabled=True, expected_version=0))).status_code == 201
    error = assert_error(
        await defined.put(URL, json=body(enabled=False, expected_version=0)),
        409,
        "version_conflict",
        "expected_version",
    )
    assert (error["stream"], error["current_version"], error["expected_version"]) == (f"org/{ORG}/flag/{KEY}", 1, 0)
    # even a request that would change nothing fails its precondition
    stale_noop = await defined.put(URL, json=body(enabled=True, expected_version=7))
    assert assert_error(stale_noop, 409, "version_conflict", "expected_version")["current_version"] == 1


async def test_unknown_routes_and_methods_keep_the_error_shape(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/nothing"), 404, "not_found")
    assert_error(await client.get(f"/v1/flags/{KEY}/system"), 405, "method_not_allowed")


async def test_an_unexpected_failure_is_a_generic_500_and_is_logged(
    store: InMemoryEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(InMemoryEventStore):
        async def stream_head(self, stream: str) -> Any:
            raise RuntimeError("secret internals at /srv/db")

    keys = MemoryKeys()
    app = create_app(SETTINGS, store=Broken(), auth=memory_gate(keys))
    headers = bearer(keys.issue(Role.SYSTEM_ADMIN))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://command", headers=headers
    ) as client:
        with caplog.at_level(logging.ERROR):
            response = await client.put(URL, json=body(enabled=True))
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "secret internals" in caplog.text and "Traceback" in caplog.text
    assert error == {"error": "internal_error", "detail": INTERNAL_ERROR_DETAIL, "field": None}


async def test_a_database_outage_is_503_not_500(defined: httpx.AsyncClient, store: InMemoryEventStore) -> None:
    store.available = False
    refused = await defined.put(URL, json=body(enabled=True))
    assert_error(refused, 503, "store_unavailable")
    assert refused.headers["retry-after"] == "1"
    assert (await defined.get("/readyz")).status_code == 503
    assert (await defined.get("/healthz")).status_code == 200
    store.available = True
    ready = await defined.get("/readyz")
    assert ready.status_code == 200 and ready.json()["postgres"] == "ok"


async def test_docs_are_served(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/orgs/{org_id}/platforms/{platform}/flags/{flag_key}" in spec["paths"]
    setting = spec["components"]["schemas"]["SettingRequest"]
    assert setting["additionalProperties"] is False
    assert "description" in setting["properties"]["rollout_percentage"]
    assert (await client.get("/docs")).status_code == 200


# --- no input makes a 500 -----------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "reason",
        "enabled",
        "rollout_percentage",
        "expected_version",
        "actor",
        "key",
        "group",
        "kind",
        "description",
        "owner",
        "type",
        "variants",
        "default_variant",
        "off_variant",
        "variant",
        "split",
        "x",
    ]
)
bodies = st.dictionaries(field_names, json_values, max_size=6) | json_values
routes = st.sampled_from(
    [
        ("PUT", URL),
        ("PUT", f"/v1/flags/{KEY}/system"),
        ("DELETE", URL),
        ("POST", "/v1/flags"),
        ("PATCH", f"/v1/flags/{KEY}"),
        ("POST", f"/v1/flags/{KEY}/archive"),
        ("PUT", f"/v1/orgs/{ORG}/users/u-1/flags/{KEY}"),
    ]
)


class SyncClient:
    """Drive the ASGI app from a plain (hypothesis) test on a private event loop."""

    def __init__(self, store: InMemoryEventStore) -> None:
        self._runner = asyncio.Runner()
        keys = MemoryKeys()
        app = create_app(SETTINGS, store=store, auth=memory_gate(keys))
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://command",
            headers=bearer(keys.issue(Role.SYSTEM_ADMIN)),
        )

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._runner.run(self._client.request(method, url, **kwargs))

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()


@pytest.fixture
def sync_client() -> Iterator[SyncClient]:
    client = SyncClient(InMemoryEventStore(reader=Tenancy.CROSS_TENANT))
    assert client.request("POST", "/v1/flags", json=body(key=KEY, group="ai")).status_code == 201
    yield client
    client.close()


def test_no_json_body_yields_a_500(sync_client: SyncClient) -> None:
    @hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(route=routes, payload=bodies)
    def check(route: tuple[str, str], payload: Any) -> None:
        response = sync_client.request(route[0], route[1], json=payload)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert {"error", "detail", "field"} <= set(response.json())

    check()


def test_no_byte_string_yields_a_500(sync_client: SyncClient) -> None:
    @hsettings(max_examples=200, deadline=None)
    @given(raw=st.binary(max_size=200), path=st.text(alphabet="abc-._/%@", max_size=30))
    def check(raw: bytes, path: str) -> None:
        response = sync_client.request(
            "PUT", f"/v1/orgs/{ORG}/flags/{path or 'x'}", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert {"error", "detail", "field"} <= set(response.json())

    check()


async def test_a_key_store_outage_is_503_with_retry_after_not_401_or_500() -> None:
    keys = MemoryKeys()
    app = create_app(SETTINGS, store=InMemoryEventStore(reader=Tenancy.CROSS_TENANT), auth=memory_gate(keys))
    headers = bearer(keys.issue(Role.SYSTEM_ADMIN))
    keys.down = True
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://command", headers=headers
    ) as client:
        refused = await client.put(URL, json=body(enabled=True))
        error = assert_error(refused, 503, "store_unavailable")
        assert "key store" in error["detail"] and refused.headers["retry-after"] == "1"
        keys.down = False
        assert (await client.put(URL, json=body(enabled=True))).status_code < 500
