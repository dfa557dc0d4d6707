"""Targeting rules through time travel: a snapshot keeps them, so fold(all) == fold(restore(snapshot), rest)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from events import Level, TargetingRulesSet
from flagcore import FlagState, fold
from flagcore.history import diff_views, org_view, restore, scope_of_stream, snapshot
from tests.support.factories import T0, LogBuilder
from tests.support.generated_logs import ORG, REL, changes, definitions
from tests.support.generated_rules import rule_sets, segment_changes


def _parts(state: FlagState) -> dict[str, dict]:
    scopes = {scope_of_stream(s) for s in state.heads} - {None}
    return {s: json.loads(json.dumps(snapshot(state, s).doc)) for s in scopes}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(changes, rule_sets(), segment_changes()), max_size=16), st.integers(0, 30))
def test_a_snapshot_keeps_the_rules_and_segments_of_its_scope(change_list: list, cut: int) -> None:
    log = LogBuilder().extend([*definitions(), *change_list])
    cut = min(cut, len(log))
    assert fold(log[cut:], restore(_parts(fold(log[:cut])))) == fold(log)


def test_a_rule_change_is_a_change_in_a_diff() -> None:
    builder = LogBuilder()
    builder.extend(definitions())
    before = fold(builder.events)
    builder.append(TargetingRulesSet.model_validate({
        "flag_key": REL, "level": Level.ORG, "org_id": ORG,
        "rules": [{"id": "all", "conditions": [{"attribute": "org", "operator": "exists"}], "variant": "on"}],
    }))  # fmt: skip
    after = fold(builder.events)
    now = T0.replace(year=2027)
    changed = diff_views(org_view(before, ORG, now=now), org_view(after, ORG, now=now))
    assert [key for key, _, _ in changed] == [REL]
