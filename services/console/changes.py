"""A change as the console proposes it: where it goes, what it sends, and previous → new for the user to confirm.

Pure: the routes only carry the result to the command API with the version the
page was loaded at, so a change made meanwhile is a 409 and never overwritten.
Here: a level's value (`SettingChange`) and a flag's details (`DefinitionEdit`);
rollback, kill switch and schedules are in `operations`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from events import Level, Platform, Scope
from events.scope import definition_stream
from events.vocabulary import USER_ID_RE, VARIANT_NAME_PATTERN, VARIANT_WEIGHT_TOTAL, FlagKind
from services.auth.policy import Action
from services.console.forms import (
    InvalidInput,
    expected_version,
    flag_key,
    instant,
    iso,
    optional,
    org_id,
    reason,
    text,
)

__all__ = [
    "DefinitionEdit",
    "InvalidInput",
    "SettingChange",
    "Target",
    "Value",
    "describe",
    "org_id",
    "parse_definition_edit",
    "parse_setting_change",
    "parse_target",
    "parse_variants",
    "variants_text",
]

Value = dict[str, Any] | None
VARIANT_NAME_RE = re.compile(VARIANT_NAME_PATTERN)


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
    flag = flag_key(form)
    try:
        level = Level(text(form, "level") or "org")
    except ValueError:
        raise InvalidInput("level", "must be one of system, org, platform, user") from None
    if level is Level.SYSTEM:
        return Target(flag, level)
    org = org_id(text(form, "org"))
    if org is None:
        raise InvalidInput("org", "which organisation? an override belongs to one")
    platform = None
    if level is Level.PLATFORM:
        try:
            platform = Platform(text(form, "platform"))
        except ValueError:
            raise InvalidInput("platform", f"must be one of {', '.join(Platform)}") from None
    user = None
    if level is Level.USER:
        user = optional(form, "user", USER_ID_RE, "a user id (letters, digits, ._@+:-)")
        if user is None:
            raise InvalidInput("user", "which user? a user override belongs to one")
    return Target(flag, level, org, platform, user)


def describe(value: Value) -> str:
    """A setting as a person reads it, with the variant or split it serves when it chose one."""
    chosen = _chosen(value or {})
    if not value or (value.get("enabled") is None and value.get("rollout_percentage") is None):
        return chosen or "not set"
    state = {True: "on", False: "off", None: "inherited on/off"}[value.get("enabled")]
    pct = value.get("rollout_percentage")
    text = state if pct is None else f"{state}, {pct}% rollout"
    return f"{text}, {chosen}" if chosen else text


def _chosen(value: dict[str, Any]) -> str:
    if value.get("variant") is not None:
        return f"variant {value['variant']}"
    if value.get("split"):
        return "split " + " / ".join(f"{arm['name']} {arm['weight'] / 10:g}%" for arm in value["split"])
    return ""


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
    state = text(form, "state")
    if state not in ("on", "off", "inherit", "clear"):
        raise InvalidInput("state", "choose on, off, inherit (rollout only) or clear")
    raw_pct = text(form, "rollout")
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
                         reason(form), expected_version(form))


_DEFINITION_FIELDS = ("description", "kind", "owner", "group", "expires_at")


class OnDefinition:
    """A change to a flag's definition stream, which only system admins may make."""

    __slots__ = ()
    flag_key: str

    @property
    def stream(self) -> str:
        return definition_stream(self.flag_key)

    @property
    def action(self) -> Action:
        return Action.MANAGE_FLAGS


@dataclass(frozen=True, slots=True)
class DefinitionEdit(OnDefinition):
    """New description, kind, owner or group of a flag (the fields that differ are sent)."""

    flag_key: str
    changes: dict[str, Any]
    reason: str
    expected_version: int
    method = "PATCH"

    @property
    def path(self) -> str:
        return f"/v1/flags/{self.flag_key}"

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
    variants: list[dict[str, Any]] = []
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
    flag = flag_key(form)
    before = current or {}
    changes: dict[str, Any] = {}
    for name in _DEFINITION_FIELDS:
        if f"new_{name}" not in form:
            continue
        value: str | None = text(form, f"new_{name}")
        if name == "kind" and value not in {k.value for k in FlagKind}:
            raise InvalidInput("new_kind", f"must be one of {', '.join(FlagKind)}")
        if name == "group" and not value:
            raise InvalidInput("new_group", "a flag belongs to a group")
        if name == "owner" and not value:
            value = None  # an empty owner removes it
        if name == "description" and len(value or "") > 1000:
            raise InvalidInput("new_description", "at most 1000 characters")
        was = before.get(name) if name != "description" else before.get(name, "")
        if name == "expires_at":  # compared as instants: the form has minutes, the value seconds and a zone
            value = iso(instant(form, "new_expires_at")) if value else None
            was = was and iso(instant({"x": was}, "x"))
        if value != was:
            changes[name] = value
    if "new_variants" in form:
        variants = parse_variants(text(form, "new_variants"))
        if variants != (before.get("variants") or []):
            changes["variants"] = variants
    if not changes:
        raise InvalidInput("new_description", "nothing changed: edit a field first")
    return DefinitionEdit(flag, changes, reason(form), expected_version(form))
