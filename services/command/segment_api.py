"""The segment routes of the command API: define, change, archive, read, and which flags use a segment.

`/v1/segments…` are the system-wide segments (system admins manage them, as flag definitions; every key
reads them, as the catalogue); `/v1/orgs/{org}/segments…` one org's (its org admins manage them, as its
overrides; its auditors and admins read them; a system admin any org's). A key naming another org gets the
one uniform 403, before any lookup. Writes answer as the flag routes do: 201 with what was written, 200
with `changed: false` when nothing was. An archive is refused with 409 `segment_in_use` while any flag's
rules name the segment, naming them; `GET …/{key}/flags` lists them (among the rules the caller may read).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from events import SegmentArchived, SegmentChange
from events.targeting import SEGMENT_KEY_PATTERN
from services.auth.http import Caller
from services.auth.policy import Action, Principal, authorize
from services.command.dependencies import Segments, Wired
from services.command.errors import UnknownSegment
from services.command.ports import SegmentStore
from services.command.routing import OrgPath, error_responses, event_summary
from services.command.schemas import ChangeResult
from services.command.segments import (
    ArchiveSegmentRequest,
    ChangeSegmentRequest,
    DefineSegmentRequest,
    SegmentView,
    changed,
    defined,
)

__all__ = ["router"]

SegmentPath = Annotated[str, Path(pattern=SEGMENT_KEY_PATTERN, description="The segment's key.")]

_ERRORS = error_responses(
    {
        400: "Malformed JSON.",
        401: "No usable API key.",
        403: "This key may not manage (or read) that org's segments.",
        404: "No such segment (`unknown_segment`).",
        409: "Version conflict; the segment exists already or is archived; or (`segment_in_use`) flags name it.",
        413: "Body too large.",
        415: "Body is not application/json.",
        422: "Invalid request; `field` names the culprit.",
        503: "PostgreSQL unavailable.",
    }
)

router = APIRouter(prefix="/v1", tags=["segments"], responses=_ERRORS)


# --- the use cases, for one scope (org None: system-wide) ------------------------------------


def _may_manage(caller: Principal, org: str | None) -> None:
    if org is None:
        authorize(caller, Action.MANAGE_FLAGS)
    else:
        authorize(caller, Action.CHANGE_OVERRIDES, org_id=org)


def _may_read(caller: Principal, org: str | None) -> None:
    if org is None:
        authorize(caller, Action.READ_CATALOG)
    else:
        authorize(caller, Action.READ_AUDIT, org_id=org)


async def _define(
    body: DefineSegmentRequest, org: str | None, caller: Principal, store: SegmentStore, wiring: Wired
) -> ChangeResult:
    _may_manage(caller, org)
    change = defined(body, org)
    return await _write(store, wiring, caller, change, body.reason, None)


async def _change(
    org: str | None, key: str, body: ChangeSegmentRequest, caller: Principal, store: SegmentStore, wiring: Wired,
    response: Response,
) -> ChangeResult:  # fmt: skip
    _may_manage(caller, org)
    current = await _found(store, org, key)
    change = changed(current, body)
    if change is None:
        response.status_code = 200
        return ChangeResult(changed=False, stream=current.stream, version=current.version, events=[])
    expected = current.version if body.expected_version is None else body.expected_version
    return await _write(store, wiring, caller, change, body.reason, expected)


async def _archive(
    org: str | None, key: str, body: ArchiveSegmentRequest, caller: Principal, store: SegmentStore, wiring: Wired,
    response: Response,
) -> ChangeResult:  # fmt: skip
    _may_manage(caller, org)
    current = await _found(store, org, key)
    if current.archived:  # archiving twice changes nothing
        response.status_code = 200
        return ChangeResult(changed=False, stream=current.stream, version=current.version, events=[])
    expected = current.version if body.expected_version is None else body.expected_version
    change = SegmentArchived(segment_key=key, org_id=org)
    return await _write(store, wiring, caller, change, body.reason, expected)


async def _write(
    store: SegmentStore, wiring: Wired, caller: Principal, change: SegmentChange, reason: str, expected: int | None
) -> ChangeResult:
    envelope = await store.append(change, expected_version=expected, actor=caller.actor, reason=reason,
                                  now=wiring.clock())  # fmt: skip
    return ChangeResult(
        changed=True, stream=envelope.stream, version=envelope.version, events=[event_summary(envelope)]
    )


async def _found(store: SegmentStore, org: str | None, key: str) -> SegmentView:
    found = await store.get(org, key)
    if found is None:
        raise UnknownSegment(key)
    return found


async def _list(org: str | None, caller: Principal, store: SegmentStore) -> dict[str, Any]:
    _may_read(caller, org)
    return {"org_id": org, "segments": [s.shown() for s in await store.of_scope(org)]}


async def _get(org: str | None, key: str, caller: Principal, store: SegmentStore) -> dict[str, Any]:
    _may_read(caller, org)
    return (await _found(store, org, key)).shown()


async def _flags(org: str | None, key: str, caller: Principal, store: SegmentStore) -> dict[str, Any]:
    _may_read(caller, org)
    found = await _found(store, org, key)
    used = await store.uses(org, key)
    return {"segment": found.key, "org_id": org, "flags": [u.shown() for u in used]}


# --- the routes: system-wide ------------------------------------------------------------------

_WRITE: dict[str, Any] = {"status_code": 201, "response_model": ChangeResult}


@router.post("/segments", summary="Define a system-wide segment", **_WRITE)
async def define_system_segment(
    body: DefineSegmentRequest, caller: Caller, store: Segments, wiring: Wired
) -> ChangeResult:
    return await _define(body, None, caller, store, wiring)


@router.get("/segments", summary="List the system-wide segments (archived ones too)")
async def list_system_segments(caller: Caller, store: Segments) -> dict[str, Any]:
    return await _list(None, caller, store)


@router.get("/segments/{segment_key}", summary="One system-wide segment")
async def get_system_segment(segment_key: SegmentPath, caller: Caller, store: Segments) -> dict[str, Any]:
    return await _get(None, segment_key, caller, store)


@router.patch("/segments/{segment_key}", summary="Change a system-wide segment", **_WRITE)
async def change_system_segment(
    segment_key: SegmentPath, body: ChangeSegmentRequest, caller: Caller, store: Segments, wiring: Wired,
    response: Response,
) -> ChangeResult:  # fmt: skip
    return await _change(None, segment_key, body, caller, store, wiring, response)


@router.post("/segments/{segment_key}/archive", summary="Archive a system-wide segment no flag uses", **_WRITE)
async def archive_system_segment(
    segment_key: SegmentPath, body: ArchiveSegmentRequest, caller: Caller, store: Segments, wiring: Wired,
    response: Response,
) -> ChangeResult:  # fmt: skip
    return await _archive(None, segment_key, body, caller, store, wiring, response)


@router.get("/segments/{segment_key}/flags", summary="The flags whose rules name a system-wide segment")
async def system_segment_flags(segment_key: SegmentPath, caller: Caller, store: Segments) -> dict[str, Any]:
    return await _flags(None, segment_key, caller, store)


# --- the routes: one org's --------------------------------------------------------------------


@router.post("/orgs/{org}/segments", summary="Define an org's segment", **_WRITE)
async def define_org_segment(
    org: OrgPath, body: DefineSegmentRequest, caller: Caller, store: Segments, wiring: Wired
) -> ChangeResult:
    return await _define(body, org, caller, store, wiring)


@router.get("/orgs/{org}/segments", summary="List an org's own segments (archived ones too)")
async def list_org_segments(org: OrgPath, caller: Caller, store: Segments) -> dict[str, Any]:
    return await _list(org, caller, store)


@router.get("/orgs/{org}/segments/{segment_key}", summary="One of an org's segments")
async def get_org_segment(org: OrgPath, segment_key: SegmentPath, caller: Caller, store: Segments) -> dict[str, Any]:
    return await _get(org, segment_key, caller, store)


@router.patch("/orgs/{org}/segments/{segment_key}", summary="Change an org's segment", **_WRITE)
async def change_org_segment(
    org: OrgPath, segment_key: SegmentPath, body: ChangeSegmentRequest, caller: Caller, store: Segments,
    wiring: Wired, response: Response,
) -> ChangeResult:  # fmt: skip
    return await _change(org, segment_key, body, caller, store, wiring, response)


@router.post("/orgs/{org}/segments/{segment_key}/archive", summary="Archive an org's segment no flag uses", **_WRITE)
async def archive_org_segment(
    org: OrgPath, segment_key: SegmentPath, body: ArchiveSegmentRequest, caller: Caller, store: Segments,
    wiring: Wired, response: Response,
) -> ChangeResult:  # fmt: skip
    return await _archive(org, segment_key, body, caller, store, wiring, response)


@router.get("/orgs/{org}/segments/{segment_key}/flags", summary="The flags whose rules name an org's segment")
async def org_segment_flags(org: OrgPath, segment_key: SegmentPath, caller: Caller, store: Segments) -> dict[str, Any]:
    return await _flags(org, segment_key, caller, store)
