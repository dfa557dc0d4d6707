"""Planning one tenant's part of a batch: its decoded events folded onto the stored stream heads.

No I/O. `plan_tenant` returns what the batch writes for the tenant (the final row
per key, the new heads, the history rows) and the cache documents it makes stale;
`Store` and `Projector` (in `services.projector.store` and `.projection`) do the I/O
around it. A definition event that cannot apply to the stored definition is
rejected here, for the dead letters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from events import GENESIS_HASH, DecodeError, Level, TargetingRulesSet
from flaglog import Decoded
from flaglog.checks import definition_value
from services.projector.cache_targets import CacheTarget
from services.projector.heads import Head
from services.projector.rows import (
    DefinitionRow,
    HistoryRow,
    OverrideKey,
    RulesRow,
    SettingRow,
    definition_row,
    history_row,
    override_key,
    rules_row,
    setting_row,
)


def group_by_tenant(decoded: Iterable[Decoded]) -> dict[str | None, list[Decoded]]:
    """Events per org (None: definitions and system settings), each list in log order.

    A stream belongs to one org, so tenants are independent and can be applied in any order.
    """
    groups: dict[str | None, list[Decoded]] = {}
    for item in decoded:
        groups.setdefault(item.envelope.org_id, []).append(item)
    return groups


@dataclass(slots=True)
class TenantPlan:
    """What one tenant's part of a batch writes: final rows per key, heads, history."""

    org_id: str | None
    applied: int = 0
    duplicates: int = 0
    chain_breaks: list[str] = field(default_factory=list)
    heads: dict[str, Head] = field(default_factory=dict)
    definitions: dict[str, DefinitionRow] = field(default_factory=dict)
    system: dict[str, SettingRow | None] = field(default_factory=dict)  # None: delete
    overrides: dict[OverrideKey, SettingRow | None] = field(default_factory=dict)  # None: delete
    rules: dict[str, RulesRow | None] = field(default_factory=dict)  # rules stream → its row; None: delete
    history: list[HistoryRow] = field(default_factory=list)
    invalidations: set[CacheTarget] = field(default_factory=set)
    rejected: list[tuple[Decoded, str]] = field(default_factory=list)  # for the dead letters

    @property
    def changed(self) -> bool:
        return self.applied > 0

    def absorb(self, later: TenantPlan) -> None:
        """Add the plan of this tenant's next events (planned on this plan's heads): one plan for both.

        Last row per key wins, as if both had been planned as one batch; history rows are all kept.
        """
        assert later.org_id == self.org_id
        self.applied += later.applied
        self.duplicates += later.duplicates
        self.chain_breaks += later.chain_breaks
        self.heads.update(later.heads)
        self.definitions.update(later.definitions)
        self.system.update(later.system)
        self.overrides.update(later.overrides)
        self.rules.update(later.rules)
        self.history += later.history
        self.invalidations |= later.invalidations
        self.rejected += later.rejected


def plan_tenant(
    org_id: str | None,
    items: Sequence[Decoded],
    stored: Mapping[str, Head],
    definitions: Mapping[str, dict[str, Any]] | None = None,
) -> TenantPlan:
    """Fold one tenant's events (in log order) onto the stored stream heads.

    An event at or below its stream's head is a duplicate and skipped. A `prev_hash`
    that is not the head's hash is recorded as a chain break, and still applied:
    the log is the record, the projector only reports what it sees. Definition
    events apply to `definitions`, the stored definitions of their flags; one that
    cannot apply is rejected (it goes to the dead letters).
    """
    plan = TenantPlan(org_id)
    current = dict(definitions or {})
    for item in items:
        env = item.envelope
        head = plan.heads.get(env.stream) or stored.get(env.stream)
        if head is not None and env.version <= head.version:
            plan.duplicates += 1
            continue
        if item.scope is None:
            key: str = env.flag_key  # type: ignore[assignment]  # a flag event's key, never None
            try:
                value = definition_value(current.get(key), env)
            except DecodeError as exc:
                plan.rejected.append((item, exc.reason))
                continue
            current[key] = value
            item = replace(item, value=value)
        expected_version = 1 if head is None else head.version + 1
        expected_hash = head.hash if head is not None else GENESIS_HASH
        if env.prev_hash != expected_hash or env.version != expected_version:
            plan.chain_breaks.append(
                f"{env.stream} v{env.version} (event {env.event_id}): expected v{expected_version} "
                f"after {expected_hash[:12]}…, got prev_hash {env.prev_hash[:12]}…"
            )
        plan.heads[env.stream] = Head(env.version, env.hash)
        _place(plan, item)
        plan.history.append(history_row(env, item.scope))
        plan.invalidations.add(CacheTarget.of(item.scope))
        plan.applied += 1
    return plan


def _place(plan: TenantPlan, item: Decoded) -> None:
    env, scope, value = item.envelope, item.scope, item.value
    key: str = env.flag_key  # type: ignore[assignment]  # a flag event's key, never None
    if scope is None:
        assert value is not None  # computed by plan_tenant
        plan.definitions[key] = definition_row(env, value)
    elif isinstance(env.data, TargetingRulesSet):  # its own stream and table, apart from the level's setting
        plan.rules[env.stream] = None if value is None else rules_row(env, value)
    elif scope.level is Level.SYSTEM:
        plan.system[key] = None if value is None else setting_row(env, value)
    else:
        row = None if value is None else setting_row(env, value)
        plan.overrides[override_key(scope, key)] = row
