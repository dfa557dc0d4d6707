"""CORS for an admin UI: closed unless exact origins are listed, and then only for them.

Why not Starlette's `CORSMiddleware`: it parses the request headers into a
`Headers` object and wraps `send` on every request, sends
`Access-Control-Expose-Headers` to origins it refuses, and lists its allowed
methods and headers in refused preflights. This one does what the product
needs and nothing else:

- no origins configured: the app is called untouched (no header, no cost
  beyond one check);
- an allowed origin gets `Access-Control-Allow-Origin: <that origin>` and
  `Access-Control-Expose-Headers: ETag`; a refused one gets no `Access-Control-*`
  header at all (the request still reaches the app: CORS only decides what a
  browser page may read, authentication decides what may be done);
- a preflight from an allowed origin for an allowed method and headers is
  answered 204 with the allowed lists; any other preflight, 403 in the
  product's error shape, again with no `Access-Control-*` header;
- never `Access-Control-Allow-Credentials`: the API takes bearer keys in
  `Authorization`, which a page sends explicitly, not cookies;
- every response carries `Vary: Origin`, so no cache hands one origin's
  answer to another.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.http.errors import problem

__all__ = ["ALLOWED_HEADERS", "ALLOWED_METHODS", "CORS", "EXPOSED_HEADERS", "normalise_origin"]

ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "If-None-Match")
EXPOSED_HEADERS = ("ETag",)

RawHeaders = list[tuple[bytes, bytes]]

_VARY = b"vary"
_ORIGIN = b"origin"
_REQUEST_METHOD = b"access-control-request-method"
_REQUEST_HEADERS = b"access-control-request-headers"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(origin: str) -> str:
    """An origin as browsers send it (`scheme://host[:port]`, lower case, no default port), or ValueError."""
    text = origin.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not an origin: {origin!r}") from exc
    host = parts.hostname
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not host
        or "*" in text
        or parts.username is not None
        or parts.password is not None
        or parts.path
        or parts.query
        or parts.fragment
        or text.endswith("?")
        or text.endswith("#")
    ):
        raise ValueError(f"not an origin (want scheme://host[:port], nothing after): {origin!r}")
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}:{port}"
    return f"{parts.scheme}://{host}"


class CORS:
    """Cross-origin access for the listed `origins` only; with none, a pass-through."""

    __slots__ = ("_allowed_headers", "_methods", "_origins", "_preflight", "app")

    def __init__(self, app: ASGIApp, *, origins: Iterable[str] = (), max_age: int = 600) -> None:
        if max_age < 0:
            raise ValueError("max_age must be >= 0")
        self.app = app
        self._origins = frozenset(normalise_origin(o).encode() for o in origins)
        self._methods = frozenset(m.encode() for m in ALLOWED_METHODS)
        self._allowed_headers = frozenset(h.lower().encode() for h in ALLOWED_HEADERS)
        self._preflight: RawHeaders = [
            (b"access-control-allow-methods", ", ".join(ALLOWED_METHODS).encode()),
            (b"access-control-allow-headers", ", ".join(ALLOWED_HEADERS).encode()),
            (b"access-control-max-age", str(max_age).encode()),
            (_VARY, b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        ]

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(o.decode() for o in self._origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._origins:
            await self.app(scope, receive, send)
            return
        origin = method = requested = None
        for name, value in scope["headers"]:
            if name == _ORIGIN:
                origin = value
            elif name == _REQUEST_METHOD:
                method = value
            elif name == _REQUEST_HEADERS:
                requested = value
        if origin is not None and method is not None and scope["method"] == "OPTIONS":
            await self._preflight_answer(origin, method, requested, scope, receive, send)
            return
        added: RawHeaders = []
        if origin is not None and origin in self._origins:
            added = [(b"access-control-allow-origin", origin), (b"access-control-expose-headers", b"ETag")]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _vary_origin(message.get("headers", ()), added)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight_answer(
        self, origin: bytes, method: bytes, requested: bytes | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        refusal: str | None
        if origin not in self._origins:
            refusal = "origin not allowed"
        elif method not in self._methods:
            refusal = f"method {method.decode('latin-1')} not allowed"
        else:
            refusal = self._refused_header(requested)
        if refusal is not None:
            answer = problem(
                403, "cors_refused", f"cross-origin request refused: {refusal}", headers={"Vary": "Origin"}
            )
            await answer(scope, receive, send)
            return
        headers = [(b"access-control-allow-origin", origin), *self._preflight, (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    def _refused_header(self, requested: bytes | None) -> str | None:
        if not requested:
            return None
        for part in requested.split(b","):
            name = part.strip().lower()
            if name and name not in self._allowed_headers:
                return f"header {name.decode('latin-1')} not allowed"
        return None


def _vary_origin(raw: Iterable[tuple[bytes, bytes]], added: RawHeaders) -> RawHeaders:
    """The app's headers plus `added`, with `Origin` in `Vary` exactly once."""
    headers = list(raw)
    for i, (name, value) in enumerate(headers):
        if name == _VARY:
            tokens = {t.strip().lower() for t in value.split(b",")}
            if b"*" not in tokens and b"origin" not in tokens:
                headers[i] = (_VARY, value + b", Origin")
            break
    else:
        headers.append((_VARY, b"Origin"))
    headers += added
    return headers
