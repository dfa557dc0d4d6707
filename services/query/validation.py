"""Syntax of the request's identifiers, checked with the wire contract's own patterns.

Checked here rather than by FastAPI so that the hot path (`services.query.fastpath`), which answers ahead of
the app, refuses exactly what the app refuses, with the same body; the routes' documents state the same
constraints (`FLAG_KEY_SCHEMA`).
"""

from __future__ import annotations

from typing import Any

from events import Platform
from events.vocabulary import FLAG_KEY_PATTERN, FLAG_KEY_RULE, MAX_FLAG_KEY, ORG_ID_RE, USER_ID_RE, is_flag_key
from services.query.errors import InvalidParameter

PLATFORMS = frozenset(p.value for p in Platform)
FLAG_KEY_SCHEMA: dict[str, Any] = {"minLength": 1, "maxLength": MAX_FLAG_KEY, "pattern": FLAG_KEY_PATTERN}


def org_id(value: str, field: str = "org_id") -> str:
    if not ORG_ID_RE.fullmatch(value):
        raise InvalidParameter(field, f"{field} must match {ORG_ID_RE.pattern}")
    return value


def flag_key(value: str, field: str = "flag_key") -> str:
    if not is_flag_key(value):
        raise InvalidParameter(field, f"{field} must be {FLAG_KEY_RULE}")
    return value


def platform(value: str | None, field: str = "platform") -> str | None:
    if value is None or value == "":
        return None
    if value not in PLATFORMS:
        raise InvalidParameter(field, f"{field} must be one of {', '.join(sorted(PLATFORMS))}")
    return value


def user_id(value: str | None, field: str = "user") -> str | None:
    if value is None or value == "":
        return None
    if not USER_ID_RE.fullmatch(value):
        raise InvalidParameter(field, f"{field} must match {USER_ID_RE.pattern}")
    return value
