"""OFREP's two routes on the FastAPI app: they document the protocol in OpenAPI and serve what the fast path passes on.

`services.query.fastpath` answers most OFREP requests before FastAPI routes
them; both end in `services.query.ofrep`, so the answers are the same. The
body is read raw (not as a pydantic model) because OFREP answers a malformed
one with its own `PARSE_ERROR`, not with a 422.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from events import Platform
from events.vocabulary import ORG_ID_PATTERN, USER_ID_PATTERN
from services.auth.http import Caller
from services.query import ofrep
from services.query.dependencies import Evaluations
from services.query.routing import FlagPath
from services.query.schemas import VALUE_DESCRIPTION, TypedValue

__all__ = ["BULK_PATH", "FLAG_PATH", "respond", "router"]

FLAG_PATH = "/ofrep/v1/evaluate/flags/{key}"
BULK_PATH = "/ofrep/v1/evaluate/flags"
JSON = "application/json"


class FlagAnswer(BaseModel):
    key: str = Field(description="The flag key.")
    value: TypedValue = Field(
        description=VALUE_DESCRIPTION + " Left out of a `DEFAULT` answer when the service is configured to defer to "
        "the code's default (`FLAGS_OFREP_CODE_DEFAULTS`: OFREP's codeDefaultFlag)."
    )
    reason: str = Field(
        description="STATIC (the system default decided), TARGETING_MATCH (an org, platform or user override, or a "
        "targeting rule: `metadata.rule`), SPLIT "
        "(a sticky rollout or split of variants), DISABLED (archived, or an ops kill switch) or DEFAULT (no level "
        "sets the flag: its off variant)."
    )
    variant: str = Field(description="The variant served: a typed flag's named one; a boolean's arm, `on` or `off`.")
    metadata: dict[str, bool | int | str] = Field(
        description="`level` that decided, `eventId`, `version`, `stream` and `occurredAt` of the event that set it, "
        "`valueType` (boolean, string, integer, float or object), `rolloutPercentage`, `killSwitch` when an ops "
        "flag's kill switch decided, `rule`: the id of the targeting rule that matched."
    )


class EventStreamEndpoint(BaseModel):
    requestUri: str = Field(description="The stream's path and query, on the origin the provider already speaks to.")


class EventStream(BaseModel):
    type: str = Field(description="`sse`: server-sent events (`GET /ofrep/v1/changes`).")
    endpoint: EventStreamEndpoint


class BulkAnswer(BaseModel):
    flags: list[FlagAnswer] = Field(description="Every flag of the catalogue, in key order.")
    eventStreams: list[EventStream] = Field(
        description="OFREP 0.3: the org's change stream; on each `refetchEvaluation` event, fetch this answer again."
    )


class FlagFailure(BaseModel):
    key: str
    errorCode: str = Field(description="FLAG_NOT_FOUND, PARSE_ERROR, TARGETING_KEY_MISSING, INVALID_CONTEXT, GENERAL.")
    errorDetails: str = Field(description="What is wrong, naming the context attribute.")


class BulkFailure(BaseModel):
    errorCode: str = Field(description="PARSE_ERROR, TARGETING_KEY_MISSING, INVALID_CONTEXT or GENERAL.")
    errorDetails: str


# The evaluation context as OFREP sends it; parsed by `services.query.ofrep`, so described here by hand.
CONTEXT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The evaluation context. Every attribute but these three is read by targeting rules: a name "
    "matching `^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`, a string (at most 1,000 characters), number, boolean or null "
    "(at most 100 attributes); another is refused with 400 INVALID_CONTEXT naming it.",
    "additionalProperties": {"type": ["string", "number", "boolean", "null"], "maxLength": 1000},
    "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"},
    "maxProperties": 103,
    "properties": {
        "targetingKey": {"type": "string", "pattern": USER_ID_PATTERN, "description": "The user."},
        "platform": {"type": "string", "enum": [*Platform], "description": "One of the org's ad platforms."},
        "org": {
            "type": "string",
            "pattern": ORG_ID_PATTERN,
            "description": "The org: required with a system-wide key; an org-scoped key may only name its own.",
        },
    },
}

REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            JSON: {
                "schema": {"type": "object", "properties": {"context": CONTEXT_SCHEMA}},
                "example": {
                    "context": {"targetingKey": "u-1", "platform": "meta", "org": "acme", "plan": "enterprise"}
                },
            }
        },
    }
}



def respond(answer: ofrep.Answer) -> Response:
    headers = None if answer.etag is None else {"ETag": answer.etag}
    if answer.status == 304:
        return Response(status_code=304, headers=headers)
    return Response(answer.body, status_code=answer.status, headers=headers, media_type=JSON)


async def _body(request: Request) -> bytes:
    """At most one byte more than OFREP accepts: enough to refuse the rest unread."""
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > ofrep.MAX_BODY:
            break
    return b"".join(chunks)


router = APIRouter()
FAILURE = {"model": FlagFailure}
BULK_FAILURE = {"model": BulkFailure}


@router.post(
    FLAG_PATH,
    response_model=FlagAnswer,
    responses={
        400: {**FAILURE, "description": "PARSE_ERROR, TARGETING_KEY_MISSING or INVALID_CONTEXT"},
        404: {**FAILURE, "description": "FLAG_NOT_FOUND"},
        413: {**FAILURE, "description": "PARSE_ERROR: the body is too large"},
        503: {**FAILURE, "description": "GENERAL: Postgres is unreachable"},
    },
    openapi_extra=REQUEST_BODY,
    tags=["OFREP"],
    summary="OFREP: evaluate one flag",
)
async def ofrep_evaluate_flag(caller: Caller, evaluator: Evaluations, key: FlagPath, request: Request) -> Response:
    return respond(await ofrep.evaluate_flag(evaluator, caller, key, await _body(request)))


@router.post(
    BULK_PATH,
    response_model=BulkAnswer,
    responses={
        200: {"headers": {"ETag": {"description": "Tag of this answer", "schema": {"type": "string"}}}},
        304: {"description": "The answer is the one whose ETag was sent in If-None-Match"},
        400: {**BULK_FAILURE, "description": "PARSE_ERROR, TARGETING_KEY_MISSING or INVALID_CONTEXT"},
        413: {**BULK_FAILURE, "description": "PARSE_ERROR: the body is too large"},
        503: {**BULK_FAILURE, "description": "GENERAL: Postgres is unreachable"},
    },
    openapi_extra=REQUEST_BODY,
    tags=["OFREP"],
    summary="OFREP: evaluate every flag",
)
async def ofrep_evaluate_flags(
    caller: Caller,
    evaluator: Evaluations,
    request: Request,
    if_none_match: Annotated[str | None, Header(description="ETag of an answer the caller holds")] = None,
) -> Response:
    return respond(await ofrep.evaluate_flags(evaluator, caller, await _body(request), if_none_match))
