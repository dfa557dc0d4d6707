"""A thin HTTP client of the two services that turns error answers into `ApiError`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, BinaryIO

# httpx imports its own command line (click, rich, pygments: about 0.15 s) whenever they happen to be installed,
# and flagctl never runs it; None in sys.modules makes that optional import fail at once, which httpx expects.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: "not importable", by design
import httpx  # noqa: E402

from flagctl.errors import ApiError  # noqa: E402

# A 429 (the command API's per-key write rate, or a client that failed to authenticate)
# says when to come back; waits beyond this many seconds are reported, not slept through.
MAX_RETRY_WAIT = 30.0


class Client:
    def __init__(
        self,
        command_url: str,
        query_url: str,
        *,
        key: str | None = None,
        notifier_url: str = "http://127.0.0.1:8085",
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # Building the TLS context (the CA bundle) takes ~70 ms, a quarter of a command's run: made only when
        # a service is reached over https; plain-http URLs have no certificate to verify.
        tls = any(url.lower().startswith("https:") for url in (command_url, query_url, notifier_url))
        self._http = httpx.Client(timeout=timeout, headers=headers, transport=transport, verify=tls)
        self._sleep = sleep
        self.command_url = command_url.rstrip("/")
        self.query_url = query_url.rstrip("/")
        self.notifier_url = notifier_url.rstrip("/")

    def close(self) -> None:
        self._http.close()

    def command(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call(method, self.command_url + path, body)

    def notifier(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The notifier's API: a subscription's delivery log and dead letters, "retry now"."""
        return self._call(method, self.notifier_url + path, body)

    def query(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        return self._call("GET", self.query_url + path, None, clean)

    def download(self, path: str, params: dict[str, Any], out: BinaryIO) -> None:
        """GET a streamed answer of the command service (an export) and copy it to `out` as it arrives."""
        url = self.command_url + path
        clean = {k: v for k, v in params.items() if v is not None}
        try:
            with self._http.stream("GET", url, params=clean) as response:
                if response.status_code >= 400:
                    response.read()
                    payload = response.json() if response.headers.get("content-type") == "application/json" else {}
                    raise ApiError(_describe(response.status_code, payload), response.status_code, payload)
                for chunk in response.iter_bytes():
                    out.write(chunk)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot read {url}: {exc}") from exc

    def _call(
        self, method: str, url: str, body: dict[str, Any] | None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        waited = 0.0
        while True:
            try:
                response = self._http.request(method, url, json=body, params=params)
            except httpx.HTTPError as exc:
                raise ApiError(f"cannot reach {url}: {exc}") from exc
            wait = _retry_after(response)
            if wait is None or waited + wait > MAX_RETRY_WAIT:
                break
            self._sleep(wait)
            waited += wait
        try:
            payload = response.json()
        except ValueError:
            payload = {"detail": response.text[:200]}
        if response.status_code >= 400:
            raise ApiError(_describe(response.status_code, payload), response.status_code, payload)
        return payload if isinstance(payload, dict) else {"items": payload}


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait before sending again, for a 429 that says so; else None."""
    if response.status_code != 429:
        return None
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _describe(status: int, payload: dict[str, Any]) -> str:
    code = payload.get("error", "error")
    detail = payload.get("detail", "")
    field = payload.get("field")
    where = f" [{field}]" if field else ""
    extra = ""
    if code == "version_conflict":
        extra = f" (current version {payload.get('current_version')})"
    return f"{status} {code}{where}: {detail}{extra}"
