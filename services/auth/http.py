"""Authentication for the FastAPI apps: one dependency, one set of error answers.

401 for a missing, malformed, unknown, revoked or expired key; 403 (one uniform
body) for a key that may not do what it asked; 429 when a client keeps sending
bad keys (or, on the command API, when a key writes faster than its rate).
Every denial is counted and logged, never with the key itself.

An app's gate is installed by its composition root (or a test) with `use_gate` and read with
`gate_of`; routes ask for it as the typed dependency `Gate`, and for the caller as `Caller`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Annotated, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.applications import Starlette

from services.auth.authenticator import Authenticator, Unauthenticated
from services.auth.policy import Forbidden, Principal
from services.http.errors import rate_limited

log = logging.getLogger("flagstream.auth")


class Throttle(Protocol):
    def should_block(self, client: str) -> float | None: ...

    def delay_for(self, client: str) -> float: ...

    def record_failure(self, client: str) -> None: ...

    def record_success(self, client: str) -> None: ...


class TooManyFailures(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.0f} s")
        self.retry_after = retry_after


class AuthGate:
    """What an app authenticates with (`use_gate`): the authenticator, the throttle, the denial counts."""

    def __init__(self, authenticator: Authenticator, *, throttle: Throttle | None = None) -> None:
        self.authenticator = authenticator
        self.throttle = throttle
        self.denials: Counter[str] = Counter()

    async def principal(self, request: Request) -> Principal:
        return await self.check(request.headers.get("authorization"), _host(request), request.method, request.url.path)

    async def check(self, authorization: str | None, client: str, method: str, path: str) -> Principal:
        """`principal` for callers that hold no Starlette `Request` (the query service's hot path)."""
        throttle = self.throttle
        if throttle is not None:
            blocked = throttle.should_block(client)
            if blocked is not None:
                self.deny("throttled", None, None, client, method, path)
                raise TooManyFailures(blocked)
        try:
            return await self.authenticator.authenticate(authorization)
        except Unauthenticated as exc:
            self.deny("unauthenticated", exc.detail, None, client, method, path)
            if throttle is not None:
                throttle.record_failure(client)
                delay = throttle.delay_for(client)
                if delay > 0:
                    await asyncio.sleep(delay)
            raise

    def verified(self, authorization: str | None, client: str) -> Principal | None:
        """`check`'s principal when it is known at once (`Authenticator.verified`) and the client is not blocked;
        else None, and `check` decides (and refuses, counts and logs)."""
        throttle = self.throttle
        if throttle is not None and throttle.should_block(client) is not None:
            return None
        return self.authenticator.verified(authorization)

    def denied(self, request: Request, kind: str, detail: str | None, principal: Principal | None = None) -> None:
        self.deny(kind, detail, principal, _host(request), request.method, request.url.path)

    def deny(
        self, kind: str, detail: str | None, principal: Principal | None, client: str, method: str, path: str
    ) -> None:
        """Count and log a refusal (never with the key itself)."""
        self.denials[kind] += 1
        who = f"key {principal.key_id}" if principal else client
        log.info("denied (%s) %s %s for %s: %s", kind, method, path, who, detail or "")


def _host(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def use_gate(app: Starlette, gate: AuthGate | None) -> None:
    """Authenticate `app`'s requests with `gate` (None: refuse them all, as before the start)."""
    app.state.auth = gate


def gate_of(app: Starlette) -> AuthGate | None:
    """The gate `use_gate` installed, None until one is (the only reader of the app's attribute)."""
    gate: AuthGate | None = getattr(app.state, "auth", None)
    return gate


async def _gate(request: Request) -> AuthGate:
    gate = gate_of(request.app)
    if gate is None:  # not started yet: fail closed
        raise Unauthenticated("authentication is not available yet; retry shortly")
    return gate


Gate = Annotated[AuthGate, Depends(_gate)]


async def _authenticated(request: Request, gate: Gate) -> Principal:
    principal = await gate.principal(request)
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(_authenticated)]


def install_auth_handlers(app: FastAPI) -> None:
    @app.exception_handler(Unauthenticated)
    async def unauthenticated(_: Request, exc: Unauthenticated) -> JSONResponse:
        return JSONResponse(
            {"error": "unauthenticated", "detail": exc.detail, "field": None},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="flagstream"'},
        )

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        gate = gate_of(app)
        if gate is not None:
            gate.denied(request, "forbidden", exc.detail, getattr(request.state, "principal", None))
        return JSONResponse({"error": "forbidden", "detail": exc.detail, "field": None}, status_code=403)

    @app.exception_handler(TooManyFailures)
    async def throttled(_: Request, exc: TooManyFailures) -> Response:
        return rate_limited(exc.retry_after, reason="too many failed authentications")
