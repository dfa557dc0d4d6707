"""History of the log for people: filters, the paging cursor, and each event as one flat entry.

Pure. The rows come from `eventstore.audit_reads` (the event store, whose bodies are the
exact bytes published on Kafka); this module decides what a row says to an
auditor — who, when, why, where, previous → new — and how it is written as
JSON, JSON Lines or CSV.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from events import Platform, Scope, canonical_json

__all__ = [
    "CSV_COLUMNS",
    "Cursor",
    "HistoryFilter",
    "HistoryLevel",
    "InvalidCursor",
    "actor_needles",
    "csv_lines",
    "entry",
    "level_of",
    "parse_instant",
    "rules_scope",
    "setting_scope",
]


class HistoryLevel(StrEnum):
    """Where an event sits: a flag's definition, one of the four setting levels, an API key, a subscription, or a
    segment (system-wide or an org's)."""

    DEFINITION = "definition"
    SYSTEM = "system"
    ORG = "org"
    PLATFORM = "platform"
    USER = "user"
    KEY = "key"
    SUBSCRIPTION = "subscription"
    SEGMENT = "segment"


# Flag keys, org ids, platforms and user ids never contain "/", so each stream name
# matches exactly one of these (`events.scope`). The same patterns filter in SQL.
LEVEL_PATTERNS: dict[HistoryLevel, str] = {
    HistoryLevel.DEFINITION: r"^flag/[^/]+$",
    HistoryLevel.SYSTEM: r"^flag/[^/]+/system$",
    HistoryLevel.ORG: r"^org/[^/]+/flag/[^/]+$",
    HistoryLevel.PLATFORM: r"^org/[^/]+/platform/[^/]+/flag/[^/]+$",
    HistoryLevel.USER: r"^org/[^/]+/user/[^/]+/flag/[^/]+$",
    HistoryLevel.KEY: r"^key/[^/]+$",
    HistoryLevel.SUBSCRIPTION: r"^(org/[^/]+/)?subscription/[^/]+$",
    HistoryLevel.SEGMENT: r"^(org/[^/]+/)?segment/[^/]+$",
}
_COMPILED = {level: re.compile(pattern) for level, pattern in LEVEL_PATTERNS.items()}


def level_of(stream: str) -> HistoryLevel | None:
    return next((level for level, pattern in _COMPILED.items() if pattern.match(stream)), None)


def setting_scope(stream: str) -> tuple[Scope, str] | None:
    """The scope and flag key of a setting stream (system, org, platform or user level); else None."""
    parts = stream.split("/")
    match level_of(stream), parts:
        case HistoryLevel.SYSTEM, ["flag", flag, "system"]:
            return Scope.system(), flag
        case HistoryLevel.ORG, ["org", org, "flag", flag]:
            return Scope.org(org), flag
        case HistoryLevel.PLATFORM, ["org", org, "platform", platform, "flag", flag] if platform in set(Platform):
            return Scope.for_platform(org, platform), flag
        case HistoryLevel.USER, ["org", org, "user", user, "flag", flag]:
            return Scope.user(org, user), flag
    return None


def rules_scope(stream: str) -> tuple[Scope, str] | None:
    """The level and flag key of a targeting-rules stream (`flag/{key}/system/rules`, `org/{org}/flag/{key}/rules`)."""
    match stream.split("/"):
        case ["flag", flag, "system", "rules"]:
            return Scope.system(), flag
        case ["org", org, "flag", flag, "rules"]:
            return Scope.org(org), flag
    return None


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def parse_instant(text: str, *, now: datetime) -> datetime:
    """An RFC 3339 instant with its offset, not after `now`; `ValueError` says what is wrong."""
    if not _RFC3339.fullmatch(text):
        raise ValueError(f"{text!r} is not an RFC 3339 instant such as 2026-01-31T09:00:00Z")
    digits = re.sub(r"\.(\d{6})\d+", r".\1", text)  # Python keeps microseconds
    try:
        instant = datetime.fromisoformat(digits.replace("z", "Z")).astimezone(UTC)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid instant: {exc}") from None
    if instant > now:
        raise ValueError(f"{text} is in the future (now is {now.isoformat().replace('+00:00', 'Z')})")
    return instant


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """What to show. `catalog` adds, to one org's events, the definitions and system defaults every org sees."""

    org: str | None = None
    catalog: bool = False
    flag: str | None = None
    actor: str | None = None  # an actor id (`key:…`) or display name, exactly
    levels: tuple[HistoryLevel, ...] = ()
    types: tuple[str, ...] = ()
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def actor_needles(actor: str) -> tuple[bytes, bytes]:
    """Byte strings found in a stored body exactly when its actor's id, or its name, is `actor`.

    Bodies are canonical JSON (sorted keys, no spaces), so the actor object reads
    `"actor":{"id":…,"name":…},"data":` and nothing inside a JSON string can hold an
    unescaped quote: matching these bytes needs no JSON parsing of every row.
    """
    quoted = canonical_json(actor)
    return b'"actor":{"id":' + quoted + b',"name":', b',"name":' + quoted + b'},"data":'


class InvalidCursor(ValueError):
    """The cursor was not one this service handed out."""


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A position in (transaction, sequence) order: every row at or before it has been shown."""

    tx: int
    sequence: int

    def encode(self) -> str:
        raw = f"{self.tx}.{self.sequence}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            tx, sequence = (int(part) for part in raw.split("."))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidCursor("not a cursor from this service") from None
        if tx < 0 or sequence < 0 or tx >= 2**63 or sequence >= 2**63:
            raise InvalidCursor("not a cursor from this service")
        return cls(tx, sequence)


def entry(body: bytes) -> dict[str, Any]:
    """One stored event as an auditor reads it."""
    event = json.loads(body)
    data = event.get("data") or {}
    return {
        "sequence": event["sequence"],
        "occurred_at": event["occurred_at"],
        "actor": event["actor"],
        "reason": event["reason"],
        "type": event["type"],
        "level": level_of(event["stream"]),
        "org_id": event["org_id"],
        "flag_key": event["flag_key"],
        "platform": data.get("platform"),
        "user_id": data.get("user_id"),
        "key_id": data.get("key_id"),
        "stream": event["stream"],
        "version": event["version"],
        "previous": event["previous"],
        "new": event["new"],
        "event_id": event["event_id"],
        "hash": event["hash"],
    }


CSV_COLUMNS = (
    "sequence", "occurred_at", "actor_id", "actor_name", "reason", "type", "level", "org_id", "flag_key",
    "platform", "user_id", "key_id", "stream", "version", "previous", "new", "event_id", "hash",
)  # fmt: skip

# A cell starting with one of these is a formula to a spreadsheet (CSV injection):
# free text gets a leading apostrophe, as OWASP advises.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any, *, free_text: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    text = str(value)
    return "'" + text if free_text and text.startswith(_FORMULA) else text


def csv_lines(entries: Iterable[dict[str, Any]], *, header: bool) -> str:
    """CSV text (RFC 4180, CRLF) for `entries`; `header` puts the column names first."""
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(CSV_COLUMNS)
    for e in entries:
        row = {**e, "actor_id": e["actor"]["id"], "actor_name": e["actor"]["name"]}
        writer.writerow(
            _cell(row[name], free_text=name in ("actor_id", "actor_name", "reason"))
            for name in CSV_COLUMNS
        )
    return out.getvalue()
