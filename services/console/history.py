"""Reading the log through the command API: `GET /v1/events` pages forward by sequence.

Until the history routes of the audit issue land (newest first, filtered and
paged on the server), the console reads forward up to `MAX_PAGES` pages and
keeps the tail; the page says when it stopped early.
"""

from __future__ import annotations

from typing import Any

from services.console.client import Api

PAGE = 1000
MAX_PAGES = 20


async def read_log(api: Api, *, org: str | None, flag: str | None) -> tuple[list[dict[str, Any]], bool]:
    """The events (oldest first) and whether the log goes on past what was read."""
    found: list[dict[str, Any]] = []
    after = 0
    for _ in range(MAX_PAGES):
        page = await api.events(org=org, flag=flag, after=after, limit=PAGE)
        found.extend(page["events"])
        if len(page["events"]) < PAGE:
            return found, False
        after = int(page["next_after"])
    return found, True


async def changes_since(api: Api, *, stream: str, org: str | None, flag: str, version: int) -> list[dict[str, Any]]:
    """The events of `stream` after `version`: what someone else did since the page was loaded."""
    events, _ = await read_log(api, org=org, flag=flag)
    return [e for e in events if e["stream"] == stream and int(e["version"]) > version]
