"""Which flags are due for removal: a pure report over the folded state.

A flag is stale when it is past its expiry, or when nothing about it changed
for `days` days and it is fully on or fully off: every setting in force gives
the same value to everyone (no partial rollout, no experiment split, nothing
scheduled), so the code paths behind it can go.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from events import ValueType
from flagcore.model import Definition, Setting
from flagcore.state import FlagState


class StaleReason(StrEnum):
    EXPIRED = "expired"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class StaleFlag:
    key: str
    kind: str
    owner: str | None
    reason: StaleReason
    last_changed_at: datetime | None
    expires_at: datetime | None
    value: bool | None  # the value everyone gets; None for an expired flag that is still split, or a typed flag


def stale_flags(state: FlagState, *, now: datetime, days: int) -> list[StaleFlag]:
    """Live (not archived) flags that are expired or unchanged and fully on/off for `days` days, by key."""
    settings = _settings_by_flag(state)
    cutoff = now - timedelta(days=days)
    report = []
    for key in sorted(state.catalog.definitions):
        definition = state.catalog.definitions[key]
        if definition.archived:
            continue
        mine = settings.get(key, [])
        last = _last_change(definition, mine)
        value = _uniform_value(definition, state.catalog.system.get(key), mine, now)
        if definition.expires_at is not None and definition.expires_at <= now:
            reason = StaleReason.EXPIRED
        elif value is not None and last is not None and last <= cutoff:
            reason = StaleReason.UNCHANGED
        else:
            continue
        report.append(
            StaleFlag(key, definition.kind.value, definition.owner, reason, last, definition.expires_at, value)
        )
    return report


def _settings_by_flag(state: FlagState) -> dict[str, list[Setting]]:
    """Every override of every tenant, per flag (system defaults are in the catalogue)."""
    found: dict[str, list[Setting]] = {}
    for rules in state.tenants.values():
        for key, setting in rules.org.items():
            found.setdefault(key, []).append(setting)
        for (_, key), setting in [*rules.platform.items(), *rules.user.items()]:
            found.setdefault(key, []).append(setting)
    return found


def _last_change(definition: Definition, overrides: Iterable[Setting]) -> datetime | None:
    """When anything about the flag last changed (definition, system default or any override)."""
    sources = [definition.source, *(s.source for s in overrides)]
    instants = [s.occurred_at for s in sources if s is not None]
    return max(instants, default=None)


def _uniform_value(
    definition: Definition, system: Setting | None, overrides: list[Setting], now: datetime
) -> bool | None:
    """The one value every subject gets now and later, or None when subjects differ or a step is pending."""
    if definition.killed:
        return False
    if definition.value_type is not ValueType.BOOLEAN:
        return None  # a typed flag is reported when it expires (which value everyone gets is not a bool)
    values = set()
    for setting in [s for s in (system, *overrides) if s is not None]:
        if setting.next_change(now) is not None:
            return None
        value = _fixed_value(setting.in_force(now))
        if value is None:
            return None
        values.add(value)
    if system is None:
        values.add(False)  # subjects no level speaks for get the built-in default: off
    if True in values and definition.variants:
        return None  # an experiment split is not "fully on"
    return values.pop() if len(values) == 1 else None


def _fixed_value(setting: Setting) -> bool | None:
    """On or off for every subject under this setting, or None for a partial rollout."""
    if setting.enabled is False or setting.rollout_percentage == 0:
        return False
    if setting.split is not None or setting.variant is not None:
        return None  # a boolean level choosing an arm or a split: not "fully on"
    if setting.rollout_percentage in (None, 100):
        return True
    return None
