"""The SDK's hot path (`flagsdk.plans`) against `flagcore.evaluate`, on generated logs of changes."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from events import (
    FlagArchived,
    FlagDefined,
    FlagKind,
    KillSwitchEngaged,
    Level,
    OrgOverrideSet,
    PlatformOverrideSet,
    RolloutPercentageSet,
    SettingScheduled,
    SystemDefaultSet,
    UserOverrideCleared,
    UserOverrideSet,
)
from flagcore import evaluate, fold
from flagsdk.plans import compile_plan
from tests.support.factories import T0, LogBuilder

ORG = "acme"
KEY = "platform.meta.enabled"  # an ops flag, so the kill switch applies
USERS = [None, "u-1", "u-2", "u-3", *(f"bulk-{i}" for i in range(20))]
PLATFORMS = [None, "meta", "tiktok"]
pct = st.integers(0, 100)
when = st.integers(1, 40).map(lambda s: T0 + timedelta(seconds=s))

changes = st.one_of(
    st.builds(SystemDefaultSet, flag_key=st.just(KEY), enabled=st.booleans()),
    st.builds(OrgOverrideSet, flag_key=st.just(KEY), org_id=st.just(ORG), enabled=st.booleans()),
    st.builds(PlatformOverrideSet, flag_key=st.just(KEY), org_id=st.just(ORG), platform=st.sampled_from(["meta"]),
              enabled=st.booleans()),
    st.builds(UserOverrideSet, flag_key=st.just(KEY), org_id=st.just(ORG), user_id=st.sampled_from(["u-1", "u-2"]),
              enabled=st.booleans()),
    st.builds(UserOverrideCleared, flag_key=st.just(KEY), org_id=st.just(ORG), user_id=st.just("u-1")),
    st.builds(RolloutPercentageSet, flag_key=st.just(KEY), level=st.just(Level.ORG), org_id=st.just(ORG),
              percentage=pct | st.none()),
    st.builds(RolloutPercentageSet, flag_key=st.just(KEY), level=st.just(Level.SYSTEM), percentage=pct),
    st.builds(SettingScheduled, flag_key=st.just(KEY), level=st.just(Level.ORG), org_id=st.just(ORG),
              effective_at=when, rollout_percentage=pct),
    st.builds(KillSwitchEngaged, flag_key=st.just(KEY)),
    st.builds(FlagArchived, flag_key=st.just(KEY)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(changes, max_size=8), st.integers(0, 60))
def test_a_plan_answers_what_flagcore_evaluate_answers(log: list, offset: int) -> None:
    builder = LogBuilder()
    builder.extend([FlagDefined(flag_key=KEY, group="platform", kind=FlagKind.OPS), *log])
    state = fold(builder.events)
    now = T0 + timedelta(seconds=offset)
    plan = compile_plan(state, ORG, KEY, now)
    # A step pending at `now` is long due on the real clock (T0 is in the past): then the plan
    # must answer as flagcore does now, else as it did at `now`.
    pending = any(s.next_change(now) is not None for s in _settings(state))
    tenant = state.tenant(ORG)
    for user in USERS:
        for platform in PLATFORMS:
            expected = evaluate(state.catalog, tenant, KEY, platform=platform, user_id=user,
                                now=None if pending else now).value
            assert plan(platform, user) is expected, (user, platform)


def test_an_unknown_flag_is_off() -> None:
    assert compile_plan(fold([]), ORG, "no.such.flag", T0)(None, "u-1") is False


def test_a_plan_falls_back_to_flagcore_once_a_scheduled_step_is_due() -> None:
    builder = LogBuilder()
    step_at = T0 + timedelta(days=1)
    builder.extend([
        FlagDefined(flag_key=KEY, group="platform"),
        OrgOverrideSet(flag_key=KEY, org_id=ORG, enabled=True),
        SettingScheduled(flag_key=KEY, level=Level.ORG, org_id=ORG, effective_at=step_at, enabled=False),
    ])
    state = fold(builder.events)
    # compiled "before" the step, consulted long after it (the clock is the real one): the step is in force
    plan = compile_plan(state, ORG, KEY, T0)
    assert plan(None, "u-1") is False
    assert evaluate(state.catalog, state.tenant(ORG), KEY, now=T0).value is True


def _settings(state):
    tenant = state.tenant(ORG)
    found = [state.catalog.system.get(KEY), tenant.org.get(KEY), *tenant.platform.values(), *tenant.user.values()]
    return [s for s in found if s is not None]
