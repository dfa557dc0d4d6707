"""One attempt over HTTP (httpx): the address checked, time-outs on connect and read, the answer read up to a limit.

httpx's and the guard's exceptions stop here: an attempt is always an `Attempt`, whatever happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from services.notifier.deliveries import Attempt, AttemptStatus, Delivery
from services.notifier.guard import AddressGuard, Refused, Unresolved
from services.notifier.signing import headers

__all__ = ["HttpSender", "create_client"]


def create_client(*, connect_timeout: float, read_timeout: float) -> httpx.AsyncClient:
    """No redirects (a 3xx is an answer, not a new destination), no proxy or netrc from the environment."""
    timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout)
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)


class HttpSender:
    def __init__(
        self,
        client: httpx.AsyncClient,
        guard: AddressGuard,
        *,
        response_bytes: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._guard = guard
        self._limit = response_bytes
        self._now = now

    async def send(self, delivery: Delivery, number: int) -> Attempt:
        started = time.monotonic()

        def attempt(status: AttemptStatus, http_status: int | None, error: str | None, response: str = "") -> Attempt:
            latency = (time.monotonic() - started) * 1000
            return Attempt(delivery, number, status, http_status, latency, error, response)

        try:
            target = await self._guard.check(delivery.subscription.destination.url)
        except Refused as exc:
            return attempt(AttemptStatus.REFUSED, None, str(exc))
        except Unresolved as exc:
            return attempt(AttemptStatus.FAILED, None, str(exc))
        request_headers = {**headers(delivery, self._now()), "host": target.host_header}
        extensions = {"sni_hostname": target.name}
        try:
            async with self._client.stream(
                "POST", target.url, content=delivery.body, headers=request_headers, extensions=extensions
            ) as response:
                answer = await self._read_some(response)
        except httpx.TimeoutException as exc:
            return attempt(AttemptStatus.FAILED, None, f"timed out ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return attempt(AttemptStatus.FAILED, None, f"{type(exc).__name__}: {exc}"[:500])
        ok = 200 <= response.status_code < 300
        status = AttemptStatus.DELIVERED if ok else AttemptStatus.FAILED
        return attempt(status, response.status_code, None if ok else f"HTTP {response.status_code}", answer)

    async def _read_some(self, response: httpx.Response) -> str:
        """The first `response_bytes` of the body (raw: no decompression); the rest is never read."""
        kept = bytearray()
        async for chunk in response.aiter_raw():
            kept += chunk
            if len(kept) >= self._limit:
                break
        return bytes(kept[: self._limit]).decode("utf-8", "replace")
