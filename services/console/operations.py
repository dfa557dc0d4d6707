"""Changes beyond a level's value: defining and archiving flags, undoing one change (rollback),
the kill switch and scheduled steps. Each, like `changes.SettingChange`, names its route, body,
stream and the role it needs, and shows previous → new before anything is sent."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events import FlagKind, Level, ValueType
from services.auth.policy import Action
from services.console.changes import OnDefinition, Target, Value, describe, parse_target
from services.console.forms import InvalidInput, expected_version, flag_key, instant, iso, reason, text
from services.console.typed import parse_value_type, parse_values, value_rows

__all__ = ["ArchiveFlag", "DefineFlag", "KillSwitch", "Rollback", "ScheduleStep", "parse_archive_flag",
           "parse_define_flag", "parse_kill_switch", "parse_rollback", "parse_schedule_step", "rollbackable",
           "target_of_stream"]


def target_of_stream(stream: str) -> Target:
    """The setting a stream holds (`flag/<key>/system`, `org/<org>/[platform/<p>/|user/<u>/]flag/<key>`)."""
    parts = stream.split("/")
    form: dict[str, str] = {}
    match parts:
        case ["flag", key, "system"]:
            form = {"flag": key, "level": "system"}
        case ["org", org, "flag", key]:
            form = {"flag": key, "level": "org", "org": org}
        case ["org", org, "platform", platform, "flag", key]:
            form = {"flag": key, "level": "platform", "org": org, "platform": platform}
        case ["org", org, "user", user, "flag", key]:
            form = {"flag": key, "level": "user", "org": org, "user": user}
        case _:
            raise InvalidInput("stream", "not the stream of a flag setting")
    return parse_target(form)


def rollbackable(entry: Any) -> bool:
    """A setting's change can be undone; a system default's first value has nothing before it to restore."""
    try:
        target = target_of_stream(entry.stream)
    except InvalidInput:
        return False
    return entry.version >= 2 or target.level is not Level.SYSTEM


@dataclass(frozen=True, slots=True)
class Rollback:
    """Undo one change: restore the value its stream had just before it, as new events with their own reason.

    Through the rollback routes for version 2 on; undoing a first
    override is clearing it, through the ordinary route with the expected version.
    """

    target: Target
    version: int  # the version being undone
    reason: str
    expected_version: int  # the stream's version when the user looked

    @property
    def method(self) -> str:
        return "POST" if self.version >= 2 else "DELETE"

    @property
    def path(self) -> str:
        if self.version < 2:
            return self.target.path
        if self.target.level is Level.SYSTEM:
            return f"/v1/flags/{self.target.flag_key}/rollback"
        return f"/v1/orgs/{self.target.org_id}/rollback"

    @property
    def stream(self) -> str:
        return self.target.stream

    @property
    def action(self) -> Action:
        return self.target.action

    def body(self) -> dict[str, Any]:
        if self.version < 2:
            return {"reason": f"rollback of version 1: {self.reason}", "expected_version": self.expected_version}
        body: dict[str, Any] = {"version": self.version - 1, "reason": self.reason}
        if self.target.level is not Level.SYSTEM:
            body["flag_key"] = self.target.flag_key
            if self.target.platform is not None:
                body["platform"] = self.target.platform.value
            if self.target.user_id is not None:
                body["user_id"] = self.target.user_id
        return body

    def fields(self) -> dict[str, str]:
        return {"stream": self.stream, "version": str(self.version), "reason": self.reason,
                "expected_version": str(self.expected_version)}


def parse_rollback(form: Mapping[str, str], *, reason_required: bool = True) -> Rollback:
    target = target_of_stream(text(form, "stream"))
    raw = text(form, "version")
    if not raw.isdigit() or not 1 <= int(raw) <= 2**31 - 1:
        raise InvalidInput("version", "the version of the change to undo (a whole number from 1)")
    why = reason(form) if reason_required else text(form, "reason")
    expected = expected_version(form) if text(form, "expected_version") else 0
    if int(raw) < 2 and target.level is Level.SYSTEM:
        raise InvalidInput("version", "the first system default has nothing before it to restore")
    return Rollback(target, int(raw), why, expected)


@dataclass(frozen=True, slots=True)
class KillSwitch(OnDefinition):
    """Engage (off everywhere, over every level) or release an ops flag's kill switch (the kill switch routes)."""

    flag_key: str
    engage: bool
    reason: str
    expected_version: int  # of the flag's definition stream, where the switch lives

    @property
    def method(self) -> str:
        return "POST" if self.engage else "DELETE"

    @property
    def path(self) -> str:
        return f"/v1/flags/{self.flag_key}/kill-switch"

    def body(self) -> dict[str, Any]:
        return {"reason": self.reason, "expected_version": self.expected_version}

    def rows(self, previous: Value) -> list[tuple[str, str, str]]:
        now = "engaged: off everywhere" if (previous or {}).get("killed") else "released: the levels decide"
        new = "engaged: off everywhere" if self.engage else "released: the levels decide"
        return [("kill switch", now, new)]

    def fields(self) -> dict[str, str]:
        return {"flag": self.flag_key, "engage": "1" if self.engage else "", "reason": self.reason,
                "expected_version": str(self.expected_version)}


