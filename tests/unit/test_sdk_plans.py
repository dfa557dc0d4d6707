"""The SDK's hot path (`flagsdk.plans`) against `flagcore.evaluate`, on generated logs of changes."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from events import FlagDefined, Level, OrgOverrideSet, SettingScheduled
from flagcore import FlagState, evaluate, fold
from flagsdk.plans import compile_check
from tests.support.factories import T0, LogBuilder
from tests.support.generated_logs import KEYS, ORG, PLATFORMS, USERS, changes, state_of


@settings(max_examples=300, deadline=None)
@given(st.lists(changes, max_size=10), st.integers(0, 100))
def test_a_check_answers_what_flagcore_evaluate_answers(log: list, offset: int) -> None:
    state = state_of(log)
    now = T0 + timedelta(seconds=offset)
    tenant = state.tenant(ORG)
    for key in KEYS:
        check = compile_check(state, ORG, key, now.timestamp())
        # A step pending at `now` is long due on the real clock (T0 is in the past): then the check
        # must answer as flagcore does now, else as it did at `now`.
        pending = any(s.next_change(now) is not None for s in _settings(state, key))
        for user in USERS:
            for platform in PLATFORMS:
                expected = evaluate(state.catalog, tenant, key, platform=platform, user_id=user,
                                    now=None if pending else now).value
                assert check(platform, user) is expected, (key, user, platform)


def test_an_unknown_flag_is_off() -> None:
    assert compile_check(fold([]), ORG, "no.such.flag", T0.timestamp())(None, "u-1") is False


def test_a_check_falls_back_to_flagcore_once_a_scheduled_step_is_due() -> None:
    builder = LogBuilder()
    key = "platform.meta.enabled"
    step_at = T0 + timedelta(days=1)
    builder.extend([
        FlagDefined(flag_key=key, group="platform"),
        OrgOverrideSet(flag_key=key, org_id=ORG, enabled=True),
        SettingScheduled(flag_key=key, level=Level.ORG, org_id=ORG, effective_at=step_at, enabled=False),
    ])
    state = fold(builder.events)
    # compiled "before" the step, consulted long after it (the clock is the real one): the step is in force
    check = compile_check(state, ORG, key, T0.timestamp())
    assert check(None, "u-1") is False
    assert evaluate(state.catalog, state.tenant(ORG), key, now=T0).value is True


def _settings(state: FlagState, key: str) -> list:
    tenant = state.tenant(ORG)
    found = [state.catalog.system.get(key), tenant.org.get(key)]
    found += [s for (_, f), s in (*tenant.platform.items(), *tenant.user.items()) if f == key]
    return [s for s in found if s is not None]
