"""The JSON error shape: `problem`, `rate_limited`, and `HTTPProblem` through an app."""

from __future__ import annotations

import math
from typing import Any

import httpx
import orjson
import pytest
from fastapi import Depends, FastAPI
from starlette.types import Receive, Scope, Send

from services.http import HTTPProblem, error_body, problem, problem_handler, rate_limited, retry_after_seconds


def test_problem_has_the_product_shape() -> None:
    response = problem(409, "version_conflict", "stream is at 3", field="expected_version", current_version=3)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/json"
    assert orjson.loads(response.body) == {
        "error": "version_conflict",
        "detail": "stream is at 3",
        "field": "expected_version",
        "current_version": 3,
    }
    assert list(orjson.loads(response.body)) == ["error", "detail", "field", "current_version"]
    assert response.headers["content-length"] == str(len(response.body))


def test_field_is_null_when_not_given() -> None:
    assert orjson.loads(problem(400, "malformed_json", "bad").body) == {
        "error": "malformed_json",
        "detail": "bad",
        "field": None,
    }


def test_problem_sets_the_given_headers() -> None:
    response = problem(401, "unauthenticated", "no key", headers={"WWW-Authenticate": 'Bearer realm="flagstream"'})
    assert response.headers["www-authenticate"] == 'Bearer realm="flagstream"'
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("invalid_request", "bad", "rollout_percentage"), {}),
        (("body_too_large", "too big", None), {"limit": 1024}),
        (("unknown_flag", "no flag", "flag_key"), {"flag_key": "a.b"}),
    ],
)
def test_error_body_leads_with_error_detail_field(args: tuple[Any, ...], extra: dict[str, Any]) -> None:
    body = error_body(*args, **extra)
    assert list(body) == ["error", "detail", "field", *extra]
    assert body == {"error": args[0], "detail": args[1], "field": args[2], **extra}


@pytest.mark.parametrize(
    ("wait", "seconds"),
    [(0.0, 1), (-3.0, 1), (0.001, 1), (0.999, 1), (1.0, 1), (1.0001, 2), (2.5, 3), (59.2, 60), (3600.0, 3600)],
)
def test_rate_limited_rounds_up_to_whole_seconds(wait: float, seconds: int) -> None:
    response = rate_limited(wait)
    assert response.status_code == 429
    assert response.headers["retry-after"] == str(seconds)
    assert orjson.loads(response.body) == {
        "error": "rate_limited",
        "detail": f"too many requests; retry after {seconds} s",
        "field": None,
        "retry_after": seconds,
    }


def test_rate_limited_takes_a_reason_and_more_headers() -> None:
    response = rate_limited(4.2, reason="too many failed authentications", headers={"X-Why": "auth"})
    assert orjson.loads(response.body)["detail"] == "too many failed authentications; retry after 5 s"
    assert response.headers["retry-after"] == "5"
    assert response.headers["x-why"] == "auth"


@pytest.mark.parametrize("wait", [math.inf, -math.inf, math.nan])
def test_retry_after_must_be_finite(wait: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        retry_after_seconds(wait)


def test_retry_after_header_is_an_integer_string() -> None:
    assert rate_limited(0.3).headers.getlist("retry-after") == ["1"]


async def test_http_problem_is_answered_by_the_handler_from_a_dependency() -> None:
    def refuse() -> None:
        raise HTTPProblem(rate_limited(2.1))

    app = FastAPI()
    app.add_exception_handler(HTTPProblem, problem_handler)

    @app.get("/limited", dependencies=[Depends(refuse)])
    async def limited() -> dict[str, str]:  # pragma: no cover - never reached
        return {}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/limited")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"] == "rate_limited"


async def test_problem_is_an_asgi_app_for_raw_middleware() -> None:
    async def guard(scope: Scope, receive: Receive, send: Send) -> None:
        await problem(413, "body_too_large", "request body exceeds 10 bytes", limit=10)(scope, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://t") as client:
        response = await client.post("/x", content=b"x" * 100)
    assert response.status_code == 413
    assert response.json() == {
        "error": "body_too_large",
        "detail": "request body exceeds 10 bytes",
        "field": None,
        "limit": 10,
    }


def test_http_problem_carries_its_response() -> None:
    answer = problem(403, "forbidden", "no")
    exc = HTTPProblem(answer)
    assert exc.response is answer
    assert str(exc) == "HTTP 403"
