"""The two steps of every change: preview (previous → new, nothing sent) and apply (sent with the
expected version). A 409 shows what the other person did and offers the user's change again on top.
Rolling back one change from the audit log takes the same two steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from events.scope import definition_stream
from services.console import audit
from services.console.access import Action, require
from services.console.audit import AuditFilter
from services.console.changes import (
    DefinitionEdit,
    InvalidInput,
    SettingChange,
    describe,
    parse_definition_edit,
    parse_setting_change,
    parse_target,
)
from services.console.history import changes_since, read_log
from services.console.operations import (
    ArchiveFlag,
    DefineFlag,
    KillSwitch,
    ScheduleStep,
    parse_archive_flag,
    parse_define_flag,
    parse_kill_switch,
    parse_rollback,
    parse_schedule_step,
)
from services.console.ports import Api, ApiError, Session
from services.console.web import api, changing, current, render, safe_return

Change = SettingChange | DefinitionEdit | KillSwitch | ScheduleStep | DefineFlag | ArchiveFlag
WHAT = {SettingChange: "setting", DefinitionEdit: "definition", KillSwitch: "kill", ScheduleStep: "schedule",
        DefineFlag: "define", ArchiveFlag: "archive"}
CATALOGUE: dict[str, Callable[[dict[str, str], Any], Change]] = {
    "definition": parse_definition_edit,
    "kill": lambda form, _: parse_kill_switch(form),
    "define": lambda form, _: parse_define_flag(form),
    "archive": lambda form, _: parse_archive_flag(form),
}


async def _parse(client: Api, session: Session, form: dict[str, str]) -> tuple[Change, dict[str, Any]]:
    """The change the form describes, once the role may make it, and the head of its stream now."""
    what = form.get("what", "setting")
    if what in CATALOGUE:  # the flag's definition stream
        require(session.principal, Action.MANAGE_FLAGS)
        key = parse_target({"flag": form.get("flag", ""), "level": "system"}).flag_key  # validated
        head = await client.stream(definition_stream(key))
        return CATALOGUE[what](form, head["value"]), head
    if what not in ("setting", "schedule"):
        raise InvalidInput("what", f"must be one of setting, schedule, {', '.join(CATALOGUE)}")
    change: SettingChange | ScheduleStep = (
        parse_setting_change(form) if what == "setting" else parse_schedule_step(form)
    )
    require(session.principal, change.action, change.target.org_id)
    return change, await client.stream(change.stream)


def _org(change: Change) -> str | None:
    return change.target.org_id if isinstance(change, SettingChange | ScheduleStep) else None


def _flag(change: Change) -> str:
    return change.target.flag_key if isinstance(change, SettingChange | ScheduleStep) else change.flag_key


def _what(change: Change) -> str:
    return WHAT[type(change)]


async def _conflict(request: Request, client: Api, change: Change, head: dict[str, Any], return_to: str
                    ) -> Response:
    others = await changes_since(client, stream=change.stream, org=_org(change), flag=_flag(change),
                                 version=change.expected_version)
    redo = {**change.fields(), "expected_version": str(head["version"]), "what": _what(change),
            "return_to": return_to}
    return render(request, "conflict.html", {
        "change": change, "entries": [audit.entry(e) for e in others], "head": head,
        "rows": change.rows(head["value"]), "redo": redo,
    }, status=409)


async def preview(request: Request) -> Response:
    session, form = await changing(request)
    client = api(request, session)
    change, head = await _parse(client, session, form)
    return_to = safe_return(form.get("return_to"), "")
    if int(head["version"]) != change.expected_version:
        return await _conflict(request, client, change, head, return_to)
    rows = change.rows(head["value"])
    if all(before == after for _, before, after in rows):
        raise InvalidInput("state", f"nothing to change: it is already {rows[0][1]}")
    hidden = {**change.fields(), "what": _what(change), "return_to": return_to}
    return render(request, "confirm.html", {"change": change, "rows": rows, "hidden": hidden})


async def apply(request: Request) -> Response:
    session, form = await changing(request)
    client = api(request, session)
    change, head = await _parse(client, session, form)
    return_to = safe_return(form.get("return_to"), "")
    try:
        result = await client.change(change.method, change.path, change.body())
    except ApiError as exc:
        if exc.status != 409 or exc.code != "version_conflict":
            raise
        now = await client.stream(change.stream)
        return await _conflict(request, client, change, now, return_to)
    return render(request, "done.html", {"change": change, "result": result, "return_to": return_to,
                                         "rows": change.rows(head["value"]), "flag": _flag(change),
                                         "org": _org(change)})


# --- rollback of one change (the command API's rollback routes) -----------------------------------------------


async def rollback_form(request: Request) -> Response:
    """What undoing this change restores, current → restored, with a reason to give; nothing sent yet."""
    session = await current(request)
    undo = parse_rollback(dict(request.query_params), reason_required=False)
    require(session.principal, undo.action, undo.target.org_id)
    client = api(request, session)
    head = await client.stream(undo.stream)
    events, _ = await read_log(client, AuditFilter(org=undo.target.org_id, flag=undo.target.flag_key))
    undone = next((e for e in events if e["stream"] == undo.stream and int(e["version"]) == undo.version), None)
    if undone is None:
        raise InvalidInput("version", f"no version {undo.version} in {undo.stream}")
    return render(request, "rollback.html", {
        "undo": undo, "entry": audit.entry(undone), "head": head,
        "rows": [(undo.target.label, describe(head["value"]), describe(undone["previous"]))],
    })


async def rollback_apply(request: Request) -> Response:
    session, form = await changing(request)
    undo = parse_rollback(form)
    require(session.principal, undo.action, undo.target.org_id)
    try:
        result = await api(request, session).change(undo.method, undo.path, undo.body())
    except ApiError as exc:
        if exc.status != 409:
            raise
        raise ApiError(409, {"error": "conflict", "detail": "someone changed it while you looked: open the audit "
                             "log again and undo from there", "field": "version"}) from exc
    streams = result.get("streams") or [{"stream": result["stream"], "version": result["version"],
                                         "value": None, "changed": result["changed"], "events": result["events"]}]
    return render(request, "rolled_back.html", {"undo": undo, "streams": streams})


routes = [
    Route("/change/preview", preview, methods=["POST"]),
    Route("/change/apply", apply, methods=["POST"]),
    Route("/rollback", rollback_form, methods=["GET"]),
    Route("/rollback/apply", rollback_apply, methods=["POST"]),
]
