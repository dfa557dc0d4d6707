"""The OpenFeature provider through the real `openfeature-sdk` API: one line switches an app to flagstream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from events import FlagDefined, Level, OrgOverrideSet, PlatformOverrideSet, RolloutPercentageSet
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
