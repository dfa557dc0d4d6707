"""Deciding what a command means: plain functions from (command, current values) to changes.

No I/O. The caller reads the stream's value and the flag's definition, the
handler returns the events to append, already stripped of no-ops, so "nothing
to do" is an empty list and never an event that changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from events import (
    FlagArchived,
    FlagChange,
    FlagDefined,
    FlagKind,
    FlagUpdated,
    KillSwitchEngaged,
    KillSwitchReleased,
    Level,
    OrgOverrideCleared,
    OrgOverrideSet,
    PlatformOverrideCleared,
    PlatformOverrideSet,
    RolloutPercentageSet,
    ScheduledSettingCancelled,
    Scope,
    SettingScheduled,
    SystemDefaultSet,
    TargetingRulesSet,
    UserOverrideCleared,
    UserOverrideSet,
    ValueType,
    Variant,
    VariantSelected,
)
from events.changes import check_variants
from flagcore import InvalidTransition, caught_up, parse_instant, transition
from flagcore.model import Definition, Setting
from services.command.commands import (
    UNSET,
    AnyCommand,
    ArchiveFlag,
    CancelScheduledSetting,
    ClearOverride,
    DefineFlag,
    EngageKillSwitch,
    ReleaseKillSwitch,
    ScheduleSetting,
    SetRules,
    SetSetting,
    UpdateFlag,
)
from services.command.errors import InvalidCommand, UnknownFlag
from services.command.rules import checked_rules
from services.command.typed import checked_selection, checked_values

Value = dict[str, Any] | None
C = TypeVar("C", bound=BaseModel)

__all__ = ["decide", "require_live_flag"]


def decide(command: AnyCommand, *, current: Value, definition: Value, now: datetime | None = None) -> list[FlagChange]:
    """The changes `command` makes, at `now`, to a stream whose value is `current`.

    `definition` is the value of the flag's definition stream (the same as
    `current` for definition commands). `now` is the instant the events will
    carry: a setting's scheduled steps due by then count as in force. Raises
    `UnknownFlag`, `InvalidCommand` or `flagcore.InvalidTransition`.
    """
    match command:
        case DefineFlag():
            return _define(command, current)
        case UpdateFlag():
            return _update(command, current)
        case ArchiveFlag():
            return _archive(command, current)
        case EngageKillSwitch() | ReleaseKillSwitch():
            return _kill_switch(command, current)
        case SetSetting():
            require_live_flag(command.flag_key, definition)
            return _set(command, caught_up(current, now), now, definition)
        case ClearOverride():
            require_live_flag(command.flag_key, definition)
            return _clear(command, current)
        case ScheduleSetting():
            require_live_flag(command.flag_key, definition)
            return _schedule(command, current, now)
        case CancelScheduledSetting():
            require_live_flag(command.flag_key, definition)
            return _cancel(command, current, now)
        case SetRules():
            require_live_flag(command.flag_key, definition)
            assert definition is not None
            return _set_rules(command, current, Definition.from_value(command.flag_key, definition))
    raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover


def require_live_flag(flag_key: str, definition: Value) -> None:
    """Settings only apply to a defined, non-archived flag."""
    if definition is None:
        raise UnknownFlag(flag_key)
    if definition.get("archived"):
        raise UnknownFlag(flag_key, archived=True)


def _define(command: DefineFlag, current: Value) -> list[FlagChange]:
    value_type, default, off = command.value_type, command.default_variant, command.off_variant
    values = checked_values(value_type, command.values, default, off, arms_given=bool(command.variants))
    _check_variants(FlagKind(command.kind), command.variants)
    change = _build(
        FlagDefined,
        flag_key=command.flag_key,
        kind=command.kind,
        description=command.description,
        owner=command.owner,
        group=command.group,
        variants=command.variants,
        expires_at=command.expires_at,
        value_type=value_type,
        values=values,
        default_variant=default,
        off_variant=off,
    )
    transition(current, change)  # raises InvalidTransition when the flag already exists
    return [change]


def _update(command: UpdateFlag, current: Value) -> list[FlagChange]:
    if current is None:
        raise UnknownFlag(command.flag_key)
    if current.get("archived"):
        raise InvalidTransition(f"flag {command.flag_key!r} is archived and cannot be updated")
    kind = FlagKind(current["kind"] if command.kind is UNSET else command.kind)
    if current.get("killed") and kind is not FlagKind.OPS:
        raise InvalidCommand("kind: the kill switch is engaged; release it before changing the kind", field="kind")
    variants = current.get("variants") or () if command.variants is UNSET else command.variants
    value_type = ValueType(current.get("value_type", ValueType.BOOLEAN.value))
    if command.value_type not in (UNSET, value_type):
        detail = f"type: {command.flag_key!r} is a {value_type.value} flag; a flag's type never changes"
        raise InvalidCommand(detail, field="type")
    values = current.get("values") or {} if command.values is UNSET else command.values
    default = current.get("default_variant") if command.default_variant is UNSET else command.default_variant
    off = current.get("off_variant") if command.off_variant is UNSET else command.off_variant
    values = checked_values(value_type, values, default, off, arms_given=command.variants is not UNSET)
    _check_variants(kind, tuple(variants))
    expires = current.get("expires_at") if command.expires_at is UNSET else command.expires_at
    change = _build(
        FlagUpdated,
        flag_key=command.flag_key,
        kind=kind,
        description=current["description"] if command.description is UNSET else command.description,
        owner=current.get("owner") if command.owner is UNSET else command.owner,
        group=current["group"] if command.group is UNSET else command.group,
        variants=variants,
        expires_at=expires,
        value_type=value_type,
        values=values,
        default_variant=default,
        off_variant=off,
    )
    return [change] if transition(current, change) != current else []


def _check_variants(kind: FlagKind, variants: tuple[Any, ...]) -> None:
    try:
        check_variants(kind, tuple(_build(Variant, **v) if isinstance(v, dict) else v for v in variants))
    except ValueError as exc:
        raise InvalidCommand(str(exc), field="variants") from exc


def _kill_switch(command: EngageKillSwitch | ReleaseKillSwitch, current: Value) -> list[FlagChange]:
    """Engaging (or releasing) twice changes nothing; only a live ops flag has a kill switch."""
    require_live_flag(command.flag_key, current)
    assert current is not None
    if current["kind"] != FlagKind.OPS.value:
        raise InvalidCommand(
            f"kind: {command.flag_key!r} is a {current['kind']} flag; only ops flags have a kill switch", field="kind"
        )
    engage = isinstance(command, EngageKillSwitch)
    if bool(current.get("killed")) == engage:
        return []
    return [KillSwitchEngaged(flag_key=command.flag_key) if engage else KillSwitchReleased(flag_key=command.flag_key)]


def _schedule(command: ScheduleSetting, current: Value, now: datetime | None) -> list[FlagChange]:
    if now is not None and command.effective_at <= now:
        raise InvalidCommand("effective_at: must be in the future", field="effective_at")
    scope = command.scope
    change = _build(
        SettingScheduled,
        flag_key=command.flag_key,
        level=scope.level,
        org_id=scope.org_id,
        platform=scope.platform,
        user_id=scope.user_id,
        effective_at=command.effective_at,
        enabled=command.enabled,
        rollout_percentage=command.rollout_percentage,
    )
    return [change] if transition(current, change, at=now) != caught_up(current, now) else []


def _cancel(command: CancelScheduledSetting, current: Value, now: datetime | None) -> list[FlagChange]:
    """Cancelling a step that is not (or no longer) pending is refused, naming the instant."""
    pending = {parse_instant(s["at"]) for s in (caught_up(current, now) or {}).get("schedule") or ()}
    if command.effective_at not in pending:
        raise InvalidCommand("effective_at: nothing is scheduled at that instant", field="effective_at")
    scope = command.scope
    return [
        ScheduledSettingCancelled(
            flag_key=command.flag_key,
            level=scope.level,
            org_id=scope.org_id,
            platform=scope.platform,
            user_id=scope.user_id,
            effective_at=command.effective_at,
        )
    ]


def _archive(command: ArchiveFlag, current: Value) -> list[FlagChange]:
    if current is None:
        raise UnknownFlag(command.flag_key)
    if current.get("archived"):
        return []  # archiving twice changes nothing
    return [FlagArchived(flag_key=command.flag_key)]


def _set(command: SetSetting, current: Value, now: datetime | None, definition: Value) -> list[FlagChange]:
    """Reach the target value with the fewest events: the on/off change, then the rollout, then the selection.

    `current` is already caught up to `now`: the values in force, not the stored ones. `enabled: None` clears
    the level; only the fields given with it are set again.
    """
    scope, key = command.scope, command.flag_key
    if scope.level is Level.SYSTEM and command.enabled is None:
        raise InvalidCommand("a system default cannot be cleared: set enabled to true or false", field="enabled")
    selected = command.variant is not UNSET or command.split is not UNSET
    if command.enabled is None and command.rollout_percentage is UNSET and not selected:
        # clearing an override clears the whole level, rollout and selection included (as DELETE does)
        return [] if current is None else [_cleared(scope, key)]
    before = current or {}
    kept = {} if command.enabled is None else before  # what a field left out keeps
    target_enabled = before.get("enabled") if command.enabled is UNSET else command.enabled
    target_rollout = (
        kept.get("rollout_percentage") if command.rollout_percentage is UNSET else command.rollout_percentage
    )
    target_selection = Setting.from_value(kept).selection()
    if selected:
        assert definition is not None  # `require_live_flag` said so
        target_selection = _selection(command, Definition.from_value(key, definition))
    changes: list[FlagChange] = []
    value = current
    if target_enabled != before.get("enabled"):
        change = _cleared(scope, key) if target_enabled is None else _enabled(scope, key, target_enabled)
        value = transition(value, change, at=now)
        changes.append(change)
    if (value or {}).get("rollout_percentage") != target_rollout:
        # A clear removes the rollout too; a rollout given with the clear is set again after it.
        change = _build(RolloutPercentageSet, flag_key=key, **_at(scope), percentage=target_rollout)
        value = transition(value, change, at=now)
        changes.append(change)
    if Setting.from_value(value or {}).selection() != target_selection:
        change = _build(VariantSelected, flag_key=key, **_at(scope), **target_selection)
        value = transition(value, change, at=now)
        changes.append(change)
    return changes


def _selection(command: SetSetting, definition: Definition) -> dict[str, Any]:
    """What the command has the level serve, as the stream value holds it (empty: the flag's default)."""
    variant = None if command.variant is UNSET else command.variant
    split = None if command.split is UNSET else command.split
    checked_selection(definition, variant, split)
    if variant is not None:
        return {"variant": variant}
    if split is not None:
        return {"split": [{"name": arm.name, "weight": arm.weight} for arm in split]}
    return {}


def _set_rules(command: SetRules, current: Value, definition: Definition) -> list[FlagChange]:
    """The full new list replaces the old; the same list again (or clearing none) writes nothing."""
    scope = command.scope
    if scope.level not in (Level.SYSTEM, Level.ORG):
        raise InvalidCommand("targeting rules sit at the system level or an org's", field="level")
    rules = checked_rules(definition, command.rules)
    change = _build(TargetingRulesSet, flag_key=command.flag_key, level=scope.level, org_id=scope.org_id, rules=rules)
    return [change] if transition(current, change) != current else []


def _at(scope: Scope) -> dict[str, Any]:
    return {"level": scope.level, "org_id": scope.org_id, "platform": scope.platform, "user_id": scope.user_id}


def _clear(command: ClearOverride, current: Value) -> list[FlagChange]:
    if command.scope.level is Level.SYSTEM:
        raise InvalidCommand("a system default cannot be cleared", field="enabled")
    return [] if current is None else [_cleared(command.scope, command.flag_key)]


def _enabled(scope: Scope, key: str, enabled: bool) -> FlagChange:
    match scope.level:
        case Level.SYSTEM:
            return SystemDefaultSet(flag_key=key, enabled=enabled)
        case Level.ORG:
            return OrgOverrideSet(flag_key=key, org_id=scope.org_id, enabled=enabled)
        case Level.PLATFORM:
            return PlatformOverrideSet(flag_key=key, org_id=scope.org_id, platform=scope.platform, enabled=enabled)
        case Level.USER:
            return UserOverrideSet(flag_key=key, org_id=scope.org_id, user_id=scope.user_id, enabled=enabled)
    raise AssertionError(scope)  # pragma: no cover


def _cleared(scope: Scope, key: str) -> FlagChange:
    match scope.level:
        case Level.ORG:
            return OrgOverrideCleared(flag_key=key, org_id=scope.org_id)
        case Level.PLATFORM:
            return PlatformOverrideCleared(flag_key=key, org_id=scope.org_id, platform=scope.platform)
        case Level.USER:
            return UserOverrideCleared(flag_key=key, org_id=scope.org_id, user_id=scope.user_id)
    raise InvalidCommand("a system default cannot be cleared", field="enabled")


def _build(cls: type[C], **fields: Any) -> C:
    """Construct a change, reporting a value the event schema refuses as a field error."""
    try:
        return cls(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidCommand(f"{field}: {first['msg']}", field=field) from exc
