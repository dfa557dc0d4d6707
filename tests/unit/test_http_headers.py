"""SecurityHeaders as an ASGI app: the headers on every answer, the app's own values kept, the docs CSP."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.http import API_CSP, FASTAPI_CDN, SELF_HOSTED, DocsAssets, SecurityHeaders

EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


def raw_app(
    headers: Sequence[tuple[bytes, bytes]] = ((b"content-type", b"application/json"),),
    chunks: Sequence[bytes] = (b"{}",),
    status: int = 200,
) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    return app


async def get(app: ASGIApp, path: str = "/v1/flags", **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return await client.get(path, **kwargs)  # type: ignore[arg-type]


def assert_once_each(response: httpx.Response) -> None:
    names = [name.lower() for name, _ in response.headers.raw]
    assert len(names) == len(set(names)), names


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        assert name not in parsed, f"{name} twice in {policy}"
        parsed[name] = values
    return parsed


# --- API responses ------------------------------------------------------------------


async def test_every_header_is_added_once_to_a_json_answer() -> None:
    response = await get(SecurityHeaders(raw_app()))
    for name, value in EXPECTED.items():
        assert response.headers.get_list(name) == [value], name
    assert response.headers["content-type"] == "application/json"
    assert response.content == b"{}"
    assert_once_each(response)


@pytest.mark.parametrize("status", [201, 204, 304, 401, 404, 429, 500, 503])
async def test_every_status_gets_the_headers(status: int) -> None:
    chunks = (b"",) if status in (204, 304) else (b"{}",)
    response = await get(SecurityHeaders(raw_app(status=status, chunks=chunks)))
    assert response.status_code == status
    for name, value in EXPECTED.items():
        assert response.headers[name] == value


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("cache-control", "private, max-age=5"),
        ("cache-control", "no-cache"),
        ("content-security-policy", "default-src 'self'"),
        ("x-frame-options", "SAMEORIGIN"),
        ("referrer-policy", "strict-origin"),
        ("cross-origin-resource-policy", "cross-origin"),
    ],
)
async def test_a_header_the_app_set_is_kept_and_not_duplicated(name: str, value: str) -> None:
    app = raw_app(headers=[(b"content-type", b"application/json"), (name.encode(), value.encode())])
    response = await get(SecurityHeaders(app))
    assert response.headers.get_list(name) == [value]
    for other, expected in EXPECTED.items():
        if other != name:
            assert response.headers.get_list(other) == [expected]
    assert_once_each(response)


async def test_other_app_headers_pass_through_in_order() -> None:
    app = raw_app(headers=[(b"content-type", b"application/json"), (b"etag", b'"v3"'), (b"set-cookie", b"a=1")])
    response = await get(SecurityHeaders(app))
    names = [n.lower() for n, _ in response.headers.raw]
    assert names[:3] == [b"content-type", b"etag", b"set-cookie"]
    assert response.headers["etag"] == '"v3"'


async def test_a_streamed_body_is_not_buffered_or_changed() -> None:
    seen: list[Message] = []

    async def recording_send(message: Message) -> None:
        seen.append(message)

    app = SecurityHeaders(raw_app(chunks=(b"[1,", b"2,", b"3]")))
    scope = {"type": "http", "method": "GET", "path": "/v1/flags", "root_path": "", "headers": []}
    await app(scope, _no_body, recording_send)
    assert [m["type"] for m in seen] == ["http.response.start", *["http.response.body"] * 3]
    assert b"".join(m["body"] for m in seen[1:]) == b"[1,2,3]"


async def test_the_apps_header_list_is_not_mutated() -> None:
    shared = [(b"content-type", b"application/json")]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": shared})
        await send({"type": "http.response.body", "body": b"{}"})

    for _ in range(3):
        response = await get(SecurityHeaders(app))
        assert_once_each(response)
    assert shared == [(b"content-type", b"application/json")]


async def test_a_fastapi_error_answer_gets_the_headers() -> None:
    api = FastAPI()
    response = await get(SecurityHeaders(api), "/no/such/route")
    assert response.status_code == 404
    for name, value in EXPECTED.items():
        assert response.headers[name] == value


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
async def test_other_scopes_pass_through_untouched(kind: str) -> None:
    seen: list[tuple[Scope, Receive, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    scope: Scope = {"type": kind}
    await SecurityHeaders(app)(scope, _no_body, _discard)
    assert seen == [(scope, _no_body, _discard)]


async def test_a_head_answer_gets_the_headers() -> None:
    app = SecurityHeaders(raw_app(chunks=(b"",)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.head("/v1/flags")
    assert response.headers["content-security-policy"] == API_CSP


# --- the docs pages -------------------------------------------------------------------


class Page(HTMLParser):
    """The external assets of an HTML page and the text of its inline scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.images: list[str] = []
        self.inline: list[str] = []
        self._in_inline = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            if a.get("src"):
                self.scripts.append(a["src"] or "")
            else:
                self._in_inline = True
                self.inline.append("")
        elif tag == "link" and a.get("href"):
            rel = (a.get("rel") or "").split()
            (self.styles if "stylesheet" in rel else self.images).append(a["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline = False

    def handle_data(self, data: str) -> None:
        if self._in_inline:
            self.inline[-1] += data


def allows(sources: list[str], url: str) -> bool:
    """CSP source matching, enough for the URLs of a docs page (https URLs and 'self')."""
    if url.startswith("/") and "'self'" in sources:
        return True
    u = urlsplit(url)
    for source in sources:
        s = urlsplit(source)
        if not s.scheme or not s.netloc or (s.scheme, s.netloc) != (u.scheme, u.netloc):
            continue
        if not s.path or s.path == u.path or (s.path.endswith("/") and u.path.startswith(s.path)):
            return True
    return False


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_the_docs_page_may_load_exactly_what_it_uses(path: str) -> None:
    api = FastAPI(title="flagstream test")
    plain = await get(api, path)
    response = await get(SecurityHeaders(api), path)
    assert response.status_code == 200
    assert response.content == plain.content
    assert response.headers["content-length"] == str(len(plain.content))
    policy = directives(response.headers["content-security-policy"])
    page = Page()
    page.feed(response.text)
    assert page.scripts or page.inline
    for url in page.scripts:
        assert allows(policy["script-src"], url), url
    for url in page.styles:
        assert allows(policy["style-src"], url), url
    for url in page.images:
        assert allows(policy["img-src"], url), url
    assert sorted(s for s in policy["script-src"] if s.startswith("'sha256-")) == sorted(
        sha256(text) for text in page.inline
    )
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert "*" not in " ".join(policy["script-src"])
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["base-uri"] == ["'none'"]
    for name, value in EXPECTED.items():
        if name != "content-security-policy":
            assert response.headers.get_list(name) == [value]
    assert_once_each(response)


async def test_the_swagger_page_has_one_inline_script_and_it_is_hashed() -> None:
    response = await get(SecurityHeaders(FastAPI()), "/docs")
    script_src = directives(response.headers["content-security-policy"])["script-src"]
    assert script_src[:2] == list(FASTAPI_CDN.scripts)
    assert len([s for s in script_src if s.startswith("'sha256-")]) == 1


async def test_the_openapi_document_gets_the_api_policy() -> None:
    response = await get(SecurityHeaders(FastAPI()), "/openapi.json")
    assert response.headers["content-security-policy"] == API_CSP


async def test_the_hash_follows_the_page_as_served_under_a_root_path() -> None:
    api = FastAPI()
    wrapped = SecurityHeaders(api)
    plain = directives((await get(wrapped, "/docs")).headers["content-security-policy"])["script-src"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=wrapped, root_path="/command"), base_url="http://t"
    ) as client:
        response = await client.get("/command/docs")
    assert response.status_code == 200
    assert "/command/openapi.json" in response.text
    mounted = directives(response.headers["content-security-policy"])["script-src"]
    page = Page()
    page.feed(response.text)
    assert sha256(page.inline[0]) in mounted
    assert mounted != plain


async def test_docs_paths_are_configurable() -> None:
    api = FastAPI()
    response = await get(SecurityHeaders(api, docs_paths=()), "/docs")
    assert response.headers["content-security-policy"] == API_CSP
    response = await get(SecurityHeaders(raw_app(headers=[(b"content-type", b"text/html")]), docs_paths=["/x"]), "/x")
    assert response.headers["content-security-policy"].startswith("default-src 'none'; script-src ")


async def test_self_hosted_assets_allow_only_self() -> None:
    response = await get(SecurityHeaders(FastAPI(), docs_assets=SELF_HOSTED), "/docs")
    policy = directives(response.headers["content-security-policy"])
    assert policy["script-src"][0] == "'self'"
    assert all(s == "'self'" or s.startswith("'sha256-") for s in policy["script-src"])
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["font-src"] == ["'self'"]
    assert "cdn.jsdelivr.net" not in response.headers["content-security-policy"]


async def test_a_chunked_docs_page_is_hashed_whole_and_sent_intact() -> None:
    html = b"<html><script src='/a.js'></script><script>var a = 1;\n</script><script type=module>b()</script>"
    app = raw_app(headers=[(b"content-type", b"text/html; charset=utf-8")], chunks=(html[:20], html[20:50], html[50:]))
    response = await get(SecurityHeaders(app), "/docs")
    assert response.content == html
    script_src = directives(response.headers["content-security-policy"])["script-src"]
    hashes = [s for s in script_src if s.startswith("'sha256-")]
    assert hashes == [sha256("var a = 1;\n"), sha256("b()")]


async def test_inline_script_newlines_are_hashed_as_the_browser_parses_them() -> None:
    html = b"<script>\r\nlet x = 1;\r\n</script>"
    app = raw_app(headers=[(b"content-type", b"text/html")], chunks=(html,))
    response = await get(SecurityHeaders(app), "/docs")
    assert sha256("\nlet x = 1;\n") in response.headers["content-security-policy"]


async def test_a_docs_page_without_scripts_allows_no_inline_script() -> None:
    app = raw_app(headers=[(b"content-type", b"text/html")], chunks=(b"<p>docs</p>",))
    empty = DocsAssets(scripts=(), styles=(), images=())
    response = await get(SecurityHeaders(app, docs_assets=empty), "/docs")
    policy = directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'none'"]
    assert policy["img-src"] == ["'none'"]
    assert policy["font-src"] == ["'none'"]
    assert policy["style-src"] == ["'unsafe-inline'"]


async def test_a_non_html_answer_on_a_docs_path_gets_the_api_policy_unbuffered() -> None:
    seen: list[Message] = []

    async def recording_send(message: Message) -> None:
        seen.append(message)

    app = SecurityHeaders(raw_app(chunks=(b"{", b"}"), status=404))
    scope = {"type": "http", "method": "GET", "path": "/docs", "root_path": "", "headers": []}
    await app(scope, _no_body, recording_send)
    assert len(seen) == 3
    assert (b"content-security-policy", API_CSP.encode()) in seen[0]["headers"]


async def test_the_docs_page_keeps_a_policy_the_app_set() -> None:
    headers = [(b"content-type", b"text/html"), (b"content-security-policy", b"default-src 'self'")]
    response = await get(SecurityHeaders(raw_app(headers=headers, chunks=(b"<script>x</script>",))), "/docs")
    assert response.headers.get_list("content-security-policy") == ["default-src 'self'"]
    assert_once_each(response)


async def test_a_response_extension_after_a_held_start_releases_it() -> None:
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.pathsend", "path": "/srv/docs.html"})

    async def recording_send(message: Message) -> None:
        seen.append(message)

    scope = {"type": "http", "method": "GET", "path": "/docs", "root_path": "", "headers": []}
    await SecurityHeaders(app)(scope, _no_body, recording_send)
    assert [m["type"] for m in seen] == ["http.response.start", "http.response.pathsend"]
    assert dict(seen[0]["headers"])[b"content-security-policy"].startswith(b"default-src 'none'; script-src")


@pytest.mark.parametrize("source", ["", "https://a.example b", "https://a.example;", "x,y", "https://é.example"])
def test_docs_assets_refuse_what_is_not_a_source_expression(source: str) -> None:
    with pytest.raises(ValueError, match="CSP source"):
        DocsAssets(scripts=(source,), styles=(), images=())


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Message) -> None:
    return None


async def test_a_root_path_is_stripped_only_at_a_segment_boundary() -> None:
    app = SecurityHeaders(raw_app(headers=[(b"content-type", b"text/html")], chunks=(b"<p></p>",)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, root_path="/command"), base_url="http://t"
    ) as client:
        assert (await client.get("/commandx/docs")).headers["content-security-policy"] == API_CSP
        assert (await client.get("/command/docs")).headers["content-security-policy"] != API_CSP
