"""Typed flags on the running stack, read by every reader: the native API, OFREP, the OFREP provider, the SDK.

The typed-flag events (FlagDefined v4, VariantSelected at every level) are produced to the real
topic as the relay publishes them; the real projector writes the rows (migration 0010), and the
query service as `python -m services.query` serves it answers. Every answer must be the pure
core's over the same log: the value of the flag's type, the variant, the reason and the level.
The real OpenFeature OFREP provider (`openfeature-provider-ofrep` from PyPI) resolves each type
and reports TYPE_MISMATCH for a flag asked for as another type; so does the in-process SDK,
bootstrapped from the query service, and `flagctl eval` prints a typed value as JSON.
"""

from __future__ import annotations

import asyncio
import json
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

from events import (
    AnyChange,
    Envelope,
    FlagDefined,
    Level,
    OrgOverrideSet,
    Platform,
    SystemDefaultSet,
    ValueType,
    Variant,
    VariantSelected,
    to_record,
)
from flagcore import ErrorCode as CoreErrorCode
from flagcore import FlagState, evaluate, evaluate_all, fold
from flagctl.main import main as flagctl
from flagsdk import FlagClient
from services.infra.settings import Settings
from tests.support.auth import bearer
from tests.support.factories import LogBuilder
from tests.support.kafka import produce, topic_size
from tests.support.projection import wait_for_offsets
from tests.support.sdk import sdk_settings
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

ORG = "acme"
THEME, LIMIT, RATIO, LAYOUT, PLAIN = "t.theme", "t.limit", "t.ratio", "t.layout", "t.plain"
THEMES = {"blue": "#00f", "dark": "#000", "light": "#fff"}
LAYOUTS = {"grid": {"columns": 3, "dense": True}, "list": [1, 2.5, "x"], "plain": {}}
SUBJECTS = [(None, None), ("meta", None), (None, "vip"), ("meta", "vip"), ("google", "u-7"), (None, "u-42")]


def changes() -> list[AnyChange]:
    def define(key: str, kind: ValueType, values: dict[str, Any], default: str, off: str) -> FlagDefined:
        return FlagDefined(flag_key=key, group="typed", description=key, value_type=kind, values=values,
                           default_variant=default, off_variant=off)  # fmt: skip

    split = (Variant(name="grid", weight=600), Variant(name="list", weight=400))
    return [
        define(THEME, ValueType.STRING, THEMES, "light", "dark"),
        SystemDefaultSet(flag_key=THEME, enabled=True),
        VariantSelected(flag_key=THEME, level=Level.SYSTEM, variant="blue"),
        VariantSelected(flag_key=THEME, level=Level.PLATFORM, org_id=ORG, platform=Platform.META, variant="dark"),
        VariantSelected(flag_key=THEME, level=Level.USER, org_id=ORG, user_id="vip", variant="light"),
        define(LIMIT, ValueType.INTEGER, {"small": 10, "large": 1000, "none": 0}, "small", "none"),
        OrgOverrideSet(flag_key=LIMIT, org_id=ORG, enabled=True),
        VariantSelected(flag_key=LIMIT, level=Level.ORG, org_id=ORG, variant="large"),
        define(RATIO, ValueType.FLOAT, {"low": 0.1, "high": 0.9}, "high", "low"),
        SystemDefaultSet(flag_key=RATIO, enabled=True),
        define(LAYOUT, ValueType.OBJECT, LAYOUTS, "grid", "plain"),
        OrgOverrideSet(flag_key=LAYOUT, org_id=ORG, enabled=True),
        VariantSelected(flag_key=LAYOUT, level=Level.ORG, org_id=ORG, split=split),
        FlagDefined(flag_key=PLAIN, group="typed", description="a boolean flag beside them"),
        OrgOverrideSet(flag_key=PLAIN, org_id=ORG, enabled=True),
    ]


@dataclass
class World:
    stack: Stack
    events: list[Envelope]
    state: FlagState
    evaluator: str  # a key of ORG

    def expected(self, key: str, platform: str | None, user: str | None) -> tuple[Any, ...]:
        e = evaluate(self.state.catalog, self.state.tenant(ORG), key, platform=platform, user_id=user)
        return e.value, e.variant, e.reason.value, None if e.level is None else e.level.value

    def client(self) -> OpenFeatureClient:
        domain = f"typed-{uuid.uuid4().hex[:8]}"
        token = self.evaluator
        api.set_provider(OFREPProvider(self.stack.query_url, headers_factory=lambda: bearer(token)), domain)
        return api.get_client(domain)


