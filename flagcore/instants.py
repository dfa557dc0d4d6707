"""Instants as stream values hold them: RFC 3339 text in UTC with a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def format_instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_instant(value: str | datetime) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed.astimezone(UTC)