def parse_kill_switch(form: Mapping[str, str]) -> KillSwitch:
    return KillSwitch(flag_key(form), bool(text(form, "engage")), reason(form), expected_version(form))


@dataclass(frozen=True, slots=True)
class ScheduleStep:
    """From `effective_at` on, a level takes these values (the schedule routes); or cancel that step."""

    target: Target
    effective_at: datetime
    cancel: bool
    enabled: bool | None
    rollout: int | None
    reason: str
    expected_version: int

    @property
    def method(self) -> str:
        return "DELETE" if self.cancel else "PUT"

    @property
    def path(self) -> str:
        return f"{self.target.path}/schedule"

    @property
    def stream(self) -> str:
        return self.target.stream

    @property
    def action(self) -> Action:
        return self.target.action

    @property
    def at(self) -> str:
        return iso(self.effective_at)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"effective_at": self.at, "reason": self.reason,
                                "expected_version": self.expected_version}
        if not self.cancel:
            body |= {k: v for k, v in (("enabled", self.enabled), ("rollout_percentage", self.rollout))
                     if v is not None}
        return body

    def rows(self, previous: Value) -> list[tuple[str, str, str]]:
        steps = {s.get("at"): s for s in (previous or {}).get("schedule") or ()}
        before = describe(steps.get(self.at)) if self.at in steps else "nothing scheduled"
        after = "nothing scheduled" if self.cancel else describe({"enabled": self.enabled,
                                                                  "rollout_percentage": self.rollout})
        return [(f"{self.target.label} from {self.at}", before, after)]

    def fields(self) -> dict[str, str]:
        state = "cancel" if self.cancel else {True: "on", False: "off", None: "keep"}[self.enabled]
        return {**self.target.fields(), "effective_at": self.at, "state": state,
                "rollout": "" if self.rollout is None else str(self.rollout), "reason": self.reason,
                "expected_version": str(self.expected_version)}


def parse_schedule_step(form: Mapping[str, str]) -> ScheduleStep:
    target = parse_target(form)
    at = instant(form, "effective_at")
    state = text(form, "state") or "on"
    if state not in ("on", "off", "keep", "cancel"):
        raise InvalidInput("state", "choose on, off, keep (rollout only) or cancel")
    raw_pct = text(form, "rollout")
    if raw_pct and (not raw_pct.isdigit() or int(raw_pct) > 100):
        raise InvalidInput("rollout", "a whole percentage from 0 to 100, or empty")
    rollout = int(raw_pct) if raw_pct else None
    enabled = {"on": True, "off": False}.get(state)
    if state == "keep" and rollout is None:
        raise InvalidInput("rollout", "a step that keeps on/off must set a rollout")
    return ScheduleStep(target, at, state == "cancel", enabled, rollout, reason(form), expected_version(form))


