"""What the query service's routes share: path and query parameters, the documented errors, the JSON answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Path, Query
from fastapi.responses import JSONResponse, Response

from events import Platform
from events.vocabulary import FLAG_KEY_RULE, ORG_ID_PATTERN, USER_ID_PATTERN
from services.query.schemas import ErrorOut
from services.query.usage import MAX_MINUTES
from services.query.validation import FLAG_KEY_SCHEMA

ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorOut, "description": "A malformed org id, flag key, platform or user id."},
    503: {"model": ErrorOut, "description": "Postgres is unreachable."},
}

OrgPath = Annotated[
    str, Path(description="Organisation id.", json_schema_extra={"pattern": ORG_ID_PATTERN}, examples=["acme"])
]
FlagPath = Annotated[
    str,
    Path(
        description=f"Flag key, exactly as written: {FLAG_KEY_RULE}.",
        json_schema_extra=FLAG_KEY_SCHEMA,
        examples=["ai.insights.enabled"],
    ),
]
PlatformQuery = Annotated[
    str | None,
    Query(description="Evaluate for one of the org's platforms.", json_schema_extra={"enum": [*Platform]}),
]
MinutesQuery = Annotated[
    int, Query(ge=1, le=MAX_MINUTES, description="The window: this many minutes up to now (1–1440).")
]
ContextQuery = Annotated[
    str | None,
    Query(
        description="Evaluation context for targeting rules, as a JSON object of attribute → string, number, "
        'boolean or null (`context={"plan":"enterprise","seats":40}`). Each `context.NAME=VALUE` parameter '
        "adds one string attribute (`context.email=ana@acme.com`); a name given twice is refused (422).",
        examples=['{"email":"ana@acme.com","seats":40}'],
    ),
]
UserQuery = Annotated[
    str | None,
    Query(description="Evaluate for one user of the org.", json_schema_extra={"pattern": USER_ID_PATTERN}),
]


class JSONBytes(JSONResponse):
    """A JSON response whose body arrives serialised (by orjson): nothing to validate or encode.

    A `JSONResponse` so that OpenAPI documents the route's `response_model` as its body.
    """

    def render(self, content: Any) -> bytes:
        assert isinstance(content, bytes)
        return content


def json_answer(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JSONBytes(body, status_code=status, headers=headers)
