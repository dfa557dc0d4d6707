"""Syntax of the request's identifiers, checked with the wire contract's own patterns."""

from __future__ import annotations

from events import Platform
from events.vocabulary import FLAG_KEY_RE, ORG_ID_RE, USER_ID_RE
from services.query.errors import InvalidParameter

PLATFORMS = frozenset(p.value for p in Platform)
MAX_FLAG_KEY = 100


def org_id(value: str, field: str = "org_id") -> str:
    if not ORG_ID_RE.fullmatch(value):
        raise InvalidParameter(field, f"{field} must match {ORG_ID_RE.pattern}")
    return value


def flag_key(value: str, field: str = "flag_key") -> str:
    if len(value) > MAX_FLAG_KEY or not FLAG_KEY_RE.fullmatch(value):
        raise InvalidParameter(field, f"{field} must be a dotted lower-case key matching {FLAG_KEY_RE.pattern}")
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
