"""What every change route shares: path parameters, the error responses, and turning a
command's outcome into HTTP (201 when something was written, 200 when not)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query, Response

from events import Envelope, Platform
from events.vocabulary import FLAG_KEY_PATTERN, FLAG_KEY_RULE, MAX_FLAG_KEY, ORG_ID_PATTERN, USER_ID_PATTERN
from services.auth.policy import Principal
from services.command.commands import UNSET, AnyCommand
from services.command.schemas import ChangeResult, ErrorBody, EventSummary
from services.command.service import CommandService, Outcome

FlagKeyPath = Annotated[
    str,
    Path(min_length=1, max_length=MAX_FLAG_KEY, pattern=FLAG_KEY_PATTERN, description=f"Flag key: {FLAG_KEY_RULE}."),
]
FlagKeyQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_FLAG_KEY, pattern=FLAG_KEY_PATTERN, description="Only this flag."),
]
OrgPath = Annotated[str, Path(pattern=ORG_ID_PATTERN, description="Organisation (tenant) id.")]
UserPath = Annotated[str, Path(pattern=USER_ID_PATTERN, description="User id within the organisation.")]
PlatformPath = Annotated[Platform, Path(description="One of the six ad platforms.")]


def error_responses(texts: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses, each with the one error body every failure answers."""
    return {status: {"model": ErrorBody, "description": text} for status, text in texts.items()}


ERRORS = error_responses(
    {
        400: "Malformed JSON.",
        404: "Unknown or archived flag.",
        409: "Version conflict or invalid transition.",
        413: "Body too large.",
        415: "Body is not application/json.",
        422: "Invalid request; `field` names the culprit.",
        503: "PostgreSQL unavailable.",
    }
)
CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ChangeResult, "description": "Nothing to change: nothing written."},
    **ERRORS,
}


async def run(service: CommandService, command: AnyCommand, response: Response) -> ChangeResult:
    outcome = await service.execute(command)
    response.status_code = 201 if outcome.changed else 200
    return _result(outcome)


def meta(body: Any, caller: Principal) -> dict[str, Any]:
    """Why (from the body) and who (from the key, never from the body)."""
    return {"reason": body.reason, "actor": caller.actor, "expected_version": body.expected_version}


def given(body: Any, name: str) -> Any:
    """The field if the body names it (even as null), else UNSET: "leave as is"."""
    return getattr(body, name) if name in body.model_fields_set else UNSET


def _result(outcome: Outcome) -> ChangeResult:
    return ChangeResult(
        changed=outcome.changed,
        stream=outcome.stream,
        version=outcome.version,
        events=[event_summary(e) for e in outcome.events],
    )


def event_summary(e: Envelope) -> EventSummary:
    return EventSummary(
        event_id=str(e.event_id),
        type=e.type,
        stream=e.stream,
        version=e.version,
        sequence=e.sequence,
        previous=e.previous,
        new=e.new,
    )
