"""Reading the log through the command API's history route (`GET /v1/history`, issue 4).

History is filtered on the server (org, flag, kinds, time range) and paged
oldest first with a cursor; the console reads up to `MAX_PAGES` pages and
shows the newest, saying when it stopped early.
"""

from __future__ import annotations

from typing import Any

from services.console.audit import KINDS, AuditFilter
from services.console.client import Api

PAGE = 1000
MAX_PAGES = 20


def history_params(keep: AuditFilter) -> dict[str, Any]:
    """The filter as `GET /v1/history` parameters."""
    return {
        "org": keep.org,
        "flag": keep.flag,
        "actor": keep.actor,
        "type": list(KINDS[keep.kind]) if keep.kind else None,
        "since": keep.since and keep.since.isoformat(),
        "until": keep.until and keep.until.isoformat(),
    }


async def read_log(api: Api, keep: AuditFilter) -> tuple[list[dict[str, Any]], bool]:
    """The matching events (oldest first) and whether the log goes on past what was read."""
    found: list[dict[str, Any]] = []
    params = {**history_params(keep), "limit": PAGE}
    for _ in range(MAX_PAGES):
        page = await api.history(params)
        found.extend(page["entries"])
        if not page["has_more"]:
            return found, False
        params["cursor"] = page["next_cursor"]
    return found, True


async def changes_since(api: Api, *, stream: str, org: str | None, flag: str, version: int) -> list[dict[str, Any]]:
    """The events of `stream` after `version`: what someone else did since the page was loaded."""
    events, _ = await read_log(api, AuditFilter(org=org, flag=flag))
    return [e for e in events if e["stream"] == stream and int(e["version"]) > version]
