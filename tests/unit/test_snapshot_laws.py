"""Snapshot laws over random logs: fold(all) == fold(restore(snapshot), rest) == the projector's rows."""

from __future__ import annotations

import json
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from events import FlagDefined, Level, OrgOverrideSet, to_record
from flagcore import FlagState, fold
from flagcore.history import SYSTEM_SCOPE, restore, scope_of_stream, snapshot
from flaglog import Decoded, decode_record
from services.projector.tenant_plan import group_by_tenant, plan_tenant
from tests.support.factories import LogBuilder
from tests.support.fold_changes import changes


class _Record:
    """A consumed record as the projector sees it (offsets in log order, one partition)."""

    def __init__(self, offset: int, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.topic, self.partition, self.offset = "t", 0, offset
        self.key, self.value, self.headers = key, value, headers


def _parts(state: FlagState) -> dict[str, dict]:
    """Every scope's snapshot document, through JSON as Postgres stores it."""
    scopes = {scope_of_stream(s) for s in state.heads} - {None}
    return {s: json.loads(json.dumps(snapshot(state, s).doc)) for s in scopes}


def _projected(log: list) -> dict[tuple, tuple]:
    """The read-model rows the projector's pure planner writes for this log, keyed like the fold's tables."""
    decoded = []
    for offset, envelope in enumerate(log):
        record = to_record(envelope)
        item = decode_record(_Record(offset, record.key, record.value, record.headers))
        assert isinstance(item, Decoded)
        decoded.append(item)
    rows: dict[tuple, tuple] = {}
    for org, items in group_by_tenant(decoded).items():
        plan = plan_tenant(org, items, {}, {})
        for key, row in plan.definitions.items():
            rows[("definition", key)] = (row.archived, row.event_id)
        for key, row in plan.system.items():
            if row is not None:
                rows[("system", key)] = (row.enabled, row.rollout_percentage, row.event_id)
        for k, row in plan.overrides.items():
            if row is not None:
                rows[(k.level, org, k.platform or k.user_id, k.flag_key)] = (
                    row.enabled, row.rollout_percentage, row.event_id)
    return rows


def _folded(state: FlagState) -> dict[tuple, tuple]:
    rows: dict[tuple, tuple] = {}
    for key, d in state.catalog.definitions.items():
        rows[("definition", key)] = (d.archived, _uuid(d.source))
    for key, s in state.catalog.system.items():
        rows[("system", key)] = (s.enabled, s.rollout_percentage, _uuid(s.source))
    for org, t in state.tenants.items():
        for key, s in t.org.items():
            rows[(Level.ORG.value, org, "", key)] = (s.enabled, s.rollout_percentage, _uuid(s.source))
        for (p, key), s in t.platform.items():
            rows[(Level.PLATFORM.value, org, p, key)] = (s.enabled, s.rollout_percentage, _uuid(s.source))
        for (u, key), s in t.user.items():
            rows[(Level.USER.value, org, u, key)] = (s.enabled, s.rollout_percentage, _uuid(s.source))
    return rows


def _uuid(ref) -> uuid.UUID:  # type: ignore[no-untyped-def]
    return uuid.UUID(ref.event_id)


@settings(max_examples=150, deadline=None)
@given(st.lists(changes, max_size=40), st.integers(0, 40))
def test_fold_all_equals_fold_from_a_snapshot_then_the_rest(change_list, cut: int) -> None:
    log = LogBuilder().extend(change_list)
    cut = min(cut, len(log))
    whole = fold(log)
    resumed = fold(log[cut:], restore(_parts(fold(log[:cut]))))
    assert resumed == whole


@settings(max_examples=150, deadline=None)
@given(st.lists(changes, max_size=40))
def test_fold_equals_the_projection_the_projector_writes(change_list) -> None:
    log = LogBuilder().extend(change_list)
    assert _folded(fold(log)) == _projected(log)


def test_a_snapshot_holds_only_its_own_scope() -> None:
    log = LogBuilder().extend([
        FlagDefined(flag_key="a.b", group="g"),
        OrgOverrideSet(flag_key="a.b", org_id="acme", enabled=True),
        OrgOverrideSet(flag_key="a.b", org_id="globex", enabled=False),
    ])
    state = fold(log)
    acme = snapshot(state, "acme")
    assert set(acme.heads) == {"org/acme/flag/a.b"}
    assert [row[0] for row in acme.doc["org"]] == ["a.b"]
    assert set(snapshot(state, SYSTEM_SCOPE).heads) == {"flag/a.b"}
    assert restore({"acme": acme.doc}).tenant("globex").org == {}
