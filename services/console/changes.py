"""A change as the console proposes it: where it goes, what it sends, and previous → new for the user to confirm.

Pure: the forms are parsed here (a bad field is an `InvalidInput` naming it),
the routes only carry the result to the command API with the version the page
was loaded at, so a change made meanwhile is a 409 and never overwritten.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from events import Level, Platform, Scope
from events.scope import definition_stream
from events.vocabulary import (
    FLAG_KEY_RE,
    ORG_ID_RE,
    USER_ID_RE,
    VARIANT_NAME_PATTERN,
    VARIANT_WEIGHT_TOTAL,
    FlagKind,
)
from services.auth.policy import Action

__all__ = [
    "DefinitionEdit",
    "InvalidInput",
    "KillSwitch",
    "Rollback",
    "ScheduleStep",
    "SettingChange",
    "Target",
    "describe",
    "parse_definition_edit",
    "parse_kill_switch",
    "parse_rollback",
    "parse_schedule_step",
    "parse_setting_change",
    "parse_target",
    "rollbackable",
    "target_of_stream",
]

MAX_REASON = 500
VARIANT_NAME_RE = re.compile(VARIANT_NAME_PATTERN)
Value = dict[str, Any] | None


class InvalidInput(Exception):
    """A form field the console refuses before anything is sent; `field` names it."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


def _text(form: Mapping[str, str], name: str) -> str:
    return (form.get(name) or "").strip()


def _flag(form: Mapping[str, str]) -> str:
    key = _text(form, "flag")
    if not key or len(key) > 100 or not FLAG_KEY_RE.match(key):
        raise InvalidInput("flag", "must be a dotted lower-case key such as ai.insights.enabled")
    return key


def _optional(form: Mapping[str, str], name: str, pattern: Any, what: str) -> str | None:
    value = _text(form, name)
    if value and not pattern.match(value):
        raise InvalidInput(name, f"must be {what}")
    return value or None


def org_id(value: str | None) -> str | None:
    """A valid org id, or None for an empty one; `InvalidInput("org")` otherwise."""
    return _optional({"org": value or ""}, "org", ORG_ID_RE, "letters, digits, _ or -, starting with a letter or digit")


def _reason(form: Mapping[str, str]) -> str:
    reason = _text(form, "reason")
    if not reason:
        raise InvalidInput("reason", "say why: every change records its reason")
    if len(reason) > MAX_REASON or "\x00" in reason:
        raise InvalidInput("reason", f"at most {MAX_REASON} characters, no NUL")
    return reason


def _version(form: Mapping[str, str]) -> int:
    raw = _text(form, "expected_version")
    if not raw.isdigit() or int(raw) > 2**31 - 1:
        raise InvalidInput("expected_version", "must be the version the page was loaded at (a whole number)")
    return int(raw)


@dataclass(frozen=True, slots=True)
class Target:
    """One flag at one level: a stream of the log and a route of the command API."""

    flag_key: str
    level: Level
    org_id: str | None = None
    platform: Platform | None = None
    user_id: str | None = None

    @property
    def scope(self) -> Scope:
        return Scope(self.level, self.org_id, platform=self.platform, user_id=self.user_id)

    @property
    def stream(self) -> str:
        return self.scope.stream(self.flag_key)

    @property
    def path(self) -> str:
        match self.level:
            case Level.SYSTEM:
                return f"/v1/flags/{self.flag_key}/system"
            case Level.ORG:
                return f"/v1/orgs/{self.org_id}/flags/{self.flag_key}"
            case Level.PLATFORM:
                return f"/v1/orgs/{self.org_id}/platforms/{self.platform}/flags/{self.flag_key}"
            case Level.USER:
                return f"/v1/orgs/{self.org_id}/users/{self.user_id}/flags/{self.flag_key}"
        raise AssertionError(self.level)  # pragma: no cover

    @property
    def action(self) -> Action:
        return Action.MANAGE_FLAGS if self.level is Level.SYSTEM else Action.CHANGE_OVERRIDES

    @property
    def label(self) -> str:
        parts = {
            Level.SYSTEM: "system default",
            Level.ORG: f"org {self.org_id}",
            Level.PLATFORM: f"org {self.org_id}, platform {self.platform}",
            Level.USER: f"org {self.org_id}, user {self.user_id}",
        }
        return parts[self.level]

    def fields(self) -> dict[str, str]:
        """The hidden form fields that name this target again."""
        found = {"flag": self.flag_key, "level": self.level.value, "org": self.org_id,
                 "platform": self.platform and self.platform.value, "user": self.user_id}
        return {k: v for k, v in found.items() if v}


