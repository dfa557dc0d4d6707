"""The SDK's hot path, `FlagClient.is_enabled` (a `flagcore.plans` program per flag), against `flagcore.evaluate`."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from events import FlagDefined, Level, OrgOverrideSet, SettingScheduled
from flagcore import FlagState, evaluate, fold
from flagsdk import FlagClient
from tests.support.factories import T0, LogBuilder
from tests.support.generated_logs import KEYS, ORG, PLATFORMS, USERS, changes, state_of


@settings(max_examples=200, deadline=None)
@given(st.lists(changes, max_size=10))
def test_is_enabled_answers_what_flagcore_evaluate_answers_now(log: list) -> None:
    state = state_of(log)
    client = FlagClient.from_state(state, org_id=ORG)
    tenant = state.tenant(ORG)
    for key in KEYS:
        for user in USERS:
            for platform in PLATFORMS:
                expected = evaluate(state.catalog, tenant, key, platform=platform, user_id=user).value
                assert client.is_enabled(key, platform=platform, user=user) is expected, (key, user, platform)


def test_an_unknown_flag_is_off() -> None:
    assert FlagClient.from_state(fold([]), org_id=ORG).is_enabled("no.such.flag", user="u-1") is False


def test_a_scheduled_step_takes_effect_in_a_program_made_before_it() -> None:
    builder = LogBuilder()
    key = "platform.meta.enabled"
    builder.extend([
        FlagDefined(flag_key=key, group="platform"),
        OrgOverrideSet(flag_key=key, org_id=ORG, enabled=True),
        SettingScheduled(flag_key=key, level=Level.ORG, org_id=ORG, effective_at=T0 + timedelta(days=1), enabled=False),
    ])
    state: FlagState = fold(builder.events)
    client = FlagClient.from_state(state, org_id=ORG)
    # the step is long due on the real clock (T0 is in the past): the program made now knows it is past its end
    assert client.is_enabled(key, user="u-1") is False
    assert evaluate(state.catalog, state.tenant(ORG), key, now=T0).value is True
