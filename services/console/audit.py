"""Audit entries as the console shows them: who, when, why, previous → new, filtered and newest first.

Pure functions over the envelopes the command API returns (`GET /v1/events`,
the stored bytes) or the Kafka topic carries: both are the same JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from events.vocabulary import FLAG_KEY_RULE, is_flag_key
from services.console.changes import describe
from services.console.forms import InvalidInput, org_id

__all__ = ["KINDS", "AuditFilter", "Entry", "entry", "newest_first", "parse_filter", "parse_instant"]

KINDS = {
    "definition": ("FlagDefined", "FlagUpdated", "FlagArchived"),
    "system": ("SystemDefaultSet",),
    "org": ("OrgOverrideSet", "OrgOverrideCleared"),
    "platform": ("PlatformOverrideSet", "PlatformOverrideCleared"),
    "user": ("UserOverrideSet", "UserOverrideCleared"),
    "rollout": ("RolloutPercentageSet",),
}


@dataclass(frozen=True, slots=True)
class Entry:
    event_id: str
    sequence: int
    occurred_at: datetime
    type: str
    stream: str
    version: int
    org_id: str | None
    flag_key: str | None
    actor: str
    actor_id: str
    reason: str
    previous: str
    new: str

    @property
    def when(self) -> str:
        return self.occurred_at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _value(value: dict[str, Any] | None) -> str:
    if value is not None and ("kind" in value or "archived" in value):  # a definition
        return ", ".join(f"{k}: {v}" for k, v in value.items() if v not in (None, "")) or "—"
    return describe(value)


def entry(envelope: Mapping[str, Any]) -> Entry:
    occurred = datetime.fromisoformat(str(envelope["occurred_at"]).replace("Z", "+00:00")).astimezone(UTC)
    return Entry(
        event_id=str(envelope["event_id"]),
        sequence=int(envelope["sequence"]),
        occurred_at=occurred,
        type=str(envelope["type"]),
        stream=str(envelope["stream"]),
        version=int(envelope["version"]),
        org_id=envelope.get("org_id"),
        flag_key=envelope.get("flag_key"),
        actor=str((envelope.get("actor") or {}).get("name", "?")),
        actor_id=str((envelope.get("actor") or {}).get("id", "")),
        reason=str(envelope.get("reason", "")),
        previous=_value(envelope.get("previous")),
        new=_value(envelope.get("new")),
    )


def _instant(form: Mapping[str, str], name: str) -> datetime | None:
    raw = (form.get(name) or "").strip()
    return parse_instant(raw, name) if raw else None


def parse_instant(raw: str, name: str) -> datetime:
    """An instant from a form (`datetime-local` gives no zone: UTC is meant); `InvalidInput` names the field."""
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(name, "must be a date and time such as 2026-11-29T14:00") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """An audit view: org, flag, actor (id or exact name), kind of change, time range."""

    org: str | None = None
    flag: str | None = None
    actor: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def keeps(self, e: Entry) -> bool:
        if e.flag_key is None:  # key events are not flag history
            return False
        if self.org and e.org_id != self.org:
            return False
        if self.flag and e.flag_key != self.flag:
            return False
        if self.actor and self.actor not in (e.actor, e.actor_id):
            return False
        if self.kind and e.type not in KINDS[self.kind]:
            return False
        if self.since and e.occurred_at < self.since:
            return False
        return not (self.until and e.occurred_at > self.until)

    def query(self) -> dict[str, str]:
        """The filter as URL parameters (for links, the live stream and the export)."""
        found = {"org": self.org, "flag": self.flag, "actor": self.actor, "kind": self.kind,
                 "since": self.since and self.since.isoformat(), "until": self.until and self.until.isoformat()}
        return {k: v for k, v in found.items() if v}


def parse_filter(form: Mapping[str, str]) -> AuditFilter:
    flag = (form.get("flag") or "").strip() or None
    if flag and not is_flag_key(flag):
        raise InvalidInput("flag", f"must be {FLAG_KEY_RULE}")
    kind = (form.get("kind") or "").strip() or None
    if kind and kind not in KINDS:
        raise InvalidInput("kind", f"must be one of {', '.join(KINDS)}")
    actor = (form.get("actor") or "").strip()[:200] or None
    return AuditFilter(org_id(form.get("org")), flag, actor, kind, _instant(form, "since"), _instant(form, "until"))


def newest_first(entries: Iterable[Entry], keep: AuditFilter, limit: int) -> list[Entry]:
    return sorted((e for e in entries if keep.keeps(e)), key=lambda e: e.sequence, reverse=True)[:limit]
