"""Security headers on every HTTP answer, for APIs that only ever return JSON.

A JSON API needs none of what a browser could do with its answers: no
sniffing into HTML, no framing, no referrer, no sharing of the window or the
resource with another origin, no storing in caches, and a Content-Security-
Policy that allows nothing. So every response gets exactly that, except where
the app chose a value itself (its header wins; nothing is duplicated).

The one HTML page is the interactive docs (`/docs`, `/redoc`), which need
scripts, styles and images. They get a policy that allows only the asset
sources named in `DocsAssets` (FastAPI's CDN by default; better, self-hosted)
and, instead of `'unsafe-inline'` for scripts, the SHA-256 of each inline
script of the page as served: the page is buffered to hash it, which only
ever happens on the docs paths.

The hot path costs a closure and one list of headers per response: the
headers are precomputed bytes, and the app's headers are scanned once.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["API_CSP", "FASTAPI_CDN", "SELF_HOSTED", "DocsAssets", "SecurityHeaders"]

RawHeaders = list[tuple[bytes, bytes]]

API_CSP = "default-src 'none'; frame-ancestors 'none'"

_COMMON: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cache-control", "no-store"),
)
_CSP = b"content-security-policy"
_UNSAFE_INLINE = "'unsafe-inline'"

# An inline script is one without a `src` attribute; the browser hashes its text as parsed.
_SCRIPT = re.compile(rb"<script(\s[^>]*)?>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_SRC = re.compile(rb"\ssrc\s*=", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class DocsAssets:
    """CSP source expressions the docs pages may load from, one tuple per kind of asset."""

    scripts: tuple[str, ...]
    styles: tuple[str, ...]
    images: tuple[str, ...]
    fonts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for source in (*self.scripts, *self.styles, *self.images, *self.fonts):
            if not source or any(c.isspace() or c in ";," for c in source) or not source.isascii():
                raise ValueError(f"not a CSP source expression: {source!r}")


# What FastAPI's `get_swagger_ui_html` and `get_redoc_html` load by default: exact files, not whole hosts.
FASTAPI_CDN = DocsAssets(
    scripts=(
        "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js",
        "https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js",
    ),
    styles=("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css", "https://fonts.googleapis.com/css"),
    images=("data:", "https://fastapi.tiangolo.com/img/favicon.png"),
    fonts=("https://fonts.gstatic.com",),
)

# Assets served by the app itself: `FastAPI(docs_url=None, redoc_url=None)` plus routes built with
# `get_swagger_ui_html(...)` / `get_redoc_html(..., with_google_fonts=False)` whose `*_url`s all point at
# the app's own `/static/…` files.
SELF_HOSTED = DocsAssets(scripts=("'self'",), styles=("'self'",), images=("'self'", "data:"), fonts=("'self'",))


class SecurityHeaders:
    """Add the security headers to every HTTP response, and a docs-only CSP on `docs_paths`."""

    __slots__ = ("_api", "_common", "_docs_csp", "_docs_paths", "_names", "app")

    def __init__(
        self,
        app: ASGIApp,
        *,
        docs_paths: Iterable[str] = ("/docs", "/redoc"),
        docs_assets: DocsAssets = FASTAPI_CDN,
    ) -> None:
        self.app = app
        self._docs_paths = frozenset(docs_paths)
        self._common: RawHeaders = [(n.encode(), v.encode()) for n, v in _COMMON]
        self._api: RawHeaders = [*self._common, (_CSP, API_CSP.encode())]
        self._names = frozenset(n for n, _ in self._api)
        self._docs_csp = _docs_policy(docs_assets)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._docs_paths and _route_path(scope) in self._docs_paths:
            await self._docs_page(scope, receive, send)
            return
        added, names = self._api, self._names

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _merged(message.get("headers", ()), added, names)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs_page(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hold the start of an HTML answer until its body is complete, to hash the inline scripts."""
        held: Message | None = None
        chunks: list[bytes] = []

        async def release(body: bytes) -> None:
            nonlocal held
            assert held is not None
            policy = self._policy(body)
            held["headers"] = _merged(held.get("headers", ()), [*self._common, (_CSP, policy)], self._names)
            start, held = held, None
            await send(start)

        async def buffering_send(message: Message) -> None:
            nonlocal held
            kind = message["type"]
            if kind == "http.response.start":
                raw = message.get("headers", ())
                if _is_html(raw):
                    held = message
                    return
                message["headers"] = _merged(raw, self._api, self._names)
            elif held is not None:
                if kind == "http.response.body":
                    chunks.append(message.get("body", b""))
                    if message.get("more_body", False):
                        return
                    body = b"".join(chunks)
                    await release(body)
                    message = {"type": "http.response.body", "body": body}
                else:  # a response extension (e.g. pathsend): no body to hash
                    await release(b"")
            await send(message)

        await self.app(scope, receive, buffering_send)

    def _policy(self, page: bytes) -> bytes:
        scripts, rest = self._docs_csp
        return f"default-src 'none'; script-src {_sources(scripts, *_inline_script_hashes(page))}{rest}".encode()


def _sources(values: Sequence[str], *more: str) -> str:
    return " ".join((*values, *more)) or "'none'"


def _docs_policy(assets: DocsAssets) -> tuple[tuple[str, ...], str]:
    """The docs CSP: its script sources (the page's hashes join them), and every other directive."""
    # Swagger UI and ReDoc set inline styles at run time (ReDoc through styled-components),
    # so styles need 'unsafe-inline'; ReDoc's search runs in a worker built from a blob.
    rest = (
        f"; style-src {_sources(assets.styles, _UNSAFE_INLINE)}"
        f"; img-src {_sources(assets.images)}"
        f"; font-src {_sources(assets.fonts)}"
        "; connect-src 'self'; worker-src blob:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return assets.scripts, rest


def _inline_script_hashes(page: bytes) -> list[str]:
    hashes: list[str] = []
    for match in _SCRIPT.finditer(page):
        attributes, text = match.group(1), match.group(2)
        if attributes and _SRC.search(attributes):
            continue
        text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # the HTML parser normalises newlines
        hashes.append("'sha256-" + base64.b64encode(hashlib.sha256(text).digest()).decode() + "'")
    return hashes


def _merged(raw: Iterable[tuple[bytes, bytes]], added: RawHeaders, names: frozenset[bytes]) -> RawHeaders:
    """The app's headers plus ours, leaving out each of ours the app set itself (ASGI names are lower-case)."""
    if not isinstance(raw, list | tuple):
        raw = list(raw)
    for name, _ in raw:
        if name in names:
            present = {n for n, _ in raw}
            return [*raw, *(h for h in added if h[0] not in present)]
    return [*raw, *added]


def _is_html(raw: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in raw:
        if name == b"content-type":
            return value[:9].lower() == b"text/html"
    return False


def _route_path(scope: Scope) -> str:
    """The path as the app routes it: without the `root_path` it is mounted under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path
