"""The pages that read: flags, one flag, an organisation, Explain, the audit log (live and exported), status.

Each route asks `access` first (the same policy the APIs apply, so a refused
page costs no API call and says the same thing whatever it names), then reads
through the user's own `Api`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from events import Level, Platform
from events.scope import definition_stream
from services.console import audit, charts
from services.console.access import Action, home_page, may, require, scoped_org
from services.console.broadcast import median_and_p99
from services.console.changes import InvalidInput, Target, describe, org_id, parse_target
from services.console.dependencies import wired
from services.console.history import history_params, read_log
from services.console.operations import rollbackable, target_of_stream
from services.console.ports import Api, ApiError, LiveFeed, Session
from services.console.web import api, current, render, templates

AUDIT_ROWS = 200
HEARTBEAT = 15.0
USAGE_MINUTES = 60
PLATFORMS = [p.value for p in Platform]


async def home(request: Request) -> Response:
    session = await current(request)
    return RedirectResponse(home_page(session.principal), status_code=303)


# --- flags ------------------------------------------------------------------------------------------------


def _matches(flag: dict[str, Any], q: str, group: str, kind: str) -> bool:
    text = " ".join(str(flag.get(k) or "") for k in ("key", "description", "owner", "group")).lower()
    return (not q or q in text) and (not group or flag["group"] == group) and (not kind or flag["kind"] == kind)


async def flags(request: Request) -> Response:
    session = await current(request)
    require(session.principal, Action.READ_CATALOG)
    client = api(request, session)
    catalog = await client.catalog()
    q = request.query_params.get("q", "").strip().lower()[:100]
    group = request.query_params.get("group", "")
    kind = request.query_params.get("kind", "")
    state = request.query_params.get("state", "")
    stale, overridden = await asyncio.gather(_stale(client, session), _override_counts(client, session))
    shown = [f for f in catalog if _matches(f, q, group, kind) and (state != "stale" or f["key"] in (stale or {}))]
    return render(request, "flags.html", {
        "flags": shown, "total": len(catalog), "q": q, "group": group, "kind": kind, "state": state,
        "stale": stale, "overridden": overridden,
        "groups": sorted({f["group"] for f in catalog}), "kinds": sorted({f["kind"] for f in catalog}),
    })


async def _stale(client: Api, session: Session) -> dict[str, str] | None:
    """Flag key → why it is due for removal (the stale report is for system-wide readers only)."""
    if not may(session.principal, Action.READ_AUDIT, None):
        return None
    report = await client.stale_flags()
    return {f["key"]: f["reason"] for f in report["flags"]}


async def _override_counts(client: Api, session: Session) -> dict[str, dict[str, int]] | None:
    """Flag key → how many orgs override it: a count across every org, so for system-wide readers only."""
    if not may(session.principal, Action.READ_AUDIT, None):
        return None
    return await client.override_counts()


async def flag_page(request: Request) -> Response:
    session = await current(request)
    require(session.principal, Action.READ_CATALOG)
    key = request.path_params["flag"]
    target = parse_target({"flag": key, "level": "system"})
    client = api(request, session)
    catalog = await client.catalog()
    flag = next((f for f in catalog if f["key"] == key), None)
    if flag is None:
        raise ApiError(404, {"error": "unknown_flag", "detail": f"no flag {key!r}", "field": "flag"})
    definition, system = await asyncio.gather(client.stream(f"flag/{key}"), client.stream(target.stream))
    return render(request, "flag.html", {
        "flag": flag, "definition": definition, "system": system, "target": target,
        "kinds": ["release", "experiment", "ops", "permission"], "typed": _typed(flag),
    })


def _typed(flag: dict[str, Any]) -> bool:
    """A flag of a type other than boolean: it names its variants and each level may choose one."""
    return (flag.get("value_type") or "boolean") != "boolean"


# --- organisations ------------------------------------------------------------------------------------------


async def orgs(request: Request) -> Response:
    session = await current(request)
    wanted = org_id(request.query_params.get("org"))
    if wanted or session.org_id:
        return RedirectResponse(f"/orgs/{scoped_org(session.principal, wanted)}", status_code=303)
    return render(request, "orgs.html", {})


def _subject(request: Request) -> tuple[str | None, str | None]:
    platform = request.query_params.get("platform") or None
    if platform and platform not in PLATFORMS:
        raise InvalidInput("platform", f"must be one of {', '.join(PLATFORMS)}")
    user = (request.query_params.get("user") or "").strip() or None
    if user:
        parse_target({"flag": "x", "level": "user", "org": "x", "user": user})  # validates the user id
    return platform, user


async def org_page(request: Request) -> Response:
    session = await current(request)
    org = org_id(request.path_params["org"])
    assert org is not None
    require(session.principal, Action.EVALUATE, org)
    platform, user = _subject(request)
    client = api(request, session)
    evaluations, enabled = await asyncio.gather(
        client.evaluate_all(org, platform=platform, user=user), client.platforms(org)
    )
    return render(request, "org.html", {
        "org": org, "evaluations": evaluations, "enabled": enabled, "platforms": PLATFORMS,
        "platform": platform, "user": user,
    })


# --- explain ----------------------------------------------------------------------------------------------


def _setting_name(target: Target) -> str:
    """How time travel names a level's setting (`flagcore.history`)."""
    if target.platform is not None:
        return f"platform:{target.platform}"
    return f"user:{target.user_id}" if target.user_id is not None else target.level.value


