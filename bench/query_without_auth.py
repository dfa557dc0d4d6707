"""The query service with authentication switched off: for `bench.auth_overhead` only, never deployed.

    FLAGS_...=... .venv/bin/python -m bench.query_without_auth

The same app as `python -m services.query` (built by `services.query.app.app_from_env`,
served by granian the same way, one ASGI worker), except that FastAPI's
`dependency_overrides` replaces the authentication dependency
(`services.auth.http._authenticated`) with one that returns a fixed system-admin
`Principal` without looking at the request. Authorisation still runs, on that
principal, exactly as it does for a real system-admin key: the difference between
the two builds is authentication alone (header parsing, key cache, SHA-256,
throttle bookkeeping). It lives in bench/ so that no service can be started
without authentication.
"""

from __future__ import annotations

from fastapi import FastAPI
from granian import Granian
from granian.constants import Interfaces

from services.auth.http import _authenticated
from services.auth.policy import Principal, Role
from services.infra.settings import Settings
from services.query import app as query_app

BENCH_PRINCIPAL = Principal("0000000000000000", "benchmark, auth off", Role.SYSTEM_ADMIN, None)


async def _fixed_principal() -> Principal:
    # async: a plain function would be run in FastAPI's thread pool, which the real dependency is not
    return BENCH_PRINCIPAL


def without_auth(app: FastAPI) -> FastAPI:
    app.dependency_overrides[_authenticated] = _fixed_principal
    return app


def app_from_env() -> FastAPI:
    """Factory for granian: the query service's own factory, then the override."""
    return without_auth(query_app.app_from_env())


def main() -> None:
    settings = Settings()
    Granian(
        "bench.query_without_auth:app_from_env",
        factory=True,
        address=settings.query_host,
        port=settings.query_port,
        interface=Interfaces.ASGI,
        workers=1,
    ).serve()


if __name__ == "__main__":
    main()