@dataclass(frozen=True, slots=True)
class DefineFlag(OnDefinition):
    """A new flag in the catalogue; its definition stream must still be empty (expected version 0)."""

    flag_key: str
    group: str
    kind: str
    description: str
    owner: str | None
    reason: str
    expected_version: int = 0
    value_type: ValueType = ValueType.BOOLEAN
    values: dict[str, Any] | None = None  # a typed flag's variants, name → value
    default_variant: str | None = None
    off_variant: str | None = None
    method = "POST"
    path = "/v1/flags"

    def body(self) -> dict[str, Any]:
        body = {"key": self.flag_key, "group": self.group, "kind": self.kind, "description": self.description,
                "reason": self.reason, "expected_version": self.expected_version}
        if self.value_type is not ValueType.BOOLEAN:
            body |= {"type": self.value_type.value, "variants": self.values, "default_variant": self.default_variant,
                     "off_variant": self.off_variant}
        return body | ({"owner": self.owner} if self.owner else {})

    def rows(self, previous: Value) -> list[tuple[str, str, str]]:
        now = "defined already" if previous else "not defined"
        rows = [(self.flag_key, now, f"{self.kind} flag in {self.group}, owner {self.owner or '—'}")]
        if self.value_type is not ValueType.BOOLEAN:
            rows.append(("type", "—", self.value_type.value))
            rows += [(f"variant {name}", "—", json.dumps(value, ensure_ascii=False))
                     for name, value in (self.values or {}).items()]
            rows.append(("default / off variant", "—", f"{self.default_variant} / {self.off_variant}"))
        return rows

    def fields(self) -> dict[str, str]:
        fields = {"flag": self.flag_key, "new_group": self.group, "new_kind": self.kind,
                  "new_description": self.description, "new_owner": self.owner or "", "reason": self.reason,
                  "expected_version": str(self.expected_version), "new_type": self.value_type.value}
        if self.value_type is not ValueType.BOOLEAN:
            fields |= {**value_rows(self.value_type, self.values or {}),
                       "new_default_variant": self.default_variant or "", "new_off_variant": self.off_variant or ""}
        return fields


def parse_define_flag(form: Mapping[str, str]) -> DefineFlag:
    key = flag_key(form)
    group = text(form, "new_group")
    if not group or len(group) > 64:
        raise InvalidInput("new_group", "a flag belongs to a group (1–64 characters), e.g. ai")
    kind = text(form, "new_kind") or "release"
    if kind not in {k.value for k in FlagKind}:
        raise InvalidInput("new_kind", f"must be one of {', '.join(FlagKind)}")
    description = text(form, "new_description")
    if len(description) > 1000:
        raise InvalidInput("new_description", "at most 1000 characters")
    owner = text(form, "new_owner")[:200] or None
    value_type = parse_value_type(form)
    if value_type is ValueType.BOOLEAN:
        return DefineFlag(key, group, kind, description, owner, reason(form), 0)
    values = parse_values(form, value_type)
    default, off = text(form, "new_default_variant"), text(form, "new_off_variant")
    for field, name in (("new_default_variant", default), ("new_off_variant", off)):
        if name not in values:
            raise InvalidInput(field, f"name one of the variants ({', '.join(values)})")
    return DefineFlag(key, group, kind, description, owner, reason(form), 0, value_type, values, default, off)


@dataclass(frozen=True, slots=True)
class ArchiveFlag(OnDefinition):
    """Retire a flag: it evaluates off everywhere and takes no more changes."""

    flag_key: str
    reason: str
    expected_version: int
    method = "POST"

    @property
    def path(self) -> str:
        return f"/v1/flags/{self.flag_key}/archive"

    def body(self) -> dict[str, Any]:
        return {"reason": self.reason, "expected_version": self.expected_version}

    def rows(self, previous: Value) -> list[tuple[str, str, str]]:
        now = "archived" if (previous or {}).get("archived") else "live"
        return [(self.flag_key, now, "archived: off everywhere, no more changes")]

    def fields(self) -> dict[str, str]:
        return {"flag": self.flag_key, "reason": self.reason, "expected_version": str(self.expected_version)}


def parse_archive_flag(form: Mapping[str, str]) -> ArchiveFlag:
    return ArchiveFlag(flag_key(form), reason(form), expected_version(form))
