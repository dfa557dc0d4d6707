"""The fold: events in log order → the whole flag state, with no I/O.

Each stream is applied at most once per version, so replaying a log (or a log
with duplicates from an at-least-once relay) yields the same state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from events import Envelope, FlagChange, Level, SegmentChange, TargetingRulesSet
from flagcore.model import Catalog, Definition, EventRef, Rules, Segment, Setting, TenantRules
from flagcore.transitions import transition


@dataclass(frozen=True, slots=True)
class StreamHead:
    version: int
    hash: str
    value: dict[str, Any] | None


@dataclass(slots=True)
class FlagState:
    catalog: Catalog = field(default_factory=Catalog)
    tenants: dict[str, TenantRules] = field(default_factory=dict)
    heads: dict[str, StreamHead] = field(default_factory=dict)

    def tenant(self, org_id: str) -> TenantRules:
        """The org's overrides (an empty set when it has none)."""
        rules = self.tenants.get(org_id)
        return rules if rules is not None else TenantRules(org_id)

    def apply(self, envelope: Envelope) -> bool:
        """Apply one event; False when it is a duplicate or older than the stream's head."""
        head = self.heads.get(envelope.stream)
        if head is not None and envelope.version <= head.version:
            return False
        value = transition(head.value if head else None, envelope.data, at=envelope.occurred_at)
        self.heads[envelope.stream] = StreamHead(envelope.version, envelope.hash, value)
        self._place(envelope, value)
        return True

    def _place(self, envelope: Envelope, value: dict[str, Any] | None) -> None:
        change = envelope.data
        if isinstance(change, SegmentChange):
            self._place_segment(envelope, change, value)
            return
        if not isinstance(change, FlagChange):
            return  # API key events are in the log, but evaluation never reads them
        source = EventRef.of(envelope)
        scope = change.scope
        key = change.flag_key
        if scope is None:
            assert value is not None  # definitions are never removed, only archived
            self.catalog.definitions[key] = Definition.from_value(key, value, source)
            return
        if isinstance(change, TargetingRulesSet):
            self._place_rules(scope.org_id, key, None if value is None else Rules.from_value(value, source))
            return
        setting = None if value is None else Setting.from_value(value, source)
        if scope.level is Level.SYSTEM:
            _put(self.catalog.system, key, setting)
            return
        assert scope.org_id is not None
        rules = self.tenants.setdefault(scope.org_id, TenantRules(scope.org_id))
        if scope.level is Level.ORG:
            _put(rules.org, key, setting)
        elif scope.level is Level.PLATFORM:
            _put(rules.platform, (str(scope.platform), key), setting)
        else:
            _put(rules.user, (str(scope.user_id), key), setting)

    def _place_segment(self, envelope: Envelope, change: SegmentChange, value: dict[str, Any] | None) -> None:
        """A system segment in the catalogue (every org's rules may name it), an org's with its overrides."""
        assert value is not None  # segments are never removed, only archived
        org_id, key = change.org_id, change.segment_key
        table = (
            self.catalog.segments if org_id is None else self.tenants.setdefault(org_id, TenantRules(org_id)).segments
        )
        table[key] = Segment.from_value(key, org_id, value, EventRef.of(envelope))

    def _place_rules(self, org_id: str | None, key: str, rules: Rules | None) -> None:
        tenant = None if org_id is None else self.tenants.setdefault(org_id, TenantRules(org_id))
        table = self.catalog.rules if tenant is None else tenant.rules
        if rules is None:
            table.pop(key, None)
        else:
            table[key] = rules


def _put(table: dict[Any, Setting], key: Any, setting: Setting | None) -> None:
    if setting is None:
        table.pop(key, None)
    else:
        table[key] = setting


def fold(events: Iterable[Envelope], state: FlagState | None = None) -> FlagState:
    """Fold `events` (in log order) onto `state`, or onto an empty state."""
    state = state if state is not None else FlagState()
    for envelope in events:
        state.apply(envelope)
    return state
