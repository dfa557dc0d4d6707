"""The SDK's hot path, `FlagClient.is_enabled` and the typed getters (a `flagcore.plans` program per flag), and their
details, against `flagcore.evaluate`."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from events import FlagDefined, Level, OrgOverrideSet, SettingScheduled, ValueType
from flagcore import ErrorCode, FlagState, Reason, evaluate, fold
from flagsdk import FlagClient
from tests.support.factories import T0, LogBuilder
from tests.support.generated_logs import KEYS, ORG, PLATFORMS, USERS, changes, state_of

GETTERS: dict[ValueType, Callable[..., Any]] = {
    ValueType.BOOLEAN: FlagClient.is_enabled,
    ValueType.STRING: lambda client, key, **context: client.get_string(key, "default", **context),
    ValueType.INTEGER: lambda client, key, **context: client.get_integer(key, -1, **context),
    ValueType.FLOAT: lambda client, key, **context: client.get_float(key, -1.5, **context),
    ValueType.OBJECT: lambda client, key, **context: client.get_object(key, {"default": True}, **context),
}
DEFAULTS = {ValueType.BOOLEAN: False, ValueType.STRING: "default", ValueType.INTEGER: -1, ValueType.FLOAT: -1.5,
            ValueType.OBJECT: {"default": True}}  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(changes, max_size=10))
def test_each_getter_answers_what_flagcore_evaluate_answers_now_and_the_others_their_default(log: list) -> None:
    state = state_of(log)
    client = FlagClient.from_state(state, org_id=ORG)
    tenant = state.tenant(ORG)
    for key in KEYS:
        own = state.catalog.definitions[key].value_type if key in state.catalog.definitions else ValueType.BOOLEAN
        for user in USERS:
            for platform in PLATFORMS:
                expected = evaluate(state.catalog, tenant, key, platform=platform, user_id=user).value
                for kind, getter in GETTERS.items():
                    got = getter(client, key, platform=platform, user=user)
                    want = expected if kind is own else DEFAULTS[kind]
                    assert got == want and type(got) is type(want), (key, kind, user, platform)


@settings(max_examples=100, deadline=None)
@given(st.lists(changes, max_size=10))
def test_details_are_the_cores_answer_or_the_default_with_type_mismatch(log: list) -> None:
    state = state_of(log)
    client = FlagClient.from_state(state, org_id=ORG)
    tenant = state.tenant(ORG)
    for key in KEYS:
        definition = state.catalog.definitions.get(key)
        for user in USERS[:6]:
            e = evaluate(state.catalog, tenant, key, platform="meta", user_id=user)
            for kind, default in DEFAULTS.items():
                r = client.resolve(key, kind, default, platform="meta", user=user)
                if definition is None:
                    assert (r.value, r.reason, r.error_code) == (default, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
                elif kind is definition.value_type:
                    assert (r.value, r.variant, r.reason, r.level, r.error_code) == (
                        e.value, e.variant, e.reason, e.level, None
                    )
                    assert r.evaluation == e  # from the plan, the rollout bucket included
                else:
                    assert (r.value, r.variant, r.reason, r.error_code) == (
                        default, None, Reason.ERROR, ErrorCode.TYPE_MISMATCH
                    )


@settings(max_examples=150, deadline=None)
@given(st.lists(changes, max_size=10))
def test_evaluate_answers_from_the_plan_exactly_what_flagcore_evaluate_answers(log: list) -> None:
    state = state_of(log)
    client = FlagClient.from_state(state, org_id=ORG)
    tenant = state.tenant(ORG)
    for key in [*KEYS, "no.such.flag"]:
        for user in USERS[:12]:
            for platform in PLATFORMS:
                expected = evaluate(state.catalog, tenant, key, platform=platform, user_id=user)
                assert client.evaluate(key, platform=platform, user=user).evaluation == expected, (key, user, platform)


def test_details_follow_a_scheduled_step_that_falls_due_after_the_plan_was_made() -> None:
    builder = LogBuilder()
    key = "ai.insights.enabled"
    soon = datetime.now(UTC) + timedelta(milliseconds=300)
    builder.extend([
        FlagDefined(flag_key=key, group="ai"),
        OrgOverrideSet(flag_key=key, org_id=ORG, enabled=True),
        SettingScheduled(flag_key=key, level=Level.ORG, org_id=ORG, effective_at=soon, enabled=False),
    ])
    client = FlagClient.from_state(fold(builder.events), org_id=ORG)
    assert client.get_boolean_details(key, False, user="u-1").value is True
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.01)
    after = client.get_boolean_details(key, True, user="u-1")
    assert (after.value, after.variant, after.error_code) == (False, "off", None)


def test_an_object_value_is_the_callers_own() -> None:
    builder = LogBuilder()
    builder.extend([
        FlagDefined(flag_key="home.layout", group="ui", value_type=ValueType.OBJECT,
                    values={"grid": {"columns": [3, 4]}, "plain": {}}, default_variant="grid", off_variant="plain"),
        OrgOverrideSet(flag_key="home.layout", org_id=ORG, enabled=True),
    ])  # fmt: skip
    client = FlagClient.from_state(fold(builder.events), org_id=ORG)
    mine = client.get_object("home.layout", {})
    assert mine == {"columns": [3, 4]}
    mine["columns"].append(5)  # type: ignore[call-overload,union-attr]
    details = client.get_object_details("home.layout", {})
    details.value["columns"].append(6)
    assert client.get_object("home.layout", {}) == {"columns": [3, 4]}
    assert client.get_string("home.layout", "none") == "none" and client.is_enabled("home.layout") is False


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