async def _cascade(client: Api, session: Session, target_flag: str, org: str, platform: str | None,
                   user: str | None) -> list[dict[str, Any]]:
    """Each level that applies to the subject, highest first: its setting, version and the event that set it,
    as far as the role may read them (the event needs the audit right: `GET /v1/audit/at` as of now)."""
    levels = []
    if user:
        levels.append(Target(target_flag, Level.USER, org, user_id=user))
    if platform:
        levels.append(Target(target_flag, Level.PLATFORM, org, platform=Platform(platform)))
    levels += [Target(target_flag, Level.ORG, org), Target(target_flag, Level.SYSTEM)]

    async def head(target: Target) -> dict[str, Any] | None:
        try:
            return await client.stream(target.stream)
        except ApiError as exc:
            if exc.status != 403:
                raise
            return None  # the org's streams are audit data: not every role reads them

    heads = await asyncio.gather(*(head(t) for t in levels))
    set_by: dict[str, Any] = {}
    if may(session.principal, Action.READ_AUDIT, org):
        now = datetime.now(UTC).isoformat()
        try:
            views = (await client.at(org=org, at=now, flag=target_flag, platform=platform, user=user))["flags"]
        except ApiError as exc:
            if exc.status not in (404, 422):  # an org with no history yet, or a flag defined this instant
                raise
            views = []
        set_by = {name: s.get("set_by") for v in views for name, s in (v.get("settings") or {}).items()}
    rows = []
    for target, found in zip(levels, heads, strict=True):
        row: dict[str, Any] = {"target": target, "level": target.level.value,
                               "can_change": may(session.principal, target.action, target.org_id),
                               "set_by": set_by.get(_setting_name(target))}
        if found is None:
            row |= {"visible": False, "value": "hidden from your role", "set": False, "version": None}
        else:
            row |= {"visible": True, "value": describe(found["value"]), "set": found["value"] is not None,
                    "version": found["version"]}
        rows.append(row)
    return rows


async def explain(request: Request) -> Response:
    session = await current(request)
    params = request.query_params
    org = org_id(params.get("org")) or session.org_id
    context: dict[str, Any] = {"org": org or "", "platform": params.get("platform") or "",
                               "user": params.get("user") or "", "flag": params.get("flag") or "",
                               "platforms": PLATFORMS, "answer": None, "answers": None, "past": None,
                               "context": (params.get("context") or "").strip()}
    context["at"] = params.get("at") or ""
    if not org:
        return render(request, "explain.html", context)
    platform, user = _subject(request)
    client = api(request, session)
    flag = (params.get("flag") or "").strip()
    if context["at"]:  # time travel: the answer as it was then, from the log
        require(session.principal, Action.READ_AUDIT, org)
        if flag:
            parse_target({"flag": flag, "level": "system"})
        at = audit.parse_instant(context["at"], "at").isoformat()
        context["past"] = (await client.at(org=org, at=at, flag=flag or None, platform=platform, user=user))["flags"]
        return render(request, "explain.html", context)
    require(session.principal, Action.EVALUATE, org)
    if not flag:
        context["answers"] = await client.evaluate_all(org, platform=platform, user=user)
        return render(request, "explain.html", context)
    parse_target({"flag": flag, "level": "system"})  # validates the key
    answer = await client.evaluate(org, flag, platform=platform, user=user, context=context["context"] or None)
    context |= {"answer": answer, "cascade": await _cascade(client, session, flag, org, platform, user)}
    return render(request, "explain.html", context)


# --- a change form ----------------------------------------------------------------------------------------


