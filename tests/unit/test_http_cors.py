"""CORS as an ASGI app: closed by default, exact origins only, preflights, no credentials."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.http import CORS, normalise_origin

ADMIN = "https://admin.flagstream.example"


def api(calls: list[str] | None = None, headers: list[tuple[bytes, bytes]] | None = None) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if calls is not None:
            calls.append(f"{scope['method']} {scope['path']}")
        raw = [(b"content-type", b"application/json"), (b"etag", b'"7"'), *(headers or [])]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def request(app: ASGIApp, method: str = "GET", path: str = "/v1/flags", **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return await client.request(method, path, headers={k.replace("_", "-"): v for k, v in headers.items()})


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


async def preflight(
    app: ASGIApp, origin: str = ADMIN, method: str = "PUT", headers: str | None = None
) -> httpx.Response:
    extra = {"Access_Control_Request_Method": method}
    if headers is not None:
        extra["Access_Control_Request_Headers"] = headers
    return await request(app, "OPTIONS", "/v1/orgs/acme/flags/a.b", Origin=origin, **extra)


# --- closed by default -------------------------------------------------------------------


async def test_without_origins_the_app_is_untouched() -> None:
    calls: list[str] = []
    response = await request(CORS(api(calls)), Origin=ADMIN)
    assert cors_headers(response) == {}
    assert "vary" not in response.headers
    assert calls == ["GET /v1/flags"]


async def test_without_origins_a_preflight_is_the_apps_to_answer() -> None:
    app = FastAPI()

    @app.put("/v1/orgs/{org}/flags/{key}")
    async def put(org: str, key: str) -> None:  # pragma: no cover - never called
        return None

    response = await preflight(CORS(app))
    assert response.status_code == 405
    assert cors_headers(response) == {}


# --- allowed and refused origins ---------------------------------------------------------


async def test_an_allowed_origin_gets_exactly_its_origin() -> None:
    response = await request(CORS(api(), origins=[ADMIN, "http://localhost:5173"]), Origin=ADMIN)
    assert response.status_code == 200
    assert response.headers.get_list("access-control-allow-origin") == [ADMIN]
    assert response.headers["access-control-expose-headers"] == "ETag"
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["vary"] == "Origin"
    assert response.headers["etag"] == '"7"'


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://admin.flagstream.example",
        "https://admin.flagstream.example:8443",
        "https://admin.flagstream.example.evil.example",
        "https://xadmin.flagstream.example",
        "null",
        "*",
        ADMIN + "/",
        ADMIN.upper(),
    ],
)
async def test_a_refused_origin_gets_no_cors_header_but_reaches_the_app(origin: str) -> None:
    calls: list[str] = []
    response = await request(CORS(api(calls), origins=[ADMIN]), Origin=origin)
    assert response.status_code == 200
    assert cors_headers(response) == {}
    assert response.headers["vary"] == "Origin"
    assert calls == ["GET /v1/flags"]


async def test_no_origin_header_gets_vary_only() -> None:
    response = await request(CORS(api(), origins=[ADMIN]))
    assert cors_headers(response) == {}
    assert response.headers["vary"] == "Origin"


@pytest.mark.parametrize(
    ("vary", "expected"),
    [(b"Accept-Encoding", "Accept-Encoding, Origin"), (b"*", "*"), (b"origin", "origin"), (b"Accept, Origin", None)],
)
async def test_origin_joins_the_apps_vary_once(vary: bytes, expected: str | None) -> None:
    response = await request(CORS(api(headers=[(b"vary", vary)]), origins=[ADMIN]), Origin=ADMIN)
    assert response.headers.get_list("vary") == [expected or vary.decode()]


async def test_a_configured_origin_is_matched_as_browsers_send_it() -> None:
    app = CORS(api(), origins=["HTTPS://Admin.Flagstream.Example:443"])
    response = await request(app, Origin=ADMIN)
    assert response.headers["access-control-allow-origin"] == ADMIN


# --- preflights -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
async def test_a_preflight_for_an_allowed_method_is_answered_204(method: str) -> None:
    calls: list[str] = []
    response = await preflight(CORS(api(calls), origins=[ADMIN]), method=method)
    assert response.status_code == 204
    assert response.content == b""
    assert cors_headers(response) == {
        "access-control-allow-origin": ADMIN,
        "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE",
        "access-control-allow-headers": "Authorization, Content-Type, If-None-Match",
        "access-control-max-age": "600",
    }
    assert "Origin" in response.headers["vary"]
    assert calls == []


@pytest.mark.parametrize(
    "requested",
    ["authorization", "Authorization, Content-Type", "content-type,if-none-match", " If-None-Match ,", ""],
)
async def test_a_preflight_for_allowed_headers_passes(requested: str) -> None:
    response = await preflight(CORS(api(), origins=[ADMIN]), headers=requested)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ADMIN


@pytest.mark.parametrize(
    ("origin", "method", "headers", "why"),
    [
        ("https://evil.example", "PUT", None, "origin not allowed"),
        (ADMIN, "TRACE", None, "method TRACE not allowed"),
        (ADMIN, "put", None, "method put not allowed"),
        (ADMIN, "PUT", "authorization, x-api-key", "header x-api-key not allowed"),
        (ADMIN, "PUT", "cookie", "header cookie not allowed"),
    ],
)
async def test_a_refused_preflight_is_403_without_cors_headers(
    origin: str, method: str, headers: str | None, why: str
) -> None:
    calls: list[str] = []
    response = await preflight(CORS(api(calls), origins=[ADMIN]), origin=origin, method=method, headers=headers)
    assert response.status_code == 403
    assert cors_headers(response) == {}
    assert response.json() == {"error": "cors_refused", "detail": f"cross-origin request refused: {why}", "field": None}
    assert calls == []


async def test_an_options_request_without_a_requested_method_is_the_apps() -> None:
    calls: list[str] = []
    response = await request(CORS(api(calls), origins=[ADMIN]), "OPTIONS", Origin=ADMIN)
    assert calls == ["OPTIONS /v1/flags"]
    assert response.headers["access-control-allow-origin"] == ADMIN


async def test_max_age_is_configurable() -> None:
    response = await preflight(CORS(api(), origins=[ADMIN], max_age=60))
    assert response.headers["access-control-max-age"] == "60"
    with pytest.raises(ValueError, match="max_age"):
        CORS(api(), origins=[ADMIN], max_age=-1)


async def test_through_a_fastapi_app() -> None:
    app = FastAPI()

    @app.put("/v1/orgs/{org}/flags/{key}")
    async def put(org: str, key: str) -> dict[str, str]:
        return {"org": org, "key": key}

    wrapped = CORS(app, origins=[ADMIN])
    assert (await preflight(wrapped)).status_code == 204
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://t") as client:
        response = await client.put("/v1/orgs/acme/flags/a.b", headers={"Origin": ADMIN}, json={})
    assert response.json() == {"org": "acme", "key": "a.b"}
    assert response.headers["access-control-allow-origin"] == ADMIN


async def test_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:  # pragma: no cover - never called
        return {}

    async def send(message: Message) -> None:  # pragma: no cover - never called
        return None

    await CORS(app, origins=[ADMIN])({"type": "websocket", "headers": []}, receive, send)
    await CORS(app, origins=[ADMIN])({"type": "lifespan"}, receive, send)
    assert seen == ["websocket", "lifespan"]


# --- configured origins -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("https://admin.example", "https://admin.example"),
        ("  https://Admin.Example  ", "https://admin.example"),
        ("https://admin.example:443", "https://admin.example"),
        ("http://admin.example:80", "http://admin.example"),
        ("http://localhost:5173", "http://localhost:5173"),
        ("https://admin.example:8443", "https://admin.example:8443"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
    ],
)
def test_origins_are_normalised(given: str, origin: str) -> None:
    assert normalise_origin(given) == origin


@pytest.mark.parametrize(
    "given",
    [
        "*",
        "null",
        "",
        "admin.example",
        "https://",
        "https://admin.example/",
        "https://admin.example/app",
        "https://admin.example?x=1",
        "https://admin.example?",
        "https://admin.example#top",
        "https://*.example",
        "https://user:pw@admin.example",
        "ftp://admin.example",
        "file:///etc",
        "https://admin.example:99999",
        "https://admin.example:port",
    ],
)
def test_what_is_not_an_exact_origin_is_refused(given: str) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        normalise_origin(given)
    with pytest.raises(ValueError, match="not an origin"):
        CORS(api(), origins=[ADMIN, given])


def test_the_origins_are_shown() -> None:
    assert CORS(api(), origins=["https://A.example", "https://A.example:443"]).origins == {"https://a.example"}
