"""Laws of the fold: replaying is idempotent, duplicates are harmless, previous/new agree."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from events import (
    FlagDefined,
    Level,
    OrgOverrideCleared,
    OrgOverrideSet,
    RolloutPercentageSet,
    SystemDefaultSet,
)
from flagcore import FlagState, fold
from tests.support.factories import LogBuilder
from tests.support.fold_changes import changes


def sealed(change_list) -> list:
    return LogBuilder().extend(change_list)


@settings(max_examples=200, deadline=None)
@given(st.lists(changes, max_size=40))
def test_replaying_the_same_events_twice_gives_the_same_state(change_list) -> None:
    log = sealed(change_list)
    once = fold(log)
    assert fold(log, fold(log)) == once
    assert fold(log) == once


@settings(max_examples=200, deadline=None)
@given(st.lists(changes, max_size=40), st.randoms(use_true_random=False))
def test_duplicates_anywhere_change_nothing(change_list, rnd: random.Random) -> None:
    log = sealed(change_list)
    noisy = list(log)
    for envelope in log:
        # an at-least-once relay may publish an event again, later than the original
        noisy.insert(rnd.randint(noisy.index(envelope) + 1, len(noisy)), envelope)
    assert fold(noisy) == fold(log)


@settings(max_examples=100, deadline=None)
@given(st.lists(changes, max_size=40))
def test_each_event_previous_is_the_folded_value_before_it(change_list) -> None:
    state = FlagState()
    for envelope in sealed(change_list):
        head = state.heads.get(envelope.stream)
        assert (head.value if head else None) == envelope.previous
        assert state.apply(envelope)
        assert state.heads[envelope.stream].value == envelope.new


def test_rollout_keeps_enabled_and_clear_removes_both() -> None:
    key = "ai.insights.enabled"
    log = LogBuilder()
    log.extend(
        [
            FlagDefined(flag_key=key, group="ai"),
            OrgOverrideSet(flag_key=key, org_id="acme", enabled=True),
            RolloutPercentageSet(flag_key=key, level=Level.ORG, org_id="acme", percentage=30),
        ]
    )
    setting = fold(log.events).tenant("acme").org[key]
    assert (setting.enabled, setting.rollout_percentage) == (True, 30)
    log.append(OrgOverrideCleared(flag_key=key, org_id="acme"))
    assert key not in fold(log.events).tenant("acme").org


def test_an_older_version_of_a_stream_is_ignored() -> None:
    key = "ai.insights.enabled"
    log = LogBuilder()
    log.extend([FlagDefined(flag_key=key, group="ai"), SystemDefaultSet(flag_key=key, enabled=True)])
    log.append(SystemDefaultSet(flag_key=key, enabled=False))
    state = fold(log.events)
    assert state.apply(log.events[1]) is False
    assert state.catalog.system[key].enabled is False


def test_tenant_without_overrides_is_empty_not_missing() -> None:
    assert FlagState().tenant("nobody").org == {}
