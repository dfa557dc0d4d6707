"""The pieces wired into a FastAPI app the way the services will wire them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from services.http import (
    CORS,
    FailedAuthThrottle,
    HTTPProblem,
    SecurityHeaders,
    TokenBucketLimiter,
    problem,
    problem_handler,
    rate_limited,
)

ADMIN = "https://admin.flagstream.example"
GOOD = "Bearer good"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_app(clock: Clock, slept: list[float]) -> FastAPI:
    app = FastAPI()
    limiter = TokenBucketLimiter(1.0, 2, clock=clock)
    throttle = FailedAuthThrottle(free_failures=1, block_after_capped=1, clock=clock)

    async def caller(request: Request) -> str:
        client = request.client.host if request.client else "unknown"
        blocked = throttle.should_block(client)
        if blocked is not None:
            raise HTTPProblem(rate_limited(blocked, reason="too many failed authentications"))
        if request.headers.get("authorization") != GOOD:
            throttle.record_failure(client)
            delay = throttle.delay_for(client)
            slept.append(delay)
            await asyncio.sleep(0)  # a service sleeps `delay` here
            raise HTTPProblem(problem(401, "unauthenticated", "invalid API key"))
        throttle.record_success(client)
        wait = limiter.try_acquire("key-1")
        if wait:
            raise HTTPProblem(rate_limited(wait))
        return "key-1"

    @app.get("/v1/flags")
    async def flags(key: str = Depends(caller)) -> dict[str, str]:
        return {"key": key}

    app.add_exception_handler(HTTPProblem, problem_handler)
    app.add_middleware(CORS, origins=[ADMIN])
    app.add_middleware(SecurityHeaders)
    return app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
async def client(clock: Clock, slept: list[float]) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(clock, slept)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def test_a_good_request_gets_every_header(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/flags", headers={"Authorization": GOOD, "Origin": ADMIN})
    assert response.json() == {"key": "key-1"}
    assert response.headers["access-control-allow-origin"] == ADMIN
    assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert response.headers["cache-control"] == "no-store"


async def test_the_rate_limit_answers_429_with_retry_after(client: httpx.AsyncClient, clock: Clock) -> None:
    codes = [(await client.get("/v1/flags", headers={"Authorization": GOOD})).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    refused = await client.get("/v1/flags", headers={"Authorization": GOOD, "Origin": ADMIN})
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "rate_limited"
    assert refused.headers["access-control-allow-origin"] == ADMIN  # the admin UI can read the refusal
    assert refused.headers["x-content-type-options"] == "nosniff"
    clock.now += 1.0
    assert (await client.get("/v1/flags", headers={"Authorization": GOOD})).status_code == 200


async def test_bad_keys_are_slowed_then_blocked(client: httpx.AsyncClient, slept: list[float], clock: Clock) -> None:
    codes = [(await client.get("/v1/flags", headers={"Authorization": "Bearer bad"})).status_code for _ in range(5)]
    assert codes[:5] == [401, 401, 401, 401, 401]
    assert slept == [0.0, 0.25, 0.5, 1.0, 2.0]
    blocked = await client.get("/v1/flags", headers={"Authorization": GOOD})
    assert blocked.status_code == 429
    assert blocked.headers["retry-after"] == "60"
    assert blocked.json()["detail"] == "too many failed authentications; retry after 60 s"
    clock.now += 60
    assert (await client.get("/v1/flags", headers={"Authorization": GOOD})).status_code == 200


async def test_a_preflight_gets_security_headers_too(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/v1/flags",
        headers={
            "Origin": ADMIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert response.status_code == 204
    assert response.headers["x-frame-options"] == "DENY"
