"""The OpenFeature provider through the real `openfeature-sdk` API: one line switches an app to flagstream."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from events import (
    FlagDefined,
    Level,
    OrgOverrideSet,
    PlatformOverrideSet,
    RolloutPercentageSet,
    TargetingRulesSet,
    ValueType,
    Variant,
    VariantSelected,
)
from flagcore import bucket, fold
from flagsdk import FlagClient
from flagsdk.openfeature import FlagstreamProvider
from tests.support.factories import LogBuilder

ORG = "acme"
KEY = "ai.insights.enabled"


@pytest.fixture
def client() -> Iterator[object]:
    log = LogBuilder()
    log.extend([
        FlagDefined(flag_key=KEY, group="ai"),
        OrgOverrideSet(flag_key=KEY, org_id=ORG, enabled=True),
        RolloutPercentageSet(flag_key=KEY, level=Level.ORG, org_id=ORG, percentage=50),
        PlatformOverrideSet(flag_key=KEY, org_id=ORG, platform="tiktok", enabled=False),
    ])
    api.set_provider(FlagstreamProvider(FlagClient.from_state(fold(log.events), org_id=ORG)))  # the one line
    yield api.get_client()
    api.clear_providers()


def test_boolean_details_carry_value_reason_and_variant(client) -> None:
    for user in ("u-1", "u-2", "u-3", "u-4"):
        details = client.get_boolean_details(KEY, False, EvaluationContext(targeting_key=user))
        assert details.value is (bucket(KEY, user) <= 50)
        assert details.reason == Reason.SPLIT
        assert details.variant == ("on" if details.value else "off")
        assert details.flag_metadata == {"level": "org"}
    tiktok = client.get_boolean_details(KEY, True, EvaluationContext("u-1", {"platform": "tiktok"}))
    assert (tiktok.value, tiktok.reason) == (False, Reason.TARGETING_MATCH)


def test_errors_give_the_default_with_a_code_and_never_raise(client) -> None:
    missing = client.get_boolean_details("no.such.flag", True)
    assert (missing.value, missing.error_code, missing.reason) == (True, ErrorCode.FLAG_NOT_FOUND, Reason.ERROR)
    other_org = client.get_boolean_details(KEY, True, EvaluationContext("u-1", {"org": "globex"}))
    assert (other_org.value, other_org.error_code) == (True, ErrorCode.INVALID_CONTEXT)
    bad_platform = client.get_boolean_details(KEY, True, EvaluationContext("u-1", {"platform": "myspace"}))
    assert bad_platform.error_code == ErrorCode.INVALID_CONTEXT
    typed = client.get_string_details(KEY, "x")
    assert (typed.value, typed.error_code) == ("x", ErrorCode.TYPE_MISMATCH)


TYPED = {
    "checkout.theme": (ValueType.STRING, {"blue": "#00f", "red": "#f00"}, "blue", "red"),
    "upload.limit": (ValueType.INTEGER, {"small": 10, "large": 1000}, "small", "small"),
    "sampling.ratio": (ValueType.FLOAT, {"low": 0.1, "high": 0.9}, "high", "low"),
    "home.layout": (ValueType.OBJECT, {"grid": {"columns": 3}, "list": [1, 2]}, "grid", "list"),
}


@pytest.fixture
def typed_client() -> Iterator[object]:
    log = LogBuilder()
    for key, (kind, values, default, off) in TYPED.items():
        log.append(FlagDefined(flag_key=key, group="typed", value_type=kind, values=values, default_variant=default,
                               off_variant=off))  # fmt: skip
        log.append(OrgOverrideSet(flag_key=key, org_id=ORG, enabled=True))
    log.append(VariantSelected(flag_key="upload.limit", level=Level.PLATFORM, org_id=ORG, platform="meta",
                               variant="large"))  # fmt: skip
    log.append(VariantSelected(flag_key="checkout.theme", level=Level.ORG, org_id=ORG,
                               split=(Variant(name="blue", weight=500), Variant(name="red", weight=500))))  # fmt: skip
    api.set_provider(FlagstreamProvider(FlagClient.from_state(fold(log.events), org_id=ORG)))
    yield api.get_client()
    api.clear_providers()


def test_every_type_resolves_with_its_value_variant_and_reason(typed_client) -> None:
    meta = EvaluationContext("u-1", {"platform": "meta"})
    limit = typed_client.get_integer_details("upload.limit", 0, meta)
    assert (limit.value, limit.variant, limit.reason, limit.flag_metadata) == (1000, "large", Reason.TARGETING_MATCH,
                                                                               {"level": "platform"})  # fmt: skip
    assert typed_client.get_integer_value("upload.limit", 0) == 10
    assert typed_client.get_float_value("sampling.ratio", 0.0) == 0.9
    assert typed_client.get_object_value("home.layout", {}) == {"columns": 3}
    themes = [typed_client.get_string_details("checkout.theme", "", EvaluationContext(f"u-{n}")) for n in range(30)]
    assert {(d.value, d.variant, d.reason) for d in themes} == {("#00f", "blue", Reason.SPLIT),
                                                                  ("#f00", "red", Reason.SPLIT)}  # fmt: skip


@pytest.mark.parametrize("key", list(TYPED))
def test_a_flag_asked_as_another_type_is_the_default_with_type_mismatch(typed_client, key: str) -> None:
    kind = TYPED[key][0]
    asked = {
        ValueType.BOOLEAN: lambda: typed_client.get_boolean_details(key, True),
        ValueType.STRING: lambda: typed_client.get_string_details(key, "dflt"),
        ValueType.INTEGER: lambda: typed_client.get_integer_details(key, 7),
        ValueType.FLOAT: lambda: typed_client.get_float_details(key, 7.5),
        ValueType.OBJECT: lambda: typed_client.get_object_details(key, {"d": 1}),
    }
    defaults = {ValueType.BOOLEAN: True, ValueType.STRING: "dflt", ValueType.INTEGER: 7, ValueType.FLOAT: 7.5,
                ValueType.OBJECT: {"d": 1}}  # fmt: skip
    for other, ask in asked.items():
        if other is kind:
            continue
        details = ask()
        assert (details.value, details.reason, details.error_code) == (
            defaults[other], Reason.ERROR, ErrorCode.TYPE_MISMATCH
        ), other
        assert key in (details.error_message or "")


TARGETED = {
    "ai.insights.enabled": (ValueType.BOOLEAN, {}, "on", "off", "on"),
    "checkout.theme": (ValueType.STRING, {"blue": "#00f", "red": "#f00"}, "blue", "blue", "red"),
    "upload.limit": (ValueType.INTEGER, {"small": 10, "large": 1000}, "small", "small", "large"),
    "sampling.ratio": (ValueType.FLOAT, {"low": 0.1, "high": 0.9}, "low", "low", "high"),
    "home.layout": (ValueType.OBJECT, {"grid": {"columns": 3}, "list": [1, 2]}, "list", "list", "grid"),
}  # key → (type, values, default variant, off variant, the variant the rule serves)
STAFF = [
    {"attribute": "email", "operator": "ends_with", "values": ["@acme.com"]},
    {"attribute": "signup", "operator": "before", "values": ["2026-06-01T00:00:00+00:00"]},
    {"attribute": "targeting_key", "operator": "starts_with", "values": ["staff-"]},
]


@pytest.fixture
def targeted_client() -> Iterator[object]:
    log = LogBuilder()
    for key, (kind, values, default, off, _) in TARGETED.items():
        if kind is ValueType.BOOLEAN:
            log.append(FlagDefined(flag_key=key, group="ai"))
        else:
            log.append(FlagDefined(flag_key=key, group="typed", value_type=kind, values=values,
                                   default_variant=default, off_variant=off))  # fmt: skip
    for key, (*_, served) in TARGETED.items():
        log.append(TargetingRulesSet.model_validate({"flag_key": key, "level": "org", "org_id": ORG, "rules": [
            {"id": "staff", "conditions": STAFF, "variant": served},
        ]}))  # fmt: skip
    api.set_provider(FlagstreamProvider(FlagClient.from_state(fold(log.events), org_id=ORG)))
    yield api.get_client()
    api.clear_providers()


def ask_all(client, context: EvaluationContext | None) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {
        "ai.insights.enabled": client.get_boolean_details("ai.insights.enabled", False, context),
        "checkout.theme": client.get_string_details("checkout.theme", "", context),
        "upload.limit": client.get_integer_details("upload.limit", 0, context),
        "sampling.ratio": client.get_float_details("sampling.ratio", 0.0, context),
        "home.layout": client.get_object_details("home.layout", {}, context),
    }


def test_the_context_attributes_reach_the_rules_for_all_five_types(targeted_client) -> None:
    staff = EvaluationContext("staff-7", {"email": "ana@acme.com", "signup": datetime(2026, 3, 1, tzinfo=UTC)})
    for key, details in ask_all(targeted_client, staff).items():
        kind, values, *_, served = TARGETED[key]
        expected = True if kind is ValueType.BOOLEAN else values[served]
        assert (details.value, details.variant, details.reason) == (expected, served, Reason.TARGETING_MATCH), key
        assert details.flag_metadata == {"level": "org", "rule": "staff"}
        assert details.error_code is None
    for context in (
        None,
        EvaluationContext("staff-7", {"email": "ana@acme.com", "signup": datetime(2026, 7, 1, tzinfo=UTC)}),
        EvaluationContext("u-1", {"email": "ana@acme.com", "signup": "2026-03-01T00:00:00Z"}),
        EvaluationContext("staff-7", {"email": "ana@globex.io", "signup": "2026-03-01T00:00:00Z"}),
    ):
        for key, details in ask_all(targeted_client, context).items():
            kind, values, _, off, _ = TARGETED[key]
            expected = False if kind is ValueType.BOOLEAN else values[off]
            assert (details.value, details.reason, details.flag_metadata) == (expected, Reason.DEFAULT, {}), key


def test_a_rule_match_asked_as_another_type_is_the_default_with_type_mismatch(targeted_client) -> None:
    staff = EvaluationContext("staff-1", {"email": "bo@acme.com", "signup": "2026-01-02T00:00:00Z"})
    got = targeted_client.get_string_details("upload.limit", "dflt", staff)
    assert (got.value, got.reason, got.error_code) == ("dflt", Reason.ERROR, ErrorCode.TYPE_MISMATCH)
    got = targeted_client.get_boolean_details("home.layout", True, staff)
    assert (got.value, got.error_code) == (True, ErrorCode.TYPE_MISMATCH)


class BrokenClient(FlagClient):
    """A client whose evaluation fails in a way nobody foresaw: the provider must still answer."""

    def resolve(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def,override]
        raise RuntimeError("the state is gone")


def test_an_unforeseen_failure_is_the_default_with_general_never_an_exception() -> None:
    api.set_provider(FlagstreamProvider(BrokenClient.from_state(fold([]), org_id=ORG)))
    client = api.get_client()
    try:
        context = EvaluationContext("u-1", {"email": ["not", "a", "string"], "nested": {"a": [1, {"b": None}]}})
        details = client.get_integer_details("upload.limit", 42, context)
        assert (details.value, details.reason, details.error_code) == (42, Reason.ERROR, ErrorCode.GENERAL)
        assert "the state is gone" in (details.error_message or "")
        assert client.get_object_value("home.layout", {"d": 1}, context) == {"d": 1}
    finally:
        api.clear_providers()


def test_odd_attribute_values_answer_like_no_match(targeted_client) -> None:
    odd = EvaluationContext("staff-2", {"email": ["x@acme.com"], "signup": {"at": "2026-01-01"}, "n": 1.5})
    details = targeted_client.get_string_details("checkout.theme", "", odd)
    assert (details.value, details.reason, details.error_code) == ("#00f", Reason.DEFAULT, None)