async def change_form(request: Request) -> Response:
    session = await current(request)
    target = parse_target(dict(request.query_params))
    require(session.principal, target.action, target.org_id)
    client = api(request, session)
    head, definition = await asyncio.gather(client.stream(target.stream),
                                            client.stream(definition_stream(target.flag_key)))
    value = head["value"] or {}
    flag = definition["value"] or {}
    enabled: bool | None = value.get("enabled")
    state = "on" if enabled else "off" if enabled is False else "inherit" if value else "on"
    return render(request, "change.html", {
        "target": target, "head": head, "current": describe(head["value"]), "state": state,
        "rollout": value.get("rollout_percentage"), "return_to": request.query_params.get("return_to", ""),
        "error": None, "typed": _typed(flag), "names": list((flag.get("values") or {}).keys()),
    })


# --- audit ------------------------------------------------------------------------------------------------


def _audit_filter(request: Request, session: Session) -> audit.AuditFilter:
    keep = audit.parse_filter(dict(request.query_params))
    org = scoped_org(session.principal, keep.org)
    require(session.principal, Action.READ_AUDIT, org)
    return audit.AuditFilter(org, keep.flag, keep.actor, keep.kind, keep.since, keep.until)


async def audit_page(request: Request) -> Response:
    session = await current(request)
    keep = _audit_filter(request, session)
    events, truncated = await read_log(api(request, session), keep)
    entries = audit.newest_first((audit.entry(e) for e in events), keep, AUDIT_ROWS)
    rollback = {e.event_id: may(session.principal, target_of_stream(e.stream).action, e.org_id)
                for e in entries if rollbackable(e)}
    return render(request, "audit.html", {"entries": entries, "filter": keep, "kinds": list(audit.KINDS),
                                          "truncated": truncated, "query": keep.query(), "rollback": rollback})


EXPORTS = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


async def audit_export(request: Request) -> Response:
    """The filtered history as the command API exports it: JSON Lines or CSV."""
    session = await current(request)
    keep = _audit_filter(request, session)
    fmt = request.query_params.get("format", "jsonl")
    if fmt not in EXPORTS:
        raise InvalidInput("format", "must be jsonl or csv")
    body = await api(request, session).export({**history_params(keep), "format": fmt})
    return Response(body, media_type=EXPORTS[fmt],
                    headers={"Content-Disposition": f'attachment; filename="flag-audit.{fmt}"'})


async def audit_diff(request: Request) -> Response:
    """What changed for one org between two instants (`GET /v1/audit/diff`)."""
    session = await current(request)
    params = request.query_params
    org = scoped_org(session.principal, org_id(params.get("org")))
    context: dict[str, Any] = {"org": org or "", "since": params.get("from", ""), "until": params.get("to", ""),
                               "changes": None}
    if not (org and context["since"] and context["until"]):
        return render(request, "diff.html", context)
    require(session.principal, Action.READ_AUDIT, org)
    since = audit.parse_instant(context["since"], "from")
    until = audit.parse_instant(context["until"], "to")
    answer = await api(request, session).diff(org=org, since=since.isoformat(), until=until.isoformat())
    context["changes"] = answer["changes"]
    return render(request, "diff.html", context)


def _sse(event: str, html: str) -> str:
    data = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {event}\n{data}\n"


