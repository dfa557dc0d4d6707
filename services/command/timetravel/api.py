"""`GET /v1/audit/at` and `GET /v1/audit/diff`: time travel over HTTP, read-only.

The org comes from the key for an org-scoped caller (naming another org is the same
403 as everywhere); a system-wide auditor or admin names it. Every answer names the
event that decided it (`decided_by`), so an auditor can follow it into the history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from events import Platform
from events.vocabulary import FLAG_KEY_PATTERN, MAX_FLAG_KEY, ORG_ID_PATTERN, USER_ID_PATTERN
from flagcore import EventRef
from flagcore.history import FlagView
from services.auth.http import Caller
from services.auth.policy import Action, Principal, authorize
from services.command.dependencies import Travel
from services.command.schemas import ErrorBody
from services.command.timetravel.errors import OrgRequired
from services.command.timetravel.service import Asked

router = APIRouter(
    prefix="/v1/audit",
    tags=["audit"],
    responses={
        404: {"model": ErrorBody, "description": "Unknown org, or a flag not defined at that instant."},
        422: {"model": ErrorBody, "description": "Malformed or future instant; `field` names it."},
        503: {"model": ErrorBody, "description": "PostgreSQL unavailable."},
    },
)

Org = Annotated[str | None, Query(pattern=ORG_ID_PATTERN, description="The org; defaults to the key's own.")]
PlatformQ = Annotated[Platform | None, Query(description="Evaluate as this ad platform.")]
UserQ = Annotated[str | None, Query(pattern=USER_ID_PATTERN, description="Evaluate for this user.")]
Instant = Annotated[AwareDatetime, Query(description="RFC 3339 with an offset, e.g. 2026-11-01T12:00:00Z.")]


@router.get("/at", summary="An org's flags as they evaluated at an instant, and which event decided each")
async def at(
    travel: Travel,
    caller: Caller,
    at: Instant,
    org: Org = None,
    flag: Annotated[str | None, Query(min_length=1, max_length=MAX_FLAG_KEY, pattern=FLAG_KEY_PATTERN)] = None,
    platform: PlatformQ = None,
    user: UserQ = None,
) -> Any:
    asked = _asked(caller, org, platform, user)
    views = await travel.at(asked, at, flag)
    return {**_who(asked), "at": _iso(at), "flags": [_view(k, v) for k, v in views.items()]}


@router.get("/diff", summary="What changed for an org between two instants")
async def diff(
    travel: Travel,
    caller: Caller,
    since: Annotated[AwareDatetime, Query(alias="from", description="The earlier instant (RFC 3339).")],
    until: Annotated[AwareDatetime, Query(alias="to", description="The later instant (RFC 3339).")],
    org: Org = None,
    platform: PlatformQ = None,
    user: UserQ = None,
) -> Any:
    asked = _asked(caller, org, platform, user)
    changes = await travel.diff(asked, since, until)
    return {
        **_who(asked),
        "from": _iso(since),
        "to": _iso(until),
        "changes": [
            {"flag_key": k, "before": b and _view(k, b), "after": a and _view(k, a)} for k, b, a in changes
        ],
    }


def _asked(caller: Principal, org: str | None, platform: Platform | None, user: str | None) -> Asked:
    org = org or caller.org_id
    authorize(caller, Action.READ_AUDIT, org_id=org)
    if org is None:
        raise OrgRequired()
    return Asked(org, platform.value if platform else None, user)


def _who(asked: Asked) -> dict[str, Any]:
    return {"org_id": asked.org_id, "platform": asked.platform, "user_id": asked.user_id}


def _view(key: str, view: FlagView) -> dict[str, Any]:
    e = view.evaluation
    return {
        "flag_key": key,
        "value": e.value,
        "variant": e.variant,
        "reason": e.reason.value,
        "level": e.level.value if e.level else None,
        "rollout_percentage": e.rollout_percentage,
        "bucket": e.bucket,
        "decided_by": _ref(e.source),
        "explanation": e.explain(),
        "settings": {
            name: {**s.to_value(), "set_by": _ref(s.source)} for name, s in sorted(view.settings.items())
        },
    }


def _ref(ref: EventRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {
        "event_id": ref.event_id,
        "stream": ref.stream,
        "version": ref.version,
        "actor": ref.actor,
        "reason": ref.reason,
        "occurred_at": _iso(ref.occurred_at),
    }


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
