"""The audit routes of the command API: history (paged, or exported as JSON Lines / CSV) and rollback.

History reads the event store — every event ever accepted, the same bytes as on
Kafka — through `eventstore.audit_reads`; who may read what is `Action.READ_AUDIT`: an
org-scoped key (org admin, auditor) sees its own org's events, and with
`catalog=true` the definitions and system defaults every org sees, never
another org's.
Rollback is a write: it appends ordinary changes through the command service
(`rollback`), as the caller, with the reason "rollback to <target>: <reason>".
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from events import ForeignRecordAcknowledged, Platform, Scope, definition_stream
from events.changes import rules_stream
from events.fields import FlagKey, UserId
from events.log_records import SHA256_PATTERN
from events.vocabulary import ORG_ID_PATTERN
from services.auth.http import Caller
from services.auth.policy import Action, Forbidden, Principal, authorize
from services.command.dependencies import Audit, Service, Wired
from services.command.errors import InvalidCommand, UnknownFlag
from services.command.history import (
    Cursor,
    HistoryFilter,
    HistoryLevel,
    InvalidCursor,
    csv_lines,
    entry,
    parse_instant,
    rules_scope,
    setting_scope,
)
from services.command.ports import AuditTrail
from services.command.rollback import RollbackTarget, StreamRollback, rollback, rollback_reason
from services.command.routing import FlagKeyPath, FlagKeyQuery, error_responses, event_summary
from services.command.schemas import EventSummary, Reason
from services.command.service import CommandService, utc_now
from services.http import HTTPProblem, problem

__all__ = ["router"]

EXPORT_BATCH = 500
JSONL = "application/x-ndjson"
_FORMATS = {"application/x-ndjson": "jsonl", "application/jsonl": "jsonl", "text/csv": "csv"}

_ERRORS = error_responses(
    {
        403: "This key may not read or change that org.",
        404: "Unknown org (`unknown_org`) or flag (`unknown_flag`).",
        409: "A change landed on a stream while it was being rolled back.",
        422: "Invalid request; `field` names the culprit (a malformed or future instant, a missing version…).",
        503: "PostgreSQL unavailable.",
    }
)

router = APIRouter(prefix="/v1", tags=["audit"], responses=_ERRORS)


def _instant(text: str | None, field: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_instant(text, now=utc_now())
    except ValueError as exc:
        raise InvalidCommand(f"{field}: {exc}", field=field) from None


# --- history ------------------------------------------------------------------------


@router.get(
    "/history",
    summary="Who changed what, when, why: previous → new",
    response_description=(
        '`{"entries": [...], "next_cursor", "has_more"}`; with `format=jsonl|csv` (or that `Accept`), '
        "every matching event from the cursor on, streamed."
    ),
)
async def history(
    request: Request,
    audit: Audit,
    caller: Caller,
    org: Annotated[str | None, Query(pattern=ORG_ID_PATTERN, description="Only this org's events.")] = None,
    catalog: Annotated[
        bool, Query(description="With `org`: also the definitions and system defaults every org sees.")
    ] = False,
    flag: FlagKeyQuery = None,
    actor: Annotated[str | None, Query(min_length=1, max_length=200, description="Actor id or name.")] = None,
    level: Annotated[list[HistoryLevel], Query(description="Repeat to allow several.")] = [],  # noqa: B006
    type: Annotated[list[str], Query(description="Event type, e.g. `OrgOverrideSet`; repeat to allow several.")] = [],  # noqa: B006
    since: Annotated[str | None, Query(description="RFC 3339; events at or after it.")] = None,
    until: Annotated[str | None, Query(description="RFC 3339, not in the future; events before it.")] = None,
    cursor: Annotated[str | None, Query(max_length=64, description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size (JSON only).")] = 100,
    format: Annotated[
        Literal["json", "jsonl", "csv"] | None, Query(description="Overrides the `Accept` header.")
    ] = None,
) -> Response:
    if caller.org_id is not None:
        org = org or caller.org_id  # an org-scoped key reads its own org's trail
    authorize(caller, Action.READ_AUDIT, org_id=org)
    for name in type:
        if not name.isascii() or not name.isalpha() or len(name) > 64:
            raise InvalidCommand(f"type: {name!r} is not an event type", field="type")
    wanted = HistoryFilter(
        org=org,
        catalog=catalog,
        flag=flag,
        actor=actor,
        levels=tuple(level),
        types=tuple(type),
        since=_instant(since, "since"),
        until=_instant(until, "until"),
    )
    if wanted.since and wanted.until and wanted.since >= wanted.until:
        raise InvalidCommand("since: must be before until", field="since")
    try:
        after = Cursor.decode(cursor) if cursor else None
    except InvalidCursor as exc:
        raise InvalidCommand(f"cursor: {exc}", field="cursor") from None
    chosen = format or _FORMATS.get(request.headers.get("accept", "").split(",")[0].split(";")[0].strip(), "json")
    if chosen == "json":
        rows = await audit.page(wanted, after=after, limit=limit)
        last = rows[-1][0] if rows else after
        return JSONResponse(
            {
                "entries": [entry(body) for _, body in rows],
                "next_cursor": last.encode() if last else None,
                "has_more": len(rows) == limit,
            }
        )
    horizon = await audit.horizon()  # pinned, so the export ends
    first = await audit.page(wanted, after=after, limit=EXPORT_BATCH, horizon=horizon)
    media = JSONL if chosen == "jsonl" else "text/csv; charset=utf-8"
    return StreamingResponse(
        _export(audit, wanted, first, horizon, csv=chosen == "csv"),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="history.{chosen}"'},
    )


async def _export(
    audit: AuditTrail, wanted: HistoryFilter, rows: list[tuple[Cursor, bytes]], horizon: int, *, csv: bool
) -> AsyncIterator[bytes]:
    """Page by page up to the pinned horizon; the first page was read before the answer started."""
    header = csv
    while True:
        entries = [entry(body) for _, body in rows]
        if csv:
            yield csv_lines(entries, header=header).encode()
            header = False
        else:
            yield b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in entries)
        if len(rows) < EXPORT_BATCH:
            return
        rows = await audit.page(wanted, after=rows[-1][0], limit=EXPORT_BATCH, horizon=horizon)


# --- rollback -----------------------------------------------------------------------

RollbackReason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=440, pattern=r"^[^\x00]*$"),
    Field(description='Why; recorded as "rollback to <target>: <reason>".'),
]


class RollbackRequest(BaseModel):
    """Exactly one of `at` (an RFC 3339 instant, not in the future) and `version`."""

    model_config = ConfigDict(extra="forbid")
    at: str | None = Field(default=None, max_length=64, description="Restore the values as of this instant.")
    version: StrictInt | None = Field(
        default=None, ge=1, le=2**31 - 1, description="Restore the value the stream had right after this version."
    )
    reason: RollbackReason


class FlagRollbackRequest(RollbackRequest):
    """`at`: the definition and the system default. `version`: the system default's, or the definition's."""

    definition: bool = Field(default=False, description="With `version`: a version of the definition's stream.")


class OrgRollbackRequest(RollbackRequest):
    """No `flag_key`: every flag of the org (`at` only). `platform` or `user_id`: that one stream."""

    flag_key: FlagKey | None = None
    platform: Platform | None = None
    user_id: UserId | None = None


class RestoredStream(BaseModel):
    stream: str
    restored_version: int = Field(description="The version whose value was restored (0: the stream was empty).")
    value: dict[str, Any] | None = Field(description="The value in force at the target.")
    changed: bool
    version: int = Field(description="The stream's version now.")
    events: list[EventSummary]


class RollbackResult(BaseModel):
    target: str
    reason: str
    changed: bool
    streams: list[RestoredStream]


def _target(body: RollbackRequest) -> RollbackTarget:
    if (body.at is None) == (body.version is None):
        raise InvalidCommand("give exactly one of `at` (an instant) and `version`", field="at")
    if body.version is not None:
        return RollbackTarget(version=body.version)
    return RollbackTarget(at=_instant(body.at, "at"))


async def _live_flag(service: CommandService, flag_key: str) -> None:
    definition = (await service.stream_head(definition_stream(flag_key))).value
    if definition is None or definition.get("archived"):
        raise UnknownFlag(flag_key, archived=definition is not None)


def _answer(target: RollbackTarget, reason: str, done: list[StreamRollback], response: Response) -> RollbackResult:
    streams = [
        RestoredStream(
            stream=d.stream,
            restored_version=d.goal_version,
            value=d.value,
            changed=d.changed,
            version=d.version,
            events=[event_summary(e) for e in d.events],
        )
        for d in done
    ]
    changed = any(s.changed for s in streams)
    response.status_code = 201 if changed else 200
    return RollbackResult(target=target.label, reason=rollback_reason(target, reason), changed=changed, streams=streams)


async def _run(
    service: CommandService,
    audit: AuditTrail,
    streams: list[str],
    target: RollbackTarget,
    body: RollbackRequest,
    caller: Principal,
    response: Response,
) -> RollbackResult:
    done = await rollback(service, audit, streams, target, reason=body.reason, actor=caller.actor)
    return _answer(target, body.reason, done, response)


@router.post(
    "/orgs/{org_id}/rollback",
    status_code=201,
    response_model=RollbackResult,
    summary="Restore an org's overrides (one flag, or all) as of an instant or a version",
)
async def rollback_org(
    org_id: Annotated[str, Path(pattern=ORG_ID_PATTERN)],
    body: OrgRollbackRequest,
    service: Service,
    audit: Audit,
    caller: Caller,
    response: Response,
) -> RollbackResult:
    authorize(caller, Action.CHANGE_OVERRIDES, org_id=org_id)
    target = _target(body)
    if body.platform is not None and body.user_id is not None:
        raise InvalidCommand("give platform or user_id, not both", field="user_id")
    one_stream = body.platform is not None or body.user_id is not None or body.version is not None
    if one_stream and body.flag_key is None:
        field = "version" if body.version is not None else "flag_key"
        raise InvalidCommand("a version, platform or user names one stream: give flag_key too", field=field)
    if not await audit.org_known(org_id):
        raise HTTPProblem(problem(404, "unknown_org", f"nothing was ever recorded for org {org_id!r}", field="org_id"))
    if body.flag_key is not None:
        await _live_flag(service, body.flag_key)
    if one_stream:
        assert body.flag_key is not None
        if body.platform is not None:
            scope = Scope.for_platform(org_id, body.platform)
        elif body.user_id is not None:
            scope = Scope.user(org_id, body.user_id)
        else:
            scope = Scope.org(org_id)
        streams = [scope.stream(body.flag_key)]
    else:
        streams = await audit.override_streams(org_id, body.flag_key)
        if body.flag_key is None:
            streams = [s for s in streams if await _is_live(service, s)]
    return await _run(service, audit, streams, target, body, caller, response)


async def _is_live(service: CommandService, stream: str) -> bool:
    """An archived flag takes no changes: an org-wide rollback leaves its overrides as they are."""
    found = rules_scope(stream) or setting_scope(stream)
    flag_key = found[1] if found is not None else stream.rsplit("/", 1)[-1]
    definition = (await service.stream_head(definition_stream(flag_key))).value
    return definition is not None and not definition.get("archived")


@router.post(
    "/flags/{flag_key}/rollback",
    status_code=201,
    response_model=RollbackResult,
    summary="Restore a flag's definition and system default as of an instant, or one of them to a version",
)
async def rollback_system(
    flag_key: FlagKeyPath,
    body: FlagRollbackRequest,
    service: Service,
    audit: Audit,
    caller: Caller,
    response: Response,
) -> RollbackResult:
    authorize(caller, Action.MANAGE_FLAGS)
    target = _target(body)
    if body.definition and body.version is None:
        raise InvalidCommand("definition: only with a version (an instant restores both)", field="definition")
    await _live_flag(service, flag_key)
    definition, system = definition_stream(flag_key), Scope.system().stream(flag_key)
    streams = [definition, system] if body.version is None else [definition if body.definition else system]
    rules = rules_stream(Scope.system(), flag_key)
    if body.version is None and (await service.stream_head(rules)).version:  # the system's rules, once it had any
        streams.append(rules)
    return await _run(service, audit, streams, target, body, caller, response)


class ForeignRecordRequest(BaseModel):
    """A record `flagctl audit verify` reports as foreign: where it is, and the SHA-256 it prints for it."""

    model_config = ConfigDict(extra="forbid")
    partition: StrictInt = Field(ge=0, le=100_000, description="The record's partition of the flag-change topic.")
    offset: StrictInt = Field(ge=0, le=2**63 - 1, description="The record's offset in that partition.")
    sha256: str = Field(pattern=SHA256_PATTERN, description="SHA-256 of the record's value, lowercase hex.")
    reason: Reason


class AcknowledgedRecord(BaseModel):
    stream: str
    event: EventSummary


@router.post(
    "/audit/foreign-records",
    status_code=201,
    response_model=AcknowledgedRecord,
    summary="Acknowledge a foreign record on the log as known (system admins)",
    description=(
        "The verifier then reports that record (same place, same SHA-256) as a warning naming who acknowledged "
        "it and why, instead of failing the log. A record is acknowledged once: again is 409."
    ),
)
async def acknowledge_foreign_record(body: ForeignRecordRequest, caller: Caller, wiring: Wired) -> AcknowledgedRecord:
    authorize(caller, Action.ACKNOWLEDGE_LOG)
    if caller.org_id is not None:
        raise Forbidden("the log is every org's: only a system-wide system admin may acknowledge its records")
    change = ForeignRecordAcknowledged(partition=body.partition, offset=body.offset, sha256=body.sha256)
    envelope = await wiring.log_acknowledgements().acknowledge(
        change, actor=caller.actor, reason=body.reason, now=utc_now()
    )
    return AcknowledgedRecord(stream=envelope.stream, event=event_summary(envelope))
