"""The console's only way to the data: the command, query and notifier APIs, called with the user's own key.

`HttpApi` is the adapter of the `ports.Api` port the routes use (unit tests pass a fake of it); it raises
`ports.ApiError` with the API's status and JSON error, and a 503 `ApiError` for an unreachable API.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from services.console.ports import ApiError

__all__ = ["HttpApi"]


class HttpApi:
    """One user's view of the APIs over a shared connection pool."""

    def __init__(self, http: httpx.AsyncClient, *, command_url: str, query_url: str, key: str,
                 notifier_url: str = "http://127.0.0.1:8085") -> None:  # fmt: skip
        self._http = http
        self._command = command_url.rstrip("/")
        self._query = query_url.rstrip("/")
        self._notifier = notifier_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {key}"}

    async def _call(self, method: str, url: str, *, params: dict[str, Any] | None = None,
                    body: dict[str, Any] | None = None, auth: bool = True) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self._http.request(method, url, params=clean, json=body,
                                                headers=self._headers if auth else None)
        except httpx.HTTPError as exc:
            raise ApiError(503, {"error": "unreachable", "detail": f"the service did not answer ({type(exc).__name__})"}
                           ) from exc
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": "bad_answer", "detail": f"the service answered {response.status_code} without JSON"}
        if response.status_code >= 400 and not (auth is False and response.status_code == 503):
            raise ApiError(response.status_code, payload if isinstance(payload, dict) else {})
        return payload

    async def whoami(self) -> dict[str, Any]:
        return await self._call("GET", f"{self._command}/v1/whoami")  # type: ignore[no-any-return]

    async def catalog(self) -> list[dict[str, Any]]:
        return (await self._call("GET", f"{self._query}/v1/flags"))["flags"]  # type: ignore[no-any-return]

    async def evaluate(
        self, org: str, flag: str, *, platform: str | None, user: str | None, context: str | None = None
    ) -> dict[str, Any]:
        """`context`: the evaluation context for targeting rules, a JSON object as text (the query API checks it)."""
        url = f"{self._query}/v1/orgs/{quote(org)}/flags/{quote(flag)}"
        params = {"platform": platform, "user": user, "context": context}
        return await self._call("GET", url, params=params)  # type: ignore[no-any-return]

    async def evaluate_all(self, org: str, *, platform: str | None, user: str | None) -> list[dict[str, Any]]:
        url = f"{self._query}/v1/orgs/{quote(org)}/flags"
        return (await self._call("GET", url, params={"platform": platform, "user": user}))["flags"]  # type: ignore[no-any-return]

    async def platforms(self, org: str) -> list[str]:
        return (await self._call("GET", f"{self._query}/v1/orgs/{quote(org)}/platforms"))["enabled"]  # type: ignore[no-any-return]

    async def stream(self, stream: str) -> dict[str, Any]:
        return await self._call("GET", f"{self._command}/v1/streams/{quote(stream)}")  # type: ignore[no-any-return]

    async def events(self, *, org: str | None, flag: str | None, after: int, limit: int) -> dict[str, Any]:
        params = {"org": org, "flag": flag, "after": after, "limit": limit}
        return await self._call("GET", f"{self._command}/v1/events", params=params)  # type: ignore[no-any-return]

    async def history(self, params: dict[str, Any]) -> dict[str, Any]:
        """A page of `GET /v1/history` (oldest first, filtered on the server, `next_cursor` to go on)."""
        return await self._call("GET", f"{self._command}/v1/history", params=params)  # type: ignore[no-any-return]

    async def export(self, params: dict[str, Any]) -> bytes:
        """`GET /v1/history` as JSON Lines or CSV (`format` in `params`): every matching event."""
        clean = {k: v for k, v in params.items() if v is not None}
        try:
            response = await self._http.get(f"{self._command}/v1/history", params=clean, headers=self._headers,
                                             timeout=60.0)
        except httpx.HTTPError as exc:
            raise ApiError(503, {"error": "unreachable", "detail": "the command service did not answer"}) from exc
        if response.status_code >= 400:
            raise ApiError(response.status_code, response.json() if response.content.startswith(b"{") else {})
        return response.content

    async def diff(self, *, org: str, since: str, until: str) -> dict[str, Any]:
        params = {"org": org, "from": since, "to": until}
        return await self._call("GET", f"{self._command}/v1/audit/diff", params=params)  # type: ignore[no-any-return]

    async def stale_flags(self) -> dict[str, Any]:
        return await self._call("GET", f"{self._command}/v1/reports/stale-flags")  # type: ignore[no-any-return]

    async def schedules(self, org: str) -> dict[str, Any]:
        return await self._call("GET", f"{self._query}/v1/orgs/{quote(org)}/schedules")  # type: ignore[no-any-return]

    async def at(self, *, org: str, at: str, flag: str | None, platform: str | None, user: str | None
                 ) -> dict[str, Any]:
        """`GET /v1/audit/at`: the org's flags as they evaluated at an instant (time travel)."""
        params = {"org": org, "at": at, "flag": flag, "platform": platform, "user": user}
        return await self._call("GET", f"{self._command}/v1/audit/at", params=params)  # type: ignore[no-any-return]

    async def keys(self, org: str | None) -> list[dict[str, Any]]:
        """`GET /v1/keys`: the keys (never the keys themselves) of one org, or all for a system admin."""
        return (await self._call("GET", f"{self._command}/v1/keys", params={"org": org}))["keys"]  # type: ignore[no-any-return]

    async def change(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(method, self._command + path, body=body)  # type: ignore[no-any-return]

    async def readiness(self) -> dict[str, Any]:
        """The command service's open probe: outbox lag and relay state (a 503 body is an answer too)."""
        return await self._call("GET", f"{self._command}/readyz", auth=False)  # type: ignore[no-any-return]

    async def override_counts(self) -> dict[str, dict[str, int]]:
        """`GET /v1/reports/override-counts` (system-wide readers): flag key → `{orgs, overrides}`."""
        flags = (await self._call("GET", f"{self._query}/v1/reports/override-counts"))["flags"]
        return {f["flag_key"]: {"orgs": f["orgs"], "overrides": f["overrides"]} for f in flags}

    async def usage(self, org: str | None, *, minutes: int) -> dict[str, Any]:
        """Evaluations per flag per minute: one org's (`GET /v1/orgs/{org}/usage`), or every org's (`GET /v1/usage`)."""
        path = "/v1/usage" if org is None else f"/v1/orgs/{quote(org)}/usage"
        return await self._call("GET", self._query + path, params={"minutes": minutes})  # type: ignore[no-any-return]

    # --- notifications: subscriptions (command API), their delivery log and dead letters (the notifier's) ---

    @staticmethod
    def _subscriptions_path(org: str | None) -> str:
        return "/v1/subscriptions" if org is None else f"/v1/orgs/{quote(org)}/subscriptions"

    async def subscriptions(self, org: str | None) -> list[dict[str, Any]]:
        found = await self._call("GET", f"{self._command}{self._subscriptions_path(org)}")
        return found["subscriptions"]  # type: ignore[no-any-return]

    async def subscription(self, org: str | None, subscription_id: str) -> dict[str, Any]:
        url = f"{self._command}{self._subscriptions_path(org)}/{quote(subscription_id)}"
        return await self._call("GET", url)  # type: ignore[no-any-return]

    async def deliveries(self, org: str | None, subscription_id: str, *, limit: int) -> list[dict[str, Any]]:
        url = f"{self._notifier}{self._subscriptions_path(org)}/{quote(subscription_id)}/deliveries"
        return (await self._call("GET", url, params={"limit": limit}))["attempts"]  # type: ignore[no-any-return]

    async def dead_letters(self, org: str | None, subscription_id: str, *, limit: int) -> list[dict[str, Any]]:
        url = f"{self._notifier}{self._subscriptions_path(org)}/{quote(subscription_id)}/dead-letters"
        return (await self._call("GET", url, params={"limit": limit}))["dead_letters"]  # type: ignore[no-any-return]

    async def retry_dead_letters(self, org: str | None, subscription_id: str) -> dict[str, Any]:
        url = f"{self._notifier}{self._subscriptions_path(org)}/{quote(subscription_id)}/dead-letters/retry"
        return await self._call("POST", url)  # type: ignore[no-any-return]
