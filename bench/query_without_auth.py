"""The query service with authentication switched off: for `bench.auth_overhead` only, never deployed.

    FLAGS_...=... .venv/bin/python -m bench.query_without_auth

The same server as `python -m services.query` (the product's HTTP server with the
OFREP and native hot path), except that the app's `AuthGate` is replaced, before
its lifespan starts, by one that returns a fixed evaluator `Principal` of the
bench's org without looking at the request. Both the hot path
and FastAPI's dependency ask that gate, so authorisation still runs, on that
principal, exactly as for a real evaluator key: the difference between the two
builds is authentication alone (header parsing, key cache, SHA-256, throttle
bookkeeping). It lives in bench/ so that no service can be started without it.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request

from bench.ofrep import ORG
from services.auth.http import AuthGate, use_gate
from services.auth.policy import Principal, Role
from services.infra.settings import Settings
from services.query.__main__ import serve
from services.query.bootstrap import app_from_env
from services.query.site import QuerySite

BENCH_PRINCIPAL = Principal("0000000000000000", "benchmark, auth off", Role.EVALUATOR, ORG)  # as the bench's key


class NoAuthentication(AuthGate):
    """Every request is the benchmark's evaluator of its org."""

    def __init__(self) -> None:
        super().__init__(authenticator=None)  # type: ignore[arg-type]  # never asked

    async def principal(self, request: Request) -> Principal:
        return BENCH_PRINCIPAL

    async def check(self, authorization: str | None, client: str, method: str, path: str) -> Principal:
        return BENCH_PRINCIPAL  # what the hot path asks

    def verified(self, authorization: str | None, client: str) -> Principal:
        return BENCH_PRINCIPAL  # what its synchronous path asks


def app_without_auth() -> FastAPI:
    app = app_from_env()
    use_gate(app, NoAuthentication())  # set before the lifespan, which keeps a gate it finds
    return app


def site_from_env() -> QuerySite:
    return QuerySite(app_without_auth(), cors=bool(Settings().cors_origins))


if __name__ == "__main__":
    serve("bench.query_without_auth:site_from_env")
