"""Form fields as the console accepts them: each parser returns a clean value or raises `InvalidInput`
naming the field, so a bad form is a 422 that says where, before anything is sent."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from events.vocabulary import FLAG_KEY_RULE, ORG_ID_RE, is_flag_key

__all__ = ["MAX_REASON", "InvalidInput", "expected_version", "flag_key", "instant", "iso", "optional", "org_id",
           "reason", "text"]

MAX_REASON = 500


class InvalidInput(Exception):
    """A form field the console refuses before anything is sent; `field` names it."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


def text(form: Mapping[str, str], name: str) -> str:
    return (form.get(name) or "").strip()


def flag_key(form: Mapping[str, str]) -> str:
    key = text(form, "flag")
    if not is_flag_key(key):
        raise InvalidInput("flag", f"must be {FLAG_KEY_RULE}")
    return key


def optional(form: Mapping[str, str], name: str, pattern: Any, what: str) -> str | None:
    value = text(form, name)
    if value and not pattern.match(value):
        raise InvalidInput(name, f"must be {what}")
    return value or None


def org_id(value: str | None) -> str | None:
    """A valid org id, or None for an empty one; `InvalidInput("org")` otherwise."""
    return optional({"org": value or ""}, "org", ORG_ID_RE, "letters, digits, _ or -, starting with a letter or digit")


def reason(form: Mapping[str, str]) -> str:
    reason = text(form, "reason")
    if not reason:
        raise InvalidInput("reason", "say why: every change records its reason")
    if len(reason) > MAX_REASON or "\x00" in reason:
        raise InvalidInput("reason", f"at most {MAX_REASON} characters, no NUL")
    return reason


def expected_version(form: Mapping[str, str]) -> int:
    raw = text(form, "expected_version")
    if not raw.isdigit() or int(raw) > 2**31 - 1:
        raise InvalidInput("expected_version", "must be the version the page was loaded at (a whole number)")
    return int(raw)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def instant(form: Mapping[str, str], name: str) -> datetime:
    raw = text(form, name)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(name, "must be a date and time such as 2026-12-01T09:00 (UTC)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
