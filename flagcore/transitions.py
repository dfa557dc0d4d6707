"""How one change moves the value of its stream: the single rule shared by the
command side (to record previous → new) and the fold (to rebuild state)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from events import (
    ApiKeyCreated,
    ApiKeyExpirySet,
    ApiKeyRevoked,
    Change,
    FlagArchived,
    FlagDefined,
    FlagUpdated,
    OrgOverrideCleared,
    OrgOverrideSet,
    PlatformOverrideCleared,
    PlatformOverrideSet,
    RolloutPercentageSet,
    SystemDefaultSet,
    UserOverrideCleared,
    UserOverrideSet,
)
from flagcore.errors import InvalidTransition

Value = dict[str, Any] | None


def transition(previous: Value, change: Change) -> Value:
    """The stream's value after `change`; raises `InvalidTransition` when it cannot apply."""
    match change:
        case FlagDefined():
            if previous is not None:
                raise InvalidTransition(f"flag {change.flag_key!r} is already defined")
            return {
                "kind": change.kind.value,
                "description": change.description,
                "owner": change.owner,
                "group": change.group,
                "archived": False,
            }
        case FlagUpdated():
            _require_live_definition(previous, change)
            return {
                "kind": change.kind.value,
                "description": change.description,
                "owner": change.owner,
                "group": change.group,
                "archived": False,
            }
        case FlagArchived():
            _require_live_definition(previous, change)
            return {**previous, "archived": True}  # type: ignore[dict-item]
        case SystemDefaultSet() | OrgOverrideSet() | PlatformOverrideSet() | UserOverrideSet():
            return {
                "enabled": change.enabled,
                "rollout_percentage": (previous or {}).get("rollout_percentage"),
            }
        case OrgOverrideCleared() | PlatformOverrideCleared() | UserOverrideCleared():
            return None
        case RolloutPercentageSet():
            enabled = (previous or {}).get("enabled")
            if enabled is None and change.percentage is None:
                return None
            return {"enabled": enabled, "rollout_percentage": change.percentage}
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
    raise InvalidTransition(f"unknown change {type(change).__name__}")


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _require_live_definition(previous: Value, change: Change) -> None:
    if previous is None:
        raise InvalidTransition(f"flag {change.flag_key!r} is not defined")
    if previous.get("archived"):
        raise InvalidTransition(f"flag {change.flag_key!r} is archived")
