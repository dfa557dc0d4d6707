"""Evaluation: precedence through the four levels, rollouts, and the answer's why."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events import (
    FlagArchived,
    FlagDefined,
    Level,
    OrgOverrideSet,
    PlatformOverrideSet,
    RolloutPercentageSet,
    SystemDefaultSet,
    UserOverrideSet,
)
from flagcore import ErrorCode, Reason, bucket, enabled_platforms, evaluate, evaluate_all, fold, in_rollout
from tests.support.factories import LogBuilder

KEY = "ai.insights.enabled"


def state_of(*changes):
    log = LogBuilder()
    log.extend([FlagDefined(flag_key=KEY, group="ai"), *changes])
    return fold(log.events), log


S = SystemDefaultSet(flag_key=KEY, enabled=False)
O_ON = OrgOverrideSet(flag_key=KEY, org_id="acme", enabled=True)
P_OFF = PlatformOverrideSet(flag_key=KEY, org_id="acme", platform="tiktok", enabled=False)
U_ON = UserOverrideSet(flag_key=KEY, org_id="acme", user_id="u1", enabled=True)

# (changes, platform, user, expected value, expected level, expected reason)
CASES = [
    ([], None, None, False, None, Reason.DEFAULT),
    ([S], None, None, False, Level.SYSTEM, Reason.STATIC),
    ([S, O_ON], None, None, True, Level.ORG, Reason.TARGETING_MATCH),
    ([S, O_ON], "tiktok", None, True, Level.ORG, Reason.TARGETING_MATCH),
    ([S, O_ON, P_OFF], "tiktok", None, False, Level.PLATFORM, Reason.TARGETING_MATCH),
    ([S, O_ON, P_OFF], "meta", None, True, Level.ORG, Reason.TARGETING_MATCH),
    ([S, O_ON, P_OFF, U_ON], "tiktok", "u1", True, Level.USER, Reason.TARGETING_MATCH),
    ([S, O_ON, P_OFF, U_ON], "tiktok", "u2", False, Level.PLATFORM, Reason.TARGETING_MATCH),
    ([S, U_ON], None, "u1", True, Level.USER, Reason.TARGETING_MATCH),
]


@pytest.mark.parametrize(("changes", "platform", "user", "value", "level", "reason"), CASES)
def test_highest_level_with_a_setting_decides(changes, platform, user, value, level, reason) -> None:
    state, _ = state_of(*changes)
    result = evaluate(state.catalog, state.tenant("acme"), KEY, platform=platform, user_id=user)
    assert (result.value, result.level, result.reason) == (value, level, reason)


def test_answer_names_the_event_that_decided() -> None:
    state, log = state_of(S, O_ON, P_OFF)
    result = evaluate(state.catalog, state.tenant("acme"), KEY, platform="tiktok")
    decisive = log.events[-1]
    assert result.source is not None
    assert (result.source.event_id, result.source.version) == (str(decisive.event_id), decisive.version)
    assert "platform level" in result.explain() and "alice" in result.explain()


def test_unknown_flag_is_an_error_answer_not_an_exception() -> None:
    state, _ = state_of()
    result = evaluate(state.catalog, state.tenant("acme"), "no.such.flag")
    assert (result.value, result.reason, result.error_code) == (False, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)


def test_archived_flag_is_off_everywhere() -> None:
    state, _ = state_of(O_ON, U_ON, FlagArchived(flag_key=KEY))
    result = evaluate(state.catalog, state.tenant("acme"), KEY, user_id="u1")
    assert (result.value, result.reason) == (False, Reason.DISABLED)


def test_rollout_buckets_users_by_unleash_formula() -> None:
    rollout = RolloutPercentageSet(flag_key=KEY, level=Level.ORG, org_id="acme", percentage=50)
    state, _ = state_of(O_ON, rollout)
    users = [f"user-{i}" for i in range(2000)]
    on = [u for u in users if evaluate(state.catalog, state.tenant("acme"), KEY, user_id=u).value]
    assert on == [u for u in users if bucket(KEY, u) <= 50]
    assert 900 < len(on) < 1100
    result = evaluate(state.catalog, state.tenant("acme"), KEY, user_id="user-1")
    assert result.reason is Reason.SPLIT and result.rollout_percentage == 50
    assert result.bucket == bucket(KEY, "user-1")


def test_rollout_without_user_buckets_the_org() -> None:
    rollout = RolloutPercentageSet(flag_key=KEY, level=Level.SYSTEM, percentage=50)
    state, _ = state_of(SystemDefaultSet(flag_key=KEY, enabled=True), rollout)
    for org in ("acme", "globex", "initech"):
        assert evaluate(state.catalog, state.tenant(org), KEY).value == in_rollout(KEY, org, 50)


def test_off_beats_rollout_at_the_same_level() -> None:
    rollout = RolloutPercentageSet(flag_key=KEY, level=Level.ORG, org_id="acme", percentage=100)
    state, _ = state_of(rollout, OrgOverrideSet(flag_key=KEY, org_id="acme", enabled=False))
    assert evaluate(state.catalog, state.tenant("acme"), KEY, user_id="x").value is False


def test_unleash_cross_client_vectors() -> None:
    # from Unleash's client specification: normalizedValue("123", "gr1") == 73, ("999", "groupX") == 25
    assert bucket("gr1", "123") == 73
    assert bucket("groupX", "999") == 25


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_bucketing_is_stable_and_in_range(flag_key: str, subject: str) -> None:
    first = bucket(flag_key, subject)
    assert first == bucket(flag_key, subject)
    assert 1 <= first <= 100


@given(st.text(min_size=1, max_size=20), st.integers(0, 100), st.integers(0, 100))
def test_rollout_only_ever_adds_users_as_it_grows(subject: str, low: int, high: int) -> None:
    low, high = min(low, high), max(low, high)
    if in_rollout(KEY, subject, low):
        assert in_rollout(KEY, subject, high)


def test_enabled_platforms_follow_platform_flags() -> None:
    log = LogBuilder()
    log.extend(
        [
            FlagDefined(flag_key="platform.meta.enabled", group="platform"),
            FlagDefined(flag_key="platform.tiktok.enabled", group="platform"),
            SystemDefaultSet(flag_key="platform.meta.enabled", enabled=True),
            PlatformOverrideSet(flag_key="platform.tiktok.enabled", org_id="acme", platform="tiktok", enabled=True),
            PlatformOverrideSet(flag_key="platform.meta.enabled", org_id="acme", platform="meta", enabled=False),
        ]
    )
    state = fold(log.events)
    assert [p.value for p in enabled_platforms(state.catalog, state.tenant("acme"))] == ["tiktok"]
    assert [p.value for p in enabled_platforms(state.catalog, state.tenant("globex"))] == ["meta"]


def test_evaluate_all_covers_every_defined_flag() -> None:
    state, _ = state_of()
    assert [e.flag_key for e in evaluate_all(state.catalog, state.tenant("acme"))] == [KEY]