def parse_target(form: Mapping[str, str]) -> Target:
    flag = _flag(form)
    try:
        level = Level(_text(form, "level") or "org")
    except ValueError:
        raise InvalidInput("level", "must be one of system, org, platform, user") from None
    if level is Level.SYSTEM:
        return Target(flag, level)
    org = org_id(_text(form, "org"))
    if org is None:
        raise InvalidInput("org", "which organisation? an override belongs to one")
    platform = None
    if level is Level.PLATFORM:
        try:
            platform = Platform(_text(form, "platform"))
        except ValueError:
            raise InvalidInput("platform", f"must be one of {', '.join(Platform)}") from None
    user = None
    if level is Level.USER:
        user = _optional(form, "user", USER_ID_RE, "a user id (letters, digits, ._@+:-)")
        if user is None:
            raise InvalidInput("user", "which user? a user override belongs to one")
    return Target(flag, level, org, platform, user)


def describe(value: Value) -> str:
    """A setting as a person reads it."""
    if not value or (value.get("enabled") is None and value.get("rollout_percentage") is None):
        return "not set"
    state = {True: "on", False: "off", None: "inherited on/off"}[value.get("enabled")]
    pct = value.get("rollout_percentage")
    return state if pct is None else f"{state}, {pct}% rollout"


@dataclass(frozen=True, slots=True)
class SettingChange:
    """Set a level's on/off and rollout, or clear an override."""

    target: Target
    clear: bool
    enabled: bool | None
    rollout: int | None
    reason: str
    expected_version: int

    @property
    def method(self) -> str:
        return "DELETE" if self.clear else "PUT"

    @property
    def path(self) -> str:
        return self.target.path

    @property
    def stream(self) -> str:
        return self.target.stream

    @property
    def action(self) -> Action:
        return self.target.action

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": self.reason, "expected_version": self.expected_version}
        if not self.clear:
            body |= {"enabled": self.enabled, "rollout_percentage": self.rollout}
        return body

    def new_value(self) -> Value:
        return None if self.clear else {"enabled": self.enabled, "rollout_percentage": self.rollout}

    def rows(self, previous: Value) -> list[tuple[str, str, str]]:
        """(what, previous, new) for the confirmation page."""
        return [(self.target.label, describe(previous), describe(self.new_value()))]

    def fields(self) -> dict[str, str]:
        state = "clear" if self.clear else {True: "on", False: "off", None: "inherit"}[self.enabled]
        return {**self.target.fields(), "state": state, "rollout": "" if self.rollout is None else str(self.rollout),
                "reason": self.reason, "expected_version": str(self.expected_version)}


def parse_setting_change(form: Mapping[str, str]) -> SettingChange:
    target = parse_target(form)
    state = _text(form, "state")
    if state not in ("on", "off", "inherit", "clear"):
        raise InvalidInput("state", "choose on, off, inherit (rollout only) or clear")
    raw_pct = _text(form, "rollout")
    rollout = None
    if raw_pct:
        if not raw_pct.isdigit() or int(raw_pct) > 100:
            raise InvalidInput("rollout", "a whole percentage from 0 to 100, or empty for no rollout")
        rollout = int(raw_pct)
    system = target.level is Level.SYSTEM
    if system and state in ("clear", "inherit"):
        raise InvalidInput("state", "the system default is on or off; it cannot be cleared")
    clear = state == "clear" or (state == "inherit" and rollout is None)
    enabled = {"on": True, "off": False}.get(state)
    return SettingChange(target, clear, None if clear else enabled, None if clear else rollout,
                         _reason(form), _version(form))


_DEFINITION_FIELDS = ("description", "kind", "owner", "group", "expires_at")


@dataclass(frozen=True, slots=True)
class DefinitionEdit:
    """New description, kind, owner or group of a flag (the fields that differ are sent)."""

    flag_key: str
    changes: dict[str, Any]
    reason: str
    expected_version: int
    method = "PATCH"

    @property
    def path(self) -> str:
        return f"/v1/flags/{self.flag_key}"

    @property
    def stream(self) -> str:
        return definition_stream(self.flag_key)

    @property
    def action(self) -> Action:
        return Action.MANAGE_FLAGS

    def body(self) -> dict[str, Any]:
        return {**self.changes, "reason": self.reason, "expected_version": self.expected_version}

    def rows(self, previous: Value) -> list[tuple[str, str, str]]:
        before = previous or {}
        return [(name, _shown(before.get(name)), _shown(value)) for name, value in self.changes.items()]

    def fields(self) -> dict[str, str]:
        return {"flag": self.flag_key, "reason": self.reason, "expected_version": str(self.expected_version),
                **{f"new_{k}": _shown(v, empty="") for k, v in self.changes.items()}}


def _shown(value: Any, *, empty: str = "—") -> str:
    if isinstance(value, list):  # variants
        return variants_text(value) or empty
    return str(value) if value else empty


