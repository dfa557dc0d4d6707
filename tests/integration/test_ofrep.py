"""OFREP on the running stack, asked by the real OpenFeature client (`openfeature-provider-ofrep` from PyPI).

The flags are set through the command API, projected by the real projector
into Postgres, and evaluated by the query service as `python -m services.query`
serves it (the ASGI fast path in front of FastAPI). The client sends the key as
`Authorization: Bearer` through its `headers_factory`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import ErrorCode, Reason

from flagcore import bucket
from flagcore.model import Variant
from flagcore.variants import select_variant
from services.infra.settings import Settings
from tests.support.auth import bearer
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

ROLLOUT = "ofrep.rollout"  # 40% at the org level, on at the tiktok platform, off for user vip
FIXED = "ofrep.fixed"  # system default on
ARCHIVED = "ofrep.archived"
UNSET = "ofrep.unset"  # defined, set nowhere
EXPERIMENT = "ofrep.experiment"  # arms control/treatment 50/50, on for the org
KILLED = "ofrep.killed"  # an ops flag, on by default, its kill switch engaged
ARMS = (Variant("control", 500), Variant("treatment", 500))
REASON = {"reason": "ofrep integration test"}


@dataclass
class World:
    stack: Stack
    org: str
    other_org: str
    evaluator: str  # a key of `org`
    admin: str  # a system-wide key

    def client(self, key: str | None = None) -> OpenFeatureClient:
        """An OpenFeature client of its own (a domain per client) speaking OFREP to the query service."""
        domain = f"ofrep-{uuid.uuid4().hex[:8]}"
        token = self.evaluator if key is None else key
        api.set_provider(OFREPProvider(self.stack.query_url, headers_factory=lambda: bearer(token)), domain)
        return api.get_client(domain)


def _call(http: httpx.Client, method: str, path: str, **body: Any) -> dict[str, Any]:
    response = http.request(method, path, json={**REASON, **body})
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def _eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not projected after {timeout}s: {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def world(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    stack = start_stack(make_settings(), tmp_path_factory.mktemp("ofrep"))
    org, other = f"org-{uuid.uuid4().hex[:8]}", f"org-{uuid.uuid4().hex[:8]}"
    try:
        with httpx.Client(base_url=stack.command_url, headers=stack.headers, timeout=10) as http:
            for key in (ROLLOUT, FIXED, ARCHIVED, UNSET):
                _call(http, "POST", "/v1/flags", key=key, group="ofrep")
            arms = [{"name": v.name, "weight": v.weight} for v in ARMS]
            _call(http, "POST", "/v1/flags", key=EXPERIMENT, group="ofrep", kind="experiment", variants=arms)
            _call(http, "PUT", f"/v1/orgs/{org}/flags/{EXPERIMENT}", enabled=True)
            _call(http, "POST", "/v1/flags", key=KILLED, group="ofrep", kind="ops")
            _call(http, "PUT", f"/v1/flags/{KILLED}/system", enabled=True)
            _call(http, "POST", f"/v1/flags/{KILLED}/kill-switch")
            _call(http, "PUT", f"/v1/flags/{FIXED}/system", enabled=True)
            _call(http, "PUT", f"/v1/orgs/{org}/flags/{ROLLOUT}", enabled=True, rollout_percentage=40)
            _call(http, "PUT", f"/v1/orgs/{org}/platforms/tiktok/flags/{ROLLOUT}", enabled=True)
            _call(http, "PUT", f"/v1/orgs/{org}/users/vip/flags/{ROLLOUT}", enabled=False)
            _call(http, "PUT", f"/v1/orgs/{other}/flags/{FIXED}", enabled=False)
            _call(http, "POST", f"/v1/flags/{ARCHIVED}/archive")
            evaluator = str(_call(http, "POST", "/v1/keys", name="ofrep app", role="evaluator", org_id=org)["key"])
            admin = str(_call(http, "POST", "/v1/keys", name="ofrep admin", role="system-admin", org_id=None)["key"])
        w = World(stack, org, other, evaluator, admin)
        probe = w.client()
        vip = EvaluationContext(targeting_key="vip")
        _eventually(lambda: probe.get_boolean_details(ROLLOUT, True, vip).reason == Reason.TARGETING_MATCH
                    and probe.get_boolean_details(ARCHIVED, True).reason == Reason.DISABLED
                    and probe.get_boolean_details(KILLED, True).reason == Reason.DISABLED, "the seed")
        yield w
    finally:
        stack.stop()


def test_a_rollout_is_a_sticky_split_for_each_user(world: World) -> None:
    client = world.client()
    for user in (f"user-{i}" for i in range(20)):
        details = client.get_boolean_details(ROLLOUT, False, EvaluationContext(targeting_key=user))
        assert details.reason == Reason.SPLIT, details
        assert details.value is (bucket(ROLLOUT, user) <= 40), user
        assert details.variant == ("on" if details.value else "off")
        assert details.error_code is None
        assert details.flag_metadata["level"] == "org"
        assert details.flag_metadata["rolloutPercentage"] == 40


def test_platform_and_user_come_from_the_context(world: World) -> None:
    client = world.client()
    on_tiktok = client.get_boolean_details(ROLLOUT, False, EvaluationContext("someone", {"platform": "tiktok"}))
    assert (on_tiktok.value, on_tiktok.reason, on_tiktok.flag_metadata["level"]) == (
        True, Reason.TARGETING_MATCH, "platform")
    vip = client.get_boolean_details(ROLLOUT, True, EvaluationContext("vip", {"platform": "tiktok"}))
    assert (vip.value, vip.reason, vip.variant, vip.flag_metadata["level"]) == (
        False, Reason.TARGETING_MATCH, "off", "user")


def test_static_default_and_disabled(world: World) -> None:
    client = world.client()
    fixed = client.get_boolean_details(FIXED, False)
    assert (fixed.value, fixed.reason, fixed.variant, fixed.flag_metadata["level"]) == (True, Reason.STATIC, "on",
                                                                                          "system")
    unset = client.get_boolean_details(UNSET, True)
    assert (unset.value, unset.reason, unset.variant) == (False, Reason.DEFAULT, "off")
    archived = client.get_boolean_details(ARCHIVED, True)
    assert (archived.value, archived.reason) == (False, Reason.DISABLED)


def test_an_experiment_serves_each_user_a_sticky_arm(world: World) -> None:
    client = world.client()
    arms = {}
    for user in (f"user-{i}" for i in range(30)):
        details = client.get_boolean_details(EXPERIMENT, False, EvaluationContext(targeting_key=user))
        assert (details.value, details.reason) == (True, Reason.TARGETING_MATCH), details
        assert client.get_boolean_details(EXPERIMENT, False, EvaluationContext(targeting_key=user)).variant == (
            details.variant)
        arms[user] = details.variant
        assert details.variant == select_variant(EXPERIMENT, user, ARMS).name  # Unleash's variant hashing
    assert set(arms.values()) == {"control", "treatment"}
    elsewhere = world.client(world.admin).get_boolean_details(
        EXPERIMENT, True, EvaluationContext("user-1", {"org": world.other_org}))
    assert (elsewhere.value, elsewhere.variant, elsewhere.reason) == (False, "off", Reason.DEFAULT)


def test_a_kill_switch_wins(world: World) -> None:
    details = world.client().get_boolean_details(KILLED, True, EvaluationContext("u-1", {"platform": "meta"}))
    assert (details.value, details.variant, details.reason) == (False, "off", Reason.DISABLED)
    assert details.flag_metadata["killSwitch"] is True


def test_an_unknown_flag_gives_the_default_with_flag_not_found(world: World) -> None:
    details = world.client().get_boolean_details("ofrep.nothing-here", True)
    assert (details.value, details.reason, details.error_code) == (True, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)


def test_a_bad_context_gives_the_default_with_invalid_context(world: World) -> None:
    details = world.client().get_boolean_details(ROLLOUT, True, EvaluationContext("u-1", {"platform": "myspace"}))
    assert (details.value, details.reason, details.error_code) == (True, Reason.ERROR, ErrorCode.INVALID_CONTEXT)
    assert "context.platform" in (details.error_message or "")


def test_the_org_comes_from_the_key(world: World) -> None:
    own = world.client()
    assert own.get_boolean_value(FIXED, False) is True  # the other org's override does not apply
    refused = own.get_boolean_details(FIXED, False, EvaluationContext(attributes={"org": world.other_org}))
    assert (refused.value, refused.reason, refused.error_code) == (False, Reason.ERROR, ErrorCode.GENERAL)
    assert refused.error_message == "forbidden"
    admin = world.client(world.admin)
    named = admin.get_boolean_details(FIXED, True, EvaluationContext(attributes={"org": world.other_org}))
    assert (named.value, named.reason, named.flag_metadata["level"]) == (False, Reason.TARGETING_MATCH, "org")
    unnamed = admin.get_boolean_details(FIXED, True)
    assert (unnamed.error_code, unnamed.value) == (ErrorCode.INVALID_CONTEXT, True)


def test_a_bad_key_gives_the_default(world: World) -> None:
    details = world.client("fsk_0123456789abcdef_" + "x" * 43).get_boolean_details(FIXED, False)
    assert (details.value, details.reason, details.error_code) == (False, Reason.ERROR, ErrorCode.GENERAL)
    assert details.error_message == "unauthorized"


def test_bulk_with_etag_and_304(world: World) -> None:
    url = f"{world.stack.query_url}/ofrep/v1/evaluate/flags"
    body = {"context": {"targetingKey": "vip", "platform": "tiktok"}}
    with httpx.Client(headers=bearer(world.evaluator), timeout=10) as http:
        first = http.post(url, json=body)
        assert first.status_code == 200, first.text
        flags = {f["key"]: f for f in first.json()["flags"]}
        assert {ROLLOUT, FIXED, ARCHIVED, UNSET} <= set(flags)
        assert (flags[ROLLOUT]["value"], flags[ROLLOUT]["metadata"]["level"]) == (False, "user")
        assert flags[ARCHIVED]["reason"] == "DISABLED"
        etag = first.headers["etag"]
        again = http.post(url, json=body, headers={"If-None-Match": etag})
        assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
        other = http.post(url, json={"context": {"targetingKey": "u-2"}}, headers={"If-None-Match": etag})
        assert other.status_code == 200 and other.headers["etag"] != etag
        empty = http.post(url, json={"context": {"targetingKey": ""}})
        assert (empty.status_code, empty.json()["errorCode"]) == (400, "TARGETING_KEY_MISSING")
        garbage = http.post(url, content=b"{nope")
        assert (garbage.status_code, garbage.json()["errorCode"]) == (400, "PARSE_ERROR")


def test_a_change_reaches_the_client(world: World) -> None:
    client = world.client()
    assert client.get_boolean_value(UNSET, True) is False
    with httpx.Client(base_url=world.stack.command_url, headers=world.stack.headers, timeout=10) as http:
        _call(http, "PUT", f"/v1/orgs/{world.org}/flags/{UNSET}", enabled=True)
    _eventually(lambda: client.get_boolean_details(UNSET, False).reason == Reason.TARGETING_MATCH, "the change")
    assert client.get_boolean_value(UNSET, False) is True
