"""How one change moves the value of its stream: the single rule shared by the
command side (to record previous → new) and the fold (to rebuild state).

A setting's value may hold a `schedule` of future steps. Every setting change
first folds in the steps due by its own instant (`at`, the event's
`occurred_at`), so a stored schedule only ever holds steps later than the
stream's last event and evaluation can apply the due ones for any `now`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from events import (
    ApiKeyCreated,
    ApiKeyExpirySet,
    ApiKeyRevoked,
    Change,
    FlagArchived,
    FlagChange,
    FlagDefined,
    FlagKind,
    FlagUpdated,
    ForeignRecordAcknowledged,
    KillSwitchEngaged,
    KillSwitchReleased,
    OrgOverrideCleared,
    OrgOverrideSet,
    PlatformOverrideCleared,
    PlatformOverrideSet,
    RolloutPercentageSet,
    ScheduledSettingCancelled,
    SegmentArchived,
    SegmentChange,
    SegmentChanged,
    SegmentDefined,
    SettingScheduled,
    SubscriptionChange,
    SubscriptionChanged,
    SubscriptionCreated,
    SubscriptionDeleted,
    SubscriptionPaused,
    SubscriptionResumed,
    SystemDefaultSet,
    TargetingRulesSet,
    UserOverrideCleared,
    UserOverrideSet,
    ValueType,
    VariantSelected,
)
from events.changes import selection_value
from flagcore.errors import InvalidTransition
from flagcore.instants import format_instant, parse_instant

Value = dict[str, Any] | None


def transition(previous: Value, change: Change, *, at: datetime | None = None) -> Value:
    """The stream's value after `change` made at `at`; raises `InvalidTransition` when it cannot apply.

    `at` (the event's `occurred_at`) matters only to settings with a schedule: the
    steps due by then are folded in first. Without it nothing is folded.
    """
    match change:
        case FlagDefined():
            if previous is not None:
                raise InvalidTransition(f"flag {change.flag_key!r} is already defined")
            return _described(change, {})
        case FlagUpdated():
            _require_live_definition(previous, change)
            assert previous is not None
            if previous.get("killed") and change.kind is not FlagKind.OPS:
                raise InvalidTransition(f"flag {change.flag_key!r} has its kill switch engaged: it stays an ops flag")
            was = previous.get("value_type", ValueType.BOOLEAN.value)
            if change.value_type.value != was:
                raise InvalidTransition(f"flag {change.flag_key!r} is a {was} flag: its value type cannot change")
            return _described(change, previous)
        case FlagArchived():
            _require_live_definition(previous, change)
            return {**previous, "archived": True}  # type: ignore[dict-item]
        case KillSwitchEngaged() | KillSwitchReleased():
            _require_live_definition(previous, change)
            assert previous is not None
            if previous["kind"] != FlagKind.OPS.value:
                kind = previous["kind"]
                raise InvalidTransition(f"flag {change.flag_key!r} is a {kind} flag: only ops flags have a kill switch")
            return {**previous, "killed": isinstance(change, KillSwitchEngaged)}
        case SystemDefaultSet() | OrgOverrideSet() | PlatformOverrideSet() | UserOverrideSet():
            before = caught_up(previous, at) or {}
            return _setting(change.enabled, before.get("rollout_percentage"), before.get("schedule"), _chosen(before))
        case OrgOverrideCleared() | PlatformOverrideCleared() | UserOverrideCleared():
            return None  # the whole override goes, schedule included
        case RolloutPercentageSet():
            before = caught_up(previous, at) or {}
            return _setting(before.get("enabled"), change.percentage, before.get("schedule"), _chosen(before))
        case VariantSelected():
            before = caught_up(previous, at) or {}
            enabled, pct = before.get("enabled"), before.get("rollout_percentage")
            return _setting(enabled, pct, before.get("schedule"), selection_value(change))
        case TargetingRulesSet():
            # The full new list replaces the old; an empty one leaves the stream saying nothing.
            rules = [r.model_dump(mode="json", exclude_none=True) for r in change.rules]
            return {"rules": rules} if rules else None
        case SettingScheduled():
            before = caught_up(previous, at) or {}
            if at is not None and change.effective_at <= at:
                raise InvalidTransition(f"a step at {format_instant(change.effective_at)} is not in the future")
            step = {
                "at": format_instant(change.effective_at),
                "enabled": change.enabled,
                "rollout_percentage": change.rollout_percentage,
            }
            steps = [s for s in before.get("schedule") or () if parse_instant(s["at"]) != change.effective_at]
            steps.append(step)
            steps.sort(key=lambda s: parse_instant(s["at"]))
            return _setting(before.get("enabled"), before.get("rollout_percentage"), steps, _chosen(before))
        case ScheduledSettingCancelled():
            before = caught_up(previous, at) or {}
            steps = [s for s in before.get("schedule") or () if parse_instant(s["at"]) != change.effective_at]
            if len(steps) == len(before.get("schedule") or ()):
                raise InvalidTransition(f"nothing is scheduled at {format_instant(change.effective_at)}")
            return _setting(before.get("enabled"), before.get("rollout_percentage"), steps, _chosen(before))
        case ApiKeyCreated():
            if previous is not None:
                raise InvalidTransition(f"key {change.key_id} already exists")
            return {
                "name": change.name,
                "role": change.role.value,
                "org_id": change.org_id,
                "expires_at": _instant(change.expires_at),
                "revoked": False,
            }
        case ApiKeyRevoked() | ApiKeyExpirySet():
            if previous is None or previous.get("revoked"):
                raise InvalidTransition(f"key {change.key_id} does not exist or is revoked")
            if isinstance(change, ApiKeyRevoked):
                return {**previous, "revoked": True}
            return {**previous, "expires_at": _instant(change.expires_at)}
        case SubscriptionChange():
            return subscription_transition(previous, change)
        case ForeignRecordAcknowledged():
            if previous is not None:
                raise InvalidTransition(f"the record at {change.partition}/{change.offset} is acknowledged already")
            return {"partition": change.partition, "offset": change.offset, "sha256": change.sha256}
        case SegmentChange():
            return segment_transition(previous, change)
    raise InvalidTransition(f"unknown change {type(change).__name__}")


def segment_transition(previous: Value, change: SegmentChange) -> Value:
    """A segment's value: `{"name", "description", "conditions", "archived"}`; archived is final."""
    if isinstance(change, SegmentDefined):
        if previous is not None:
            raise InvalidTransition(f"segment {change.segment_key!r} is already defined")
    elif previous is None:
        raise InvalidTransition(f"segment {change.segment_key!r} is not defined")
    elif previous.get("archived"):
        raise InvalidTransition(f"segment {change.segment_key!r} is archived")
    match change:
        case SegmentDefined() | SegmentChanged():
            return {
                "name": change.name,
                "description": change.description,
                "conditions": [c.model_dump(mode="json", exclude_none=True) for c in change.conditions],
                "archived": False,
            }
        case SegmentArchived():
            return {**previous, "archived": True}  # type: ignore[dict-item]
    raise InvalidTransition(f"unknown change {type(change).__name__}")


def subscription_transition(previous: Value, change: SubscriptionChange) -> Value:
    """A subscription's value: its destination (sealed), its filters, whether it is paused; `{"deleted": true}`
    once gone."""
    if isinstance(change, SubscriptionCreated):
        if previous is not None:
            raise InvalidTransition(f"subscription {change.subscription_id} already exists")
        sealed = {"destination": change.destination.value, "target": change.target, "sealed": change.sealed}
        return {**sealed, **_filters(change), "paused": False}
    if previous is None or previous.get("deleted"):
        raise InvalidTransition(f"subscription {change.subscription_id} does not exist or is deleted")
    match change:
        case SubscriptionChanged():
            return {**previous, **_filters(change)}
        case SubscriptionPaused() | SubscriptionResumed():
            return {**previous, "paused": isinstance(change, SubscriptionPaused)}
        case SubscriptionDeleted():
            return {"deleted": True}
    raise InvalidTransition(f"unknown change {type(change).__name__}")


def _filters(change: SubscriptionCreated | SubscriptionChanged) -> dict[str, Any]:
    return {
        "name": change.name,
        "flag_pattern": change.flag_pattern,
        "groups": list(change.groups),
        "kinds": [k.value for k in change.kinds],
        "levels": [lv.value for lv in change.levels],
        "event_types": list(change.event_types),
    }


def _described(change: FlagDefined | FlagUpdated, previous: dict[str, Any]) -> dict[str, Any]:
    """A definition's value; variants, expiry and the kill switch appear only once set, as old values lack them."""
    value: dict[str, Any] = {
        "kind": change.kind.value,
        "description": change.description,
        "owner": change.owner,
        "group": change.group,
        "archived": False,
    }
    if previous.get("killed"):
        value["killed"] = True
    if change.variants:
        value["variants"] = [{"name": v.name, "weight": v.weight} for v in change.variants]
    if change.expires_at is not None:
        value["expires_at"] = format_instant(change.expires_at)
    if change.value_type is not ValueType.BOOLEAN:
        value["value_type"] = change.value_type.value
        value["values"] = dict(change.values)
        value["default_variant"] = change.default_variant
        value["off_variant"] = change.off_variant
    return value


def _setting(
    enabled: bool | None,
    pct: int | None,
    schedule: list[dict[str, Any]] | None,
    chosen: dict[str, Any] | None = None,
) -> Value:
    """A setting's value; None when it says nothing. `schedule` and the level's `variant` or `split`
    (`chosen`) appear only when set, so values written before they existed are reproduced byte for byte."""
    if enabled is None and pct is None and not schedule and not chosen:
        return None
    value: dict[str, Any] = {"enabled": enabled, "rollout_percentage": pct}
    if schedule:
        value["schedule"] = schedule
    if chosen:
        value.update(chosen)
    return value


def _chosen(value: dict[str, Any]) -> dict[str, Any]:
    """The `variant` or `split` a setting's value holds (empty: it serves the flag's default)."""
    return {k: value[k] for k in ("variant", "split") if k in value}


def caught_up(value: Value, at: datetime | None) -> Value:
    """`value` with the steps due by `at` applied to it and dropped from its schedule."""
    if value is None or at is None or not value.get("schedule"):
        return value
    enabled, pct = value.get("enabled"), value.get("rollout_percentage")
    pending = []
    for step in value["schedule"]:
        if parse_instant(step["at"]) > at:
            pending.append(step)
            continue
        enabled = enabled if step["enabled"] is None else step["enabled"]
        pct = pct if step["rollout_percentage"] is None else step["rollout_percentage"]
    return _setting(enabled, pct, pending, _chosen(value))


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _require_live_definition(previous: Value, change: FlagChange) -> None:
    if previous is None:
        raise InvalidTransition(f"flag {change.flag_key!r} is not defined")
    if previous.get("archived"):
        raise InvalidTransition(f"flag {change.flag_key!r} is archived")
