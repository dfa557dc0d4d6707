"""Evaluation contexts as requests bring them: checked once at the edge, then handed to `flagcore` unchanged.

What targeting rules read is a mapping of attribute names to JSON scalars (docs/flag-semantics.md):
here a request's attributes are refused, naming the attribute, when no rule could ever read them
(a name outside `events.targeting.ATTRIBUTE_PATTERN`, a value that is an object or an array, a
number that is not finite, a string over the rule values' length limit), so a typo is a 400, not a
silent miss. OFREP takes every key of its `context` but `targetingKey` (`org` and `platform`
are the call's own, as `flagcore.targeting.attributes` makes them); the native API's GET takes
`context.NAME=VALUE` query parameters (strings) and `context=<JSON object>` (any scalar type), its
POST routes a JSON body `{"platform", "user", "context"}`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from events import Platform
from events.targeting import ATTRIBUTE_PATTERN, MAX_VALUE_LENGTH
from events.vocabulary import USER_ID_PATTERN
from services.query import validation
from services.query.errors import InvalidParameter

__all__ = [
    "BODY_SCHEMA",
    "MAX_ATTRIBUTES",
    "PREFIX",
    "Context",
    "EvaluationBody",
    "attributes",
    "from_body",
    "from_query",
]

Context = Mapping[str, Any] | None  # attribute → JSON scalar; None: no context (the call's own attributes only)

MAX_ATTRIBUTES = 100  # per request: a context is a handful of attributes
PREFIX = "context."
_NAME = re.compile(ATTRIBUTE_PATTERN)
_SCALARS = (str, bool, int, float)


def attributes(
    context: Mapping[str, Any], *, skip: Iterable[str] = (), field: str = "context"
) -> dict[str, Any] | None:
    """`context`'s attributes but `skip`, checked; None when none is left (then nothing is compared)."""
    left = {k: v for k, v in context.items() if k not in skip}
    if not left:
        return None
    if len(left) > MAX_ATTRIBUTES:
        raise InvalidParameter(field, f"{field} holds at most {MAX_ATTRIBUTES} attributes")
    for name, value in left.items():
        _check(name, value, field)
    return left


def from_query(pairs: Iterable[tuple[str, str]]) -> dict[str, Any] | None:
    """The context of a native GET's query parameters: `context.NAME=VALUE` (a string each) and `context={...}`
    (a JSON object, for numbers and booleans; empty: none); a name given twice is refused."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key == "context":
            if not value.strip():
                continue
            for name, item in _json_object(value).items():
                _put(found, name, item, f"context.{name}")
        elif key.startswith(PREFIX):
            name = key[len(PREFIX) :]
            _put(found, name, value, key)
    if not found:
        return None
    return attributes(found)


MAX_BODY = 64 * 1024  # as OFREP's: a context is a handful of attributes
BODY_FIELDS = frozenset({"platform", "user", "context"})
ATTRIBUTES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Attributes targeting rules read: a string (at most 1,000 characters), number, boolean or null "
    f"each, at most {MAX_ATTRIBUTES}; `targeting_key`, `org` and `platform` are the call's own and ignored here.",
    "additionalProperties": {"type": ["string", "number", "boolean", "null"], "maxLength": MAX_VALUE_LENGTH},
    "propertyNames": {"pattern": ATTRIBUTE_PATTERN},
    "maxProperties": MAX_ATTRIBUTES,
}
BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "platform": {"type": ["string", "null"], "enum": [*Platform, None]},
                        "user": {"type": ["string", "null"], "pattern": USER_ID_PATTERN},
                        "context": ATTRIBUTES_SCHEMA,
                    },
                },
                "example": {"user": "u-42", "context": {"email": "ana@acme.com", "seats": 40}},
            }
        },
    }
}


@dataclass(frozen=True, slots=True)
class EvaluationBody:
    """Whom a native POST evaluates for: its platform, user and context."""

    platform: str | None
    user: str | None
    context: Context


def from_body(raw: bytes) -> EvaluationBody:
    """A native POST's JSON body `{"platform"?, "user"?, "context"?}`, checked field by field (none: the org)."""
    if len(raw) > MAX_BODY:
        raise InvalidParameter("body", f"the body is at most {MAX_BODY} bytes")
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise InvalidParameter("body", f"the body must be a JSON object: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidParameter("body", "the body must be a JSON object")
    unknown = sorted(set(body) - BODY_FIELDS)
    if unknown:
        raise InvalidParameter(unknown[0], f"{unknown[0]} is not a field (platform, user, context)")
    platform, user, context = body.get("platform"), body.get("user"), body.get("context")
    for name, value in (("platform", platform), ("user", user)):
        if value is not None and not isinstance(value, str):
            raise InvalidParameter(name, f"{name} must be a string")
    if context is not None and not isinstance(context, dict):
        raise InvalidParameter("context", "context must be a JSON object")
    return EvaluationBody(
        validation.platform(platform), validation.user_id(user), None if not context else attributes(context)
    )


def _put(found: dict[str, Any], name: str, value: Any, field: str) -> None:
    if name in found:
        raise InvalidParameter(field, f"{field} is given twice")
    found[name] = value


def _json_object(raw: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidParameter("context", f"context must be a JSON object: {exc}") from exc
    if not isinstance(parsed, dict):
        raise InvalidParameter("context", "context must be a JSON object")
    return parsed


def _check(name: Any, value: Any, field: str) -> None:
    where = f"{field}.{name}"
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidParameter(where, f"{where}: an attribute name matches {ATTRIBUTE_PATTERN}")
    if value is None:
        return  # null: absent, as every operator reads it
    if not isinstance(value, _SCALARS):
        raise InvalidParameter(where, f"{where} must be a string, number, boolean or null, not {type(value).__name__}")
    if type(value) is float and not math.isfinite(value):
        raise InvalidParameter(where, f"{where} must be a finite number")
    if type(value) is str and len(value) > MAX_VALUE_LENGTH:
        raise InvalidParameter(where, f"{where} is at most {MAX_VALUE_LENGTH} characters")