@pytest.fixture(scope="module")
def world(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    stack = start_stack(make_settings(), tmp_path_factory.mktemp("typed"))
    try:
        events = LogBuilder().extend(changes())
        assert len(events) == len(changes())
        before = asyncio.run(topic_size(stack.settings))
        asyncio.run(produce(stack.settings, [to_record(e) for e in events]))
        asyncio.run(wait_for_offsets(stack.settings, before + len(events)))
        with httpx.Client(base_url=stack.command_url, headers=stack.headers, timeout=10) as http:
            body = {"name": "typed app", "role": "evaluator", "org_id": ORG, "reason": "typed values test"}
            response = http.post("/v1/keys", json=body)
            assert response.status_code == 201, response.text
        yield World(stack, events, fold(events), str(response.json()["key"]))
    finally:
        stack.stop()


@pytest.fixture
def http(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.stack.query_url, headers=bearer(world.evaluator), timeout=10) as client:
        yield client


def _context(platform: str | None, user: str | None) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if platform is not None:
        context["platform"] = platform
    if user is not None:
        context["targetingKey"] = user
    return {"context": context}


def test_the_native_api_answers_the_typed_value_and_variant(world: World, http: httpx.Client) -> None:
    for key in (THEME, LIMIT, RATIO, LAYOUT, PLAIN):
        for platform, user in SUBJECTS:
            params = {k: v for k, v in (("platform", platform), ("user", user)) if v is not None}
            response = http.get(f"/v1/orgs/{ORG}/flags/{key}", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            got = (body["value"], body["variant"], body["reason"], body["level"])
            assert got == world.expected(key, platform, user), (key, platform, user)


def test_the_listing_says_what_each_flag_serves(world: World) -> None:
    with httpx.Client(base_url=world.stack.query_url, headers=world.stack.headers, timeout=10) as admin:
        response = admin.get("/v1/flags")
    assert response.status_code == 200, response.text
    listing = {f["key"]: f for f in response.json()["flags"]}
    layout, theme, plain = listing[LAYOUT], listing[THEME], listing[PLAIN]
    assert (layout["value_type"], layout["values"], layout["default_variant"]) == ("object", LAYOUTS, "grid")
    assert (theme["system"]["variant"], theme["system"]["split"], theme["off_variant"]) == ("blue", None, "dark")
    assert (plain["value_type"], plain["values"], plain["system"]) == ("boolean", {"on": True, "off": False}, None)


def test_ofrep_single_and_bulk_answer_the_typed_value(world: World, http: httpx.Client) -> None:
    for platform, user in SUBJECTS:
        for key in (THEME, LIMIT, RATIO, LAYOUT, PLAIN):
            for _ in range(2):  # the second from the hot path's plan, when the documents are at hand
                body = http.post(f"/ofrep/v1/evaluate/flags/{key}", json=_context(platform, user)).json()
                got = (body["value"], body["variant"], body["reason"], body["metadata"].get("level"))
                assert got == world.expected(key, platform, user), (key, platform, user)
        bulk = http.post("/ofrep/v1/evaluate/flags", json=_context(platform, user))
        assert bulk.status_code == 200 and bulk.headers["etag"]
        want = evaluate_all(world.state.catalog, world.state.tenant(ORG), platform=platform, user_id=user)
        assert [(f["key"], f["value"], f["variant"], f["reason"]) for f in bulk.json()["flags"]] == [
            (e.flag_key, e.value, e.variant, e.reason.value) for e in want
        ]


def test_the_ofrep_provider_resolves_each_type(world: World) -> None:
    client = world.client()
    meta, vip = EvaluationContext("u-7", {"platform": "meta"}), EvaluationContext("vip")
    assert client.get_string_value(THEME, "none") == THEMES["blue"]
    assert client.get_string_value(THEME, "none", meta) == THEMES["dark"]
    theme = client.get_string_details(THEME, "none", vip)
    assert (theme.value, theme.variant, theme.reason, theme.flag_metadata["level"]) == (
        THEMES["light"], "light", Reason.TARGETING_MATCH, "user"
    )  # fmt: skip
    assert client.get_integer_value(LIMIT, -1) == 1000
    assert client.get_float_value(RATIO, -1.0) == 0.9
    layouts = [client.get_object_details(LAYOUT, {}, EvaluationContext(f"user-{n}")) for n in range(30)]
    assert {d.variant for d in layouts} == {"grid", "list"} and {d.reason for d in layouts} == {Reason.SPLIT}
    assert all(d.value == LAYOUTS[d.variant] for d in layouts if d.variant is not None)
    assert client.get_boolean_value(PLAIN, False) is True


def test_the_ofrep_provider_reports_a_wrong_type_as_type_mismatch(world: World) -> None:
    client = world.client()
    for asked in (
        client.get_integer_details(THEME, 7),
        client.get_boolean_details(LIMIT, True),
        client.get_string_details(LAYOUT, "dflt"),
        client.get_object_details(RATIO, {"d": 1}),
        client.get_string_details(PLAIN, "dflt"),
    ):
        assert (asked.reason, asked.error_code) == (Reason.ERROR, ErrorCode.TYPE_MISMATCH), asked
    assert client.get_integer_value(THEME, 7) == 7


def test_the_sdk_bootstrapped_from_the_query_service_serves_typed_values(world: World) -> None:
    settings = sdk_settings(world.stack.settings)
    with FlagClient.from_settings(settings, api_key=world.evaluator, org_id=ORG) as flags:
        assert flags.get_string(THEME, "none", platform="meta") == THEMES["dark"]
        assert flags.get_string(THEME, "none", user="vip") == THEMES["light"]
        assert flags.get_integer(LIMIT, -1) == 1000 and flags.get_float(RATIO, -1.0) == 0.9
        layout = flags.get_object_details(LAYOUT, {}, user="u-42")
        assert (layout.value, layout.variant, layout.reason.value) == world.expected(LAYOUT, None, "u-42")[:3]
        mismatch = flags.get_integer_details(THEME, 7)
        assert (mismatch.value, mismatch.error_code) == (7, CoreErrorCode.TYPE_MISMATCH)
        assert flags.is_enabled(PLAIN) is True and flags.is_enabled(THEME) is False


def test_flagctl_eval_prints_a_typed_value_as_json(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    urls = ["--command-url", world.stack.command_url, "--query-url", world.stack.query_url, "--key", world.evaluator]
    assert flagctl([*urls, "eval", LAYOUT, "--org", ORG, "--user", "u-42"]) == 0
    value, variant, _, _ = world.expected(LAYOUT, None, "u-42")
    line = capsys.readouterr().out
    assert line.startswith(f"{json.dumps(value)}  {LAYOUT}") and f"variant {variant}" in line, line
    assert flagctl([*urls, "eval", PLAIN, "--org", ORG]) == 0
    assert capsys.readouterr().out.startswith(f"ON   {PLAIN}")
