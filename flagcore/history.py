"""Time travel, pure: the state as of an instant, what decided an answer, diffs, and snapshots.

Everything here works on a `FlagState` folded by the same `fold`, and answers with
the same `evaluate`, as the live service, so an answer about the past is computed
exactly as the live answer was. A snapshot is one scope's part of a folded state (the system part: definitions
and system defaults; or one org's overrides) as plain JSON-able data, together with
the heads of its streams, so it can be checked against the log before it is trusted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flagcore.evaluation import Evaluation, evaluate
from flagcore.model import Definition, EventRef, Rules, Segment, Setting, TenantRules
from flagcore.state import FlagState, StreamHead

__all__ = [
    "SYSTEM_SCOPE",
    "FlagView",
    "Snapshot",
    "diff_views",
    "org_view",
    "restore",
    "scope_of_stream",
    "snapshot",
]

SYSTEM_SCOPE = ""  # the scope name of definitions and system defaults


# --- views and diffs --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlagView:
    """One flag for one org (and optionally a platform and user): the answer and every level's say."""

    evaluation: Evaluation
    settings: Mapping[str, Setting]  # "system", "org", "platform:<p>", "user:<u>" -> setting

    def fingerprint(self) -> tuple[Any, ...]:
        """What a diff compares: the answer, why, the deciding event, and each level's value."""
        e = self.evaluation
        decided_by = e.source.event_id if e.source else None
        levels = tuple(
            sorted((name, s.enabled, s.rollout_percentage, s.variant, s.split) for name, s in self.settings.items())
        )
        return (repr(e.value), e.variant, e.reason, e.level, decided_by, e.rollout_percentage, levels, e.rule)


def org_view(
    state: FlagState, org_id: str, *, now: datetime, platform: str | None = None, user_id: str | None = None
) -> dict[str, FlagView]:
    """Every defined flag as `org_id` (at `platform`, for `user_id`) saw it in `state` at `now`."""
    tenant = state.tenant(org_id)
    views = {}
    for key in sorted(state.catalog.definitions):
        evaluation = evaluate(state.catalog, tenant, key, platform=platform, user_id=user_id, now=now)
        views[key] = FlagView(evaluation, _levels(state, tenant, key, platform, user_id))
    return views


def _levels(
    state: FlagState, tenant: TenantRules, key: str, platform: str | None, user_id: str | None
) -> dict[str, Setting]:
    found = {
        "system": state.catalog.system.get(key),
        "org": tenant.org.get(key),
        f"platform:{platform}": tenant.platform.get((platform, key)) if platform is not None else None,
        f"user:{user_id}": tenant.user.get((user_id, key)) if user_id is not None else None,
    }
    return {name: setting for name, setting in found.items() if setting is not None}


def diff_views(
    before: Mapping[str, FlagView], after: Mapping[str, FlagView]
) -> list[tuple[str, FlagView | None, FlagView | None]]:
    """(flag, before, after) for every flag whose answer, reason, deciding event or settings differ."""
    changed = []
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        if (b.fingerprint() if b else None) != (a.fingerprint() if a else None):
            changed.append((key, b, a))
    return changed


# --- snapshots -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One scope's part of a folded state: its stream heads and placed values, as JSON-able data."""

    scope: str  # SYSTEM_SCOPE or an org id
    heads: dict[str, StreamHead]
    doc: dict[str, Any]


def scope_of_stream(stream: str) -> str | None:
    """The scope a flag or segment stream belongs to (see `events.scope`, `events.segments`); None for API key
    and subscription streams."""
    if stream.startswith(("flag/", "segment/")):
        return SYSTEM_SCOPE
    if stream.startswith("org/") and ("/flag/" in stream or stream.split("/", 3)[2:3] == ["segment"]):
        return stream.split("/", 2)[1]
    return None