async def audit_live(request: Request) -> Response:
    """New entries as server-sent events of rendered rows, for as long as the session lasts."""
    session = await current(request)
    keep = _audit_filter(request, session)
    wiring = wired(request)
    broadcaster = wiring.broadcaster
    lasts = float(wiring.settings.console_idle_seconds)
    row = templates.get_template("_entry.html")

    async def stream() -> Any:
        queue = broadcaster.subscribe()
        try:
            yield ": connected\n\n"
            deadline = asyncio.get_running_loop().time() + lasts
            while asyncio.get_running_loop().time() < deadline:
                try:
                    envelope = await asyncio.wait_for(queue.get(), HEARTBEAT)
                except TimeoutError:
                    yield ": still here\n\n"
                    continue
                # the API's rule for GET /v1/events: an org's log to those who may read it,
                # catalogue changes (no org) to system-wide roles only
                if not may(session.principal, Action.READ_AUDIT, envelope.get("org_id")):
                    continue
                entry = audit.entry(envelope)
                if keep.keeps(entry):
                    undo = rollbackable(entry) and may(session.principal, target_of_stream(entry.stream).action,
                                                       entry.org_id)
                    yield _sse("entry", row.render(e=entry, live=True, rollback={entry.event_id: undo}))
        finally:
            broadcaster.unsubscribe(queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# --- status -----------------------------------------------------------------------------------------------


async def status(request: Request) -> Response:
    session = await current(request)
    client = api(request, session)
    wiring = wired(request)
    feed = wiring.feed
    readiness, projector_lag = await asyncio.gather(client.readiness(), _lag(feed))
    delays = median_and_p99(list(wiring.broadcaster.delays))
    context: dict[str, Any] = {"readiness": readiness, "projector_lag": projector_lag, "delays": delays,
                               "live": feed is not None and feed.ready.is_set(), "recent": None, "charts": [],
                               "upcoming": None, "stale": None}
    org = session.org_id
    if not may(session.principal, Action.READ_AUDIT, org):
        return render(request, "status.html", context)
    context["upcoming"] = await _upcoming(client, org)
    context["stale"] = (await client.stale_flags())["flags"] if org is None else None
    events, _ = await read_log(client, audit.AuditFilter(org=org))
    entries = [audit.entry(e) for e in events if e.get("flag_key")]
    context["recent"] = sorted(entries, key=lambda e: e.sequence, reverse=True)[:10]
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [now - timedelta(hours=h) for h in range(23, -1, -1)]
    per_hour = Counter(e.occurred_at.replace(minute=0, second=0, microsecond=0) for e in entries)
    context["charts"] = [
        charts.bar_chart("Changes per hour, last 24 hours (UTC)", [(h.strftime("%H"), per_hour[h]) for h in hours]),
        charts.bar_chart("Changes by kind, all time", sorted(Counter(_kind(e.type) for e in entries).items())),
    ]
    context["charts"] += await _usage(client, org)
    if delays:
        context["charts"].append(charts.bar_chart(
            "Commit → topic → console delay (ms), live events",
            [("p50", round(delays[0] * 1000)), ("p99", round(delays[1] * 1000))], width=240, unit=" ms"))
    return render(request, "status.html", context)


async def _upcoming(client: Api, org: str | None) -> list[dict[str, Any]]:
    """Scheduled steps still to come: the org's (query service), or every system default's (the catalogue)."""
    if org is not None:
        return list((await client.schedules(org))["steps"])[:20]
    now = datetime.now(UTC).isoformat()
    steps = [{"flag_key": f["key"], "level": "system", **step}
             for f in await client.catalog() for step in ((f.get("system") or {}).get("schedule") or ())]
    return sorted((s for s in steps if str(s.get("at", "")) >= now[:19]), key=lambda s: str(s["at"]))[:20]


async def _usage(client: Api, org: str | None) -> list[str]:
    """The evaluation charts, or a note when the counts cannot be read (Redis down): the rest of the page stands."""
    try:
        return usage_charts(await client.usage(org, minutes=USAGE_MINUTES))
    except ApiError as exc:
        if exc.status != 503:
            raise
        return [f'<p class="empty">Evaluation counts are unavailable: {escape(exc.detail)}.</p>']


def usage_charts(usage: dict[str, Any], *, top: int = 4) -> list[str]:
    """Evaluations per minute: all flags together, then the `top` most evaluated flags one chart each."""
    labels = [str(m)[11:16] for m in usage["minutes"]]
    flags = usage["flags"]
    if not flags:
        return [charts.bar_chart(f"Evaluations per minute, last {len(labels)} minutes (UTC)", [])]
    total = [sum(column) for column in zip(*(f["counts"] for f in flags), strict=True)]
    drawn = [charts.bar_chart(f"Evaluations per minute, all flags, last {len(labels)} minutes (UTC)",
                              list(zip(labels, total, strict=True)))]
    drawn += [charts.bar_chart(f"Evaluations per minute: {f['flag_key']} ({f['total']} in all)",
                               list(zip(labels, f["counts"], strict=True)), height=120) for f in flags[:top]]
    return drawn


def _kind(event_type: str) -> str:
    return next((kind for kind, types in audit.KINDS.items() if event_type in types), "other")


async def _lag(feed: LiveFeed | None) -> int | None:
    return None if feed is None else await feed.projector_lag()


routes = [
    Route("/", home),
    Route("/flags", flags),
    Route("/flags/{flag}", flag_page),
    Route("/orgs", orgs),
    Route("/orgs/{org}", org_page),
    Route("/explain", explain),
    Route("/change", change_form),
    Route("/audit", audit_page),
    Route("/audit/export", audit_export),
    Route("/audit/live", audit_live),
    Route("/audit/diff", audit_diff),
    Route("/status", status),
]
