"""A thin HTTP client of the two services that turns error answers into `ApiError`."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    """The service refused or could not be reached; `str()` is what to print."""

    def __init__(self, message: str, status: int | None = None, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}


class Client:
    def __init__(self, command_url: str, query_url: str, *, key: str | None = None, timeout: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(timeout=timeout, headers=headers)
        self.command_url = command_url.rstrip("/")
        self.query_url = query_url.rstrip("/")

    def close(self) -> None:
        self._http.close()

    def command(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call(method, self.command_url + path, body)

    def query(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        return self._call("GET", self.query_url + path, None, clean)

    def _call(
        self, method: str, url: str, body: dict[str, Any] | None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            response = self._http.request(method, url, json=body, params=params)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach {url}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = {"detail": response.text[:200]}
        if response.status_code >= 400:
            raise ApiError(_describe(response.status_code, payload), response.status_code, payload)
        return payload if isinstance(payload, dict) else {"items": payload}


def _describe(status: int, payload: dict[str, Any]) -> str:
    code = payload.get("error", "error")
    detail = payload.get("detail", "")
    field = payload.get("field")
    where = f" [{field}]" if field else ""
    extra = ""
    if code == "version_conflict":
        extra = f" (current version {payload.get('current_version')})"
    return f"{status} {code}{where}: {detail}{extra}"