def snapshot(state: FlagState, scope: str) -> Snapshot:
    """The part of `state` that belongs to `scope`.

    Values are kept once, as the heads' stream values (what `transition` produced);
    the placed entries keep only where they sit and the event that set them.
    """
    heads = {s: h for s, h in state.heads.items() if scope_of_stream(s) == scope}
    doc: dict[str, Any] = {"heads": [[s, h.version, h.hash, h.value] for s, h in sorted(heads.items())]}
    if scope == SYSTEM_SCOPE:
        catalog = state.catalog
        doc["definitions"] = [[k, _ref(d.source)] for k, d in sorted(catalog.definitions.items())]
        doc["system"] = [[k, _ref(s.source)] for k, s in sorted(catalog.system.items())]
        if catalog.rules:  # only once rules exist: snapshots written before them keep their bytes
            doc["rules"] = [[k, _ref(r.source)] for k, r in sorted(catalog.rules.items())]
        if catalog.segments:  # likewise
            doc["segments"] = [[k, _ref(g.source)] for k, g in sorted(catalog.segments.items())]
    elif scope in state.tenants:
        t = state.tenants[scope]
        doc["org"] = [[k, _ref(s.source)] for k, s in sorted(t.org.items())]
        doc["platform"] = [[p, k, _ref(s.source)] for (p, k), s in sorted(t.platform.items())]
        doc["user"] = [[u, k, _ref(s.source)] for (u, k), s in sorted(t.user.items())]
        if t.rules:
            doc["rules"] = [[k, _ref(r.source)] for k, r in sorted(t.rules.items())]
        if t.segments:
            doc["segments"] = [[k, _ref(g.source)] for k, g in sorted(t.segments.items())]
    return Snapshot(scope, heads, doc)


def restore(
    docs: Mapping[str, Mapping[str, Any]],
    state: FlagState | None = None,
    *,
    keep: Callable[[str], bool] | None = None,
) -> FlagState:
    """Rebuild a state from snapshot documents (scope -> doc), onto `state` or an empty one.

    `keep` restores only the streams it accepts: enough for one view of an org, when the
    events folded on top are filtered the same way.
    """
    state = state if state is not None else FlagState()
    for scope, doc in docs.items():
        values = {}
        for stream, version, hash_, value in doc["heads"]:
            if keep is None or keep(stream):
                state.heads[stream] = StreamHead(version, hash_, value)
                values[stream] = value
        if scope == SYSTEM_SCOPE:
            for key, raw in doc.get("definitions", ()):
                if raw[1] in values:
                    state.catalog.definitions[key] = Definition.from_value(key, values[raw[1]], _unref(raw))
            for key, raw in doc.get("system", ()):
                if raw[1] in values:
                    state.catalog.system[key] = _setting(values, raw)
            state.catalog.rules.update((k, _rules(values, r)) for k, r in doc.get("rules", ()) if r[1] in values)
            state.catalog.segments.update(
                (k, _segment(values, k, None, r)) for k, r in doc.get("segments", ()) if r[1] in values
            )
        elif "org" in doc:
            t = state.tenants.setdefault(scope, TenantRules(scope))
            t.org.update((k, _setting(values, r)) for k, r in doc["org"] if r[1] in values)
            t.platform.update(((p, k), _setting(values, r)) for p, k, r in doc["platform"] if r[1] in values)
            t.user.update(((u, k), _setting(values, r)) for u, k, r in doc["user"] if r[1] in values)
            t.rules.update((k, _rules(values, r)) for k, r in doc.get("rules", ()) if r[1] in values)
            t.segments.update((k, _segment(values, k, scope, r)) for k, r in doc.get("segments", ()) if r[1] in values)
    return state


def _setting(values: Mapping[str, Any], raw: list[Any]) -> Setting:
    ref = _unref(raw)
    return Setting.from_value(values[ref.stream], ref)


def _rules(values: Mapping[str, Any], raw: list[Any]) -> Rules:
    ref = _unref(raw)
    return Rules.from_value(values[ref.stream], ref)


def _segment(values: Mapping[str, Any], key: str, org_id: str | None, raw: list[Any]) -> Segment:
    ref = _unref(raw)
    return Segment.from_value(key, org_id, values[ref.stream], ref)


def _ref(ref: EventRef | None) -> list[Any]:
    assert ref is not None  # every folded value records the event that set it
    return [ref.event_id, ref.stream, ref.version, ref.actor, ref.reason, ref.occurred_at.isoformat()]


def _unref(raw: list[Any]) -> EventRef:
    event_id, stream, version, actor, reason, occurred_at = raw
    return EventRef(event_id, stream, version, actor, reason, datetime.fromisoformat(occurred_at))
