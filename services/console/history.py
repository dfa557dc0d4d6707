"""Reading the log through the command API: `GET /v1/history` (the audit trail), topped up by `GET /v1/events`.

History is filtered on the server (org, flag, actor, kinds, time range) and
paged oldest first with a cursor; it shows a row only once every transaction
that began before it has ended anywhere on the Postgres server (its visibility
horizon), which a busy server can hold back for seconds. So the console adds
the events numbered after the last one history gave (`GET /v1/events`, which
shows a row as soon as it commits) and filters them itself: a change just made
is on the page at once. Up to `MAX_PAGES` pages are read; the page says when
it stopped early.
"""

from __future__ import annotations

from typing import Any

from services.console.audit import KINDS, AuditFilter, entry
from services.console.ports import Api

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
    """The matching events (history's order, then the newest) and whether the log goes on past what was read."""
    found: list[dict[str, Any]] = []
    params = {**history_params(keep), "limit": PAGE}
    for _ in range(MAX_PAGES):
        page = await api.history(params)
        found.extend(page["entries"])
        if not page["has_more"]:
            break
        params["cursor"] = page["next_cursor"]
    else:
        return found, True
    seen = {e["event_id"] for e in found}
    after = max((int(e["sequence"]) for e in found), default=0)
    tail, more = await read_events(api, org=keep.org, flag=keep.flag, after=after)
    found.extend(e for e in tail if e["event_id"] not in seen and keep.keeps(entry(e)))
    return found, more


async def read_events(api: Api, *, org: str | None, flag: str | None, after: int = 0
                      ) -> tuple[list[dict[str, Any]], bool]:
    """`GET /v1/events` from sequence `after` on: every event as soon as it commits, unfiltered beyond org/flag."""
    found: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        page = await api.events(org=org, flag=flag, after=after, limit=PAGE)
        found.extend(page["events"])
        if len(page["events"]) < PAGE:
            return found, False
        after = int(page["next_after"])
    return found, True


async def changes_since(api: Api, *, stream: str, org: str | None, flag: str, version: int) -> list[dict[str, Any]]:
    """The events of `stream` after `version`: what someone else did since the page was loaded (read at once)."""
    events, _ = await read_events(api, org=org, flag=flag)
    return [e for e in events if e["stream"] == stream and int(e["version"]) > version]
