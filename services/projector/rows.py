"""The rows the projector writes, in the read models' column order, built from events.

`stored_definition` goes the other way: a stored `flags` row back to the definition
value that `transition` takes, so a definition event can be applied to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import orjson

from events import Envelope, Level, Scope, ValueType
from flagcore import format_instant, parse_instant


class DefinitionRow(NamedTuple):
    flag_key: str
    kind: str
    description: str
    owner: str | None
    grp: str
    archived: bool
    version: int
    event_id: UUID
    actor: str
    reason: str
    updated_at: datetime
    killed: bool
    variants: str  # JSON text: [{"name", "weight"}]
    expires_at: datetime | None
    value_type: str
    variant_values: str  # JSON text: a typed flag's {name: value}; {} for a boolean flag
    default_variant: str | None  # None for a boolean flag (its variants are on/off)
    off_variant: str | None


class SettingRow(NamedTuple):
    """A row of `system_defaults` (the org/platform/user part is in the key)."""

    enabled: bool | None
    rollout_percentage: int | None
    stream: str
    version: int
    event_id: UUID
    actor: str
    reason: str
    updated_at: datetime
    schedule: str | None  # JSON text of the pending steps; None when nothing is scheduled
    variant: str | None  # the variant the level serves when on
    split: str | None  # JSON text of the level's weighted split; None with `variant`: the flag's default


class RulesRow(NamedTuple):
    """A row of `targeting_rules` but its `stream` and `org_id` (the key, and the plan's tenant)."""

    flag_key: str
    rules: str  # JSON text: the stream value's list, [{id, conditions, variant | split}]
    version: int
    event_id: UUID
    actor: str
    reason: str
    updated_at: datetime


class OverrideKey(NamedTuple):
    level: str
    platform: str  # '' when not at platform level
    user_id: str  # '' when not at user level
    flag_key: str


class HistoryRow(NamedTuple):
    event_id: UUID
    sequence: int
    stream: str
    version: int
    type: str
    flag_key: str
    level: str | None
    platform: str | None
    user_id: str | None
    actor_id: str
    actor_name: str
    reason: str
    previous: str | None  # JSON text
    new: str | None
    occurred_at: datetime


def setting_row(envelope: Envelope, value: dict[str, Any]) -> SettingRow:
    return SettingRow(
        value.get("enabled"),
        value.get("rollout_percentage"),
        envelope.stream,
        envelope.version,
        envelope.event_id,
        envelope.actor.name,
        envelope.reason,
        envelope.occurred_at,
        _json(value["schedule"]) if value.get("schedule") else None,
        value.get("variant"),
        None if value.get("split") is None else orjson.dumps(value["split"]).decode(),
    )


def rules_row(envelope: Envelope, value: dict[str, Any]) -> RulesRow:
    return RulesRow(
        envelope.flag_key,  # type: ignore[arg-type]  # a flag event's key, never None
        orjson.dumps(value["rules"]).decode(),
        envelope.version,
        envelope.event_id,
        envelope.actor.name,
        envelope.reason,
        envelope.occurred_at,
    )


def definition_row(envelope: Envelope, value: dict[str, Any]) -> DefinitionRow:
    return DefinitionRow(
        envelope.flag_key,  # type: ignore[arg-type]  # a flag event's key, never None
        value["kind"],
        value["description"],
        value.get("owner"),
        value["group"],
        bool(value.get("archived", False)),
        envelope.version,
        envelope.event_id,
        envelope.actor.name,
        envelope.reason,
        envelope.occurred_at,
        bool(value.get("killed", False)),
        orjson.dumps(value.get("variants") or []).decode(),
        None if value.get("expires_at") is None else parse_instant(value["expires_at"]),
        value.get("value_type", ValueType.BOOLEAN.value),
        orjson.dumps(value.get("values") or {}).decode(),
        value.get("default_variant"),
        value.get("off_variant"),
    )


def stored_definition(row: Mapping[str, Any]) -> dict[str, Any]:
    """A `flags` row as the definition stream value `transition` takes (optional keys only when set)."""
    value: dict[str, Any] = {
        "kind": row["kind"],
        "description": row["description"],
        "owner": row["owner"],
        "group": row["grp"],
        "archived": row["archived"],
    }
    if row["killed"]:
        value["killed"] = True
    variants = orjson.loads(row["variants"])
    if variants:
        value["variants"] = variants
    if row["expires_at"] is not None:
        value["expires_at"] = format_instant(row["expires_at"])
    if row["value_type"] != ValueType.BOOLEAN.value:  # as `transition` writes a typed flag's value
        value["value_type"] = row["value_type"]
        value["values"] = orjson.loads(row["variant_values"])
        value["default_variant"] = row["default_variant"]
        value["off_variant"] = row["off_variant"]
    return value


def override_key(scope: Scope, flag_key: str) -> OverrideKey:
    assert scope.level is not Level.SYSTEM
    return OverrideKey(
        scope.level.value,
        scope.platform.value if scope.platform is not None else "",
        scope.user_id or "",
        flag_key,
    )


def history_row(envelope: Envelope, scope: Scope | None) -> HistoryRow:
    return HistoryRow(
        envelope.event_id,
        envelope.sequence,
        envelope.stream,
        envelope.version,
        envelope.type,
        envelope.flag_key,  # type: ignore[arg-type]  # a flag event's key, never None
        None if scope is None else scope.level.value,
        None if scope is None or scope.platform is None else scope.platform.value,
        None if scope is None else scope.user_id,
        envelope.actor.id,
        envelope.actor.name,
        envelope.reason,
        _json(envelope.previous),
        _json(envelope.new),
        envelope.occurred_at,
    )


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()
