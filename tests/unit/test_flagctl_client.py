"""flagctl's HTTP client: a 429 that says when to come back is waited out, within reason."""

from __future__ import annotations

import ssl

import httpx
import pytest

from flagctl.client import MAX_RETRY_WAIT, Client
from flagctl.errors import ApiError


def client_answering(*answers: httpx.Response) -> tuple[Client, list[float], list[httpx.Request]]:
    queue = list(answers)
    seen: list[httpx.Request] = []
    slept: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0)

    client = Client("http://command", "http://query", key="k", sleep=slept.append,
                    transport=httpx.MockTransport(handler))
    return client, slept, seen


def limited(seconds: str) -> httpx.Response:
    body = {"error": "rate_limited", "detail": f"too many changes from this key; retry after {seconds} s"}
    return httpx.Response(429, json=body, headers={"Retry-After": seconds})


def test_a_429_is_retried_after_the_wait_it_names() -> None:
    client, slept, seen = client_answering(limited("1"), limited("2"), httpx.Response(201, json={"changed": True}))
    assert client.command("PUT", "/v1/flags/a.b/system", {"enabled": True, "reason": "r"}) == {"changed": True}
    assert slept == [1.0, 2.0]
    assert len(seen) == 3 and all(r.content == seen[0].content for r in seen)  # the same request each time


def test_a_wait_beyond_the_limit_is_reported_not_slept() -> None:
    client, slept, _ = client_answering(limited(str(int(MAX_RETRY_WAIT) + 1)))
    with pytest.raises(ApiError) as refused:
        client.command("POST", "/v1/flags", {"key": "a.b", "group": "a", "reason": "r"})
    assert refused.value.status == 429 and "rate_limited" in str(refused.value)
    assert slept == []


@pytest.mark.parametrize("header", [None, "soon", "nan", "-1"])
def test_a_429_without_a_usable_retry_after_is_an_error(header: str | None) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    client, slept, _ = client_answering(httpx.Response(429, json={"error": "rate_limited"}, headers=headers))
    with pytest.raises(ApiError):
        client.query("/v1/flags")
    assert slept == []


@pytest.mark.parametrize(
    ("urls", "verified"),
    [(("https://command", "http://query"), True), (("http://command", "HTTPS://query"), True),
     (("http://command", "http://query"), False)],
)
def test_certificates_are_verified_whenever_a_service_is_reached_over_https(
    urls: tuple[str, str], verified: bool
) -> None:
    """The CA bundle is loaded (~70 ms of start-up) only when some URL needs it, and then always checked."""
    client = Client(*urls)
    context = client._http._transport._pool._ssl_context  # type: ignore[attr-defined]  # httpx's own pool
    assert (context.verify_mode == ssl.CERT_REQUIRED) is verified
    client.close()