def variants_text(variants: list[dict[str, Any]]) -> str:
    """`control=500, new=500`: weights in thousandths, as the flag holds them."""
    return ", ".join(f"{v['name']}={v['weight']}" for v in variants)


def parse_variants(text: str) -> list[dict[str, Any]]:
    """`control=50, new=50` (percentages) or thousandths summing to 1000; empty: no variants."""
    variants = []
    for part in filter(None, (p.strip() for p in text.replace("\n", ",").split(","))):
        name, _, weight = part.partition("=")
        name, weight = name.strip(), weight.strip()
        if not VARIANT_NAME_RE.match(name) or not weight.isdigit():
            raise InvalidInput("new_variants", "write arms as name=weight, e.g. control=50, new=50")
        variants.append({"name": name, "weight": int(weight)})
    total = sum(v["weight"] for v in variants)
    if variants and total not in (100, VARIANT_WEIGHT_TOTAL):
        raise InvalidInput("new_variants", f"weights must sum to 100 (percent) or {VARIANT_WEIGHT_TOTAL}, not {total}")
    if total == 100:
        variants = [{**v, "weight": v["weight"] * VARIANT_WEIGHT_TOTAL // 100} for v in variants]
    return variants


def parse_definition_edit(form: Mapping[str, str], current: Value) -> DefinitionEdit:
    """Only the fields whose submitted value differs from `current` are sent."""
    flag = _flag(form)
    before = current or {}
    changes: dict[str, Any] = {}
    for name in _DEFINITION_FIELDS:
        if f"new_{name}" not in form:
            continue
        value: str | None = _text(form, f"new_{name}")
        if name == "kind" and value not in {k.value for k in FlagKind}:
            raise InvalidInput("new_kind", f"must be one of {', '.join(FlagKind)}")
        if name == "group" and not value:
            raise InvalidInput("new_group", "a flag belongs to a group")
        if name == "owner" and not value:
            value = None  # an empty owner removes it
        if name == "description" and len(value or "") > 1000:
            raise InvalidInput("new_description", "at most 1000 characters")
        current = before.get(name) if name != "description" else before.get(name, "")
        if name == "expires_at":  # compared as instants: the form has minutes, the value seconds and a zone
            value = _iso(_future_instant(form, "new_expires_at")) if value else None
            current = current and _iso(_future_instant({"x": current}, "x"))
        if value != current:
            changes[name] = value
    if "new_variants" in form:
        variants = parse_variants(_text(form, "new_variants"))
        if variants != (before.get("variants") or []):
            changes["variants"] = variants
    if not changes:
        raise InvalidInput("new_description", "nothing changed: edit a field first")
    return DefinitionEdit(flag, changes, _reason(form), _version(form))


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

    Through the rollback routes (issue 4) for version 2 on; undoing a first
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
    target = target_of_stream(_text(form, "stream"))
    raw = _text(form, "version")
    if not raw.isdigit() or not 1 <= int(raw) <= 2**31 - 1:
        raise InvalidInput("version", "the version of the change to undo (a whole number from 1)")
    reason = _reason(form) if reason_required else _text(form, "reason")
    expected = _version(form) if _text(form, "expected_version") else 0
    if int(raw) < 2 and target.level is Level.SYSTEM:
        raise InvalidInput("version", "the first system default has nothing before it to restore")
    return Rollback(target, int(raw), reason, expected)


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """Engage (off everywhere, over every level) or release an ops flag's kill switch (issue 7's route)."""

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

    @property
    def stream(self) -> str:
        return definition_stream(self.flag_key)

    @property
    def action(self) -> Action:
        return Action.MANAGE_FLAGS

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
    return KillSwitch(_flag(form), bool(_text(form, "engage")), _reason(form), _version(form))


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _future_instant(form: Mapping[str, str], name: str) -> datetime:
    raw = _text(form, name)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(name, "must be a date and time such as 2026-12-01T09:00 (UTC)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ScheduleStep:
    """From `effective_at` on, a level takes these values (issue 7's schedule routes); or cancel that step."""

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
        return _iso(self.effective_at)

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
    at = _future_instant(form, "effective_at")
    state = _text(form, "state") or "on"
    if state not in ("on", "off", "keep", "cancel"):
        raise InvalidInput("state", "choose on, off, keep (rollout only) or cancel")
    raw_pct = _text(form, "rollout")
    if raw_pct and (not raw_pct.isdigit() or int(raw_pct) > 100):
        raise InvalidInput("rollout", "a whole percentage from 0 to 100, or empty")
    rollout = int(raw_pct) if raw_pct else None
    enabled = {"on": True, "off": False}.get(state)
    if state == "keep" and rollout is None:
        raise InvalidInput("rollout", "a step that keeps on/off must set a rollout")
    return ScheduleStep(target, at, state == "cancel", enabled, rollout, _reason(form), _version(form))
