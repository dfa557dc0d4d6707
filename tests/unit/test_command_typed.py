"""Typed flags through the command API, over the in-memory store: defining them, a level serving a variant or
a split, every refusal a 422 naming the field with nothing written, rollback, and the fold of what was written.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from events import Actor, Scope, ValueType, Variant, decode
from flagcore import Reason, evaluate, fold
from flagcore.variants import select_variant
from services.auth.policy import Role
from services.command.api import create_app
from services.command.commands import DefineFlag, SetSetting, UpdateFlag
from services.command.errors import InvalidCommand
from services.command.memory import InMemoryEventStore
from services.command.rollback import RollbackTarget, rollback
from services.command.schemas import DefineFlagRequest, SettingRequest
from services.command.service import CommandService
from services.infra.settings import Settings
from services.infra.tenancy import Tenancy
from tests.support.auth import MemoryKeys, bearer, memory_gate

THEME = "checkout.theme"
ORG = "acme"
ORG_URL = f"/v1/orgs/{ORG}/flags/{THEME}"
META_URL = f"/v1/orgs/{ORG}/platforms/meta/flags/{THEME}"
# Room for an object value at its limit, and for the generated writes of one key (its rate has its own tests).
SETTINGS = Settings(max_body_bytes=64 * 1024, command_rate_per_second=10_000.0, command_rate_burst=10_000)
THEME_BODY = {
    "key": THEME,
    "group": "checkout",
    "type": "string",
    "variants": {"blue": "#00f", "red": "#f00", "green": "#0f0"},
    "default_variant": "blue",
    "off_variant": "red",
}
HALVES = [{"name": "blue", "weight": 500}, {"name": "green", "weight": 500}]


def body(**fields: Any) -> dict[str, Any]:
    return {"reason": "testing", **fields}


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore(reader=Tenancy.CROSS_TENANT)


@pytest.fixture
async def client(store: InMemoryEventStore) -> AsyncIterator[httpx.AsyncClient]:
    keys = MemoryKeys()
    app = create_app(SETTINGS, store=store, auth=memory_gate(keys))
    admin = keys.issue(Role.SYSTEM_ADMIN, name="ops")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://command", headers=bearer(admin)
    ) as c:
        yield c


@pytest.fixture
async def theme(client: httpx.AsyncClient) -> httpx.AsyncClient:
    response = await client.post("/v1/flags", json=body(**THEME_BODY))
    assert response.status_code == 201, response.text
    return client


async def state_of(store: InMemoryEventStore) -> Any:
    return fold(decode(e.body) for e in await store.list_events(limit=1000))


def refused(response: httpx.Response, field: str | None, says: str = "") -> None:
    assert response.status_code == 422, response.text
    payload = response.json()
    assert (payload["error"], payload["field"]) == ("invalid_request", field), payload
    assert says in payload["detail"], payload


# --- defining ---------------------------------------------------------------------------------------------------


async def test_a_string_flag_is_defined_with_its_variants(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/flags", json=body(**THEME_BODY))
    assert response.status_code == 201, response.text
    [event] = response.json()["events"]
    assert event["type"] == "FlagDefined"
    assert event["new"] == {
        "kind": "release",
        "description": "",
        "owner": None,
        "group": "checkout",
        "archived": False,
        "value_type": "string",
        "values": {"blue": "#00f", "red": "#f00", "green": "#0f0"},
        "default_variant": "blue",
        "off_variant": "red",
    }


async def test_a_boolean_flag_is_defined_exactly_as_before(client: httpx.AsyncClient) -> None:
    """Today's bodies, with and without experiment arms: the same answer, no typed keys anywhere."""
    plain = await client.post("/v1/flags", json=body(key="ai.x", group="ai"))
    arms = [{"name": "control", "weight": 50}, {"name": "new", "weight": 50}]
    experiment = await client.post("/v1/flags", json=body(key="exp.x", group="exp", kind="experiment", variants=arms))
    explicit = await client.post("/v1/flags", json=body(key="ai.y", group="ai", type="boolean"))
    assert [r.status_code for r in (plain, experiment, explicit)] == [201, 201, 201]
    assert plain.json()["events"][0]["new"] == {
        "kind": "release", "description": "", "owner": None, "group": "ai", "archived": False
    }  # fmt: skip
    assert experiment.json()["events"][0]["new"]["variants"] == [
        {"name": "control", "weight": 500}, {"name": "new", "weight": 500}
    ]  # fmt: skip
    assert explicit.json()["events"][0]["new"] == plain.json()["events"][0]["new"]


@pytest.mark.parametrize(
    ("value_type", "values", "recorded"),
    [
        ("integer", {"small": 10, "none": 0, "huge": 2**63 - 1}, {"small": 10, "none": 0, "huge": 2**63 - 1}),
        ("float", {"pi": 3.14, "three": 3, "none": 0.0}, {"pi": 3.14, "three": 3.0, "none": 0.0}),
        ("object", {"wide": {"cols": [1, 2], "dark": True}, "none": []}, {"wide": {"cols": [1, 2], "dark": True},
                                                                        "none": []}),
        ("string", {"none": "", "hi": "héllo ✓"}, {"none": "", "hi": "héllo ✓"}),
    ],
)
async def test_every_type_is_recorded_with_its_values(
    client: httpx.AsyncClient, store: InMemoryEventStore, value_type: str, values: dict, recorded: dict
) -> None:
    """A float flag's integers are taken as floats (JSON does not tell 3 from 3.0): its values stay floats."""
    default = next(iter(values))
    response = await client.post(
        "/v1/flags",
        json=body(key="x.typed", group="x", type=value_type, variants=values, default_variant=default,
                  off_variant="none"),
    )
    assert response.status_code == 201, response.text
    new = response.json()["events"][0]["new"]
    assert new["values"] == recorded and new["value_type"] == value_type
    assert [type(v) for v in new["values"].values()] == [type(v) for v in recorded.values()]
    [stored] = await store.list_events()
    assert decode(stored.body).data.values == recorded  # the log's own check accepts what was written


LONG = "x" * 10_001
BIG = {"k": "x" * 16_400}

DEFINE_REFUSALS = [
    # (what is wrong, the body's typed fields, the field named, what the detail says)
    ("a value of the wrong type", {"type": "integer", "variants": {"a": 1.5, "b": 2}}, "variants.a", "not an integer"),
    ("a boolean is not an integer", {"type": "integer", "variants": {"a": True, "b": 2}}, "variants.a", "integer"),
    ("a string is not a float", {"type": "float", "variants": {"a": "1.5", "b": 2.0}}, "variants.a", "float"),
    ("a scalar is not an object", {"type": "object", "variants": {"a": "x", "b": {}}}, "variants.a", "object"),
    ("a number is not a string", {"type": "string", "variants": {"a": 1, "b": "x"}}, "variants.a", "string"),
    ("a string over its limit", {"type": "string", "variants": {"a": LONG, "b": "x"}}, "variants.a", "10000"),
    ("an object over its limit", {"type": "object", "variants": {"a": BIG, "b": {}}}, "variants.a", "16384 bytes"),
    ("an integer beyond 64 bits", {"type": "integer", "variants": {"a": 2**63, "b": 1}}, "variants.a", "64-bit"),
    ("NUL in a string", {"type": "string", "variants": {"a": "x\x00", "b": "x"}}, "variants.a", "NUL"),
    ("NUL in an object's key", {"type": "object", "variants": {"a": {"\x00": 1}, "b": {}}}, "variants.a", "NUL"),
    ("an unknown default", {"type": "string", "variants": {"a": "x", "b": "y"}, "default_variant": "c"},
     "default_variant", "unknown variant 'c'"),
    ("an unknown off variant", {"type": "string", "variants": {"a": "x", "b": "y"}, "off_variant": "c"},
     "off_variant", "unknown variant"),
    ("no default", {"type": "string", "variants": {"a": "x", "b": "y"}, "default_variant": None}, "default_variant",
     "names its default variant"),
    ("no variants", {"type": "string", "variants": {}}, "variants", ""),
    ("an empty array", {"type": "string", "variants": []}, "variants", "names its variants"),
    ("variants left out", {"type": "string"}, "variants", "names its variants"),
    ("a typed flag given arms", {"type": "string", "variants": [{"name": "a", "weight": 1000}]}, "variants",
     "as an object"),
    ("too many variants", {"type": "integer", "variants": {f"v{i}": i for i in range(51)}}, "variants", "50"),
    ("a bad variant name", {"type": "string", "variants": {"a": "x", "b": "y", "no way": "z"}},
     "variants.no way.[key]", "pattern"),
    ("a boolean given non-boolean variants", {"variants": {"on": "yes", "off": "no"}}, "variants.on",
     "not a boolean value"),
    ("a boolean given its own variants", {"type": "boolean", "variants": {"on": True, "off": False}}, "variants",
     "implicit variants on/off"),
    ("a boolean given a default variant", {"type": "boolean", "default_variant": "on"}, "default_variant",
     "implicit variants"),
    ("an unknown type", {"type": "text"}, "type", "Input should be"),
]  # fmt: skip


@pytest.mark.parametrize(("wrong", "typed", "field", "says"), DEFINE_REFUSALS, ids=[c[0] for c in DEFINE_REFUSALS])
async def test_a_bad_typed_definition_is_a_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, store: InMemoryEventStore, wrong: str, typed: dict, field: str, says: str
) -> None:
    fields = {"key": "x.bad", "group": "x", "default_variant": "a", "off_variant": "b"} | typed
    if fields.get("type", "boolean") == "boolean":
        fields = {k: v for k, v in fields.items() if k not in ("default_variant", "off_variant") or k in typed}
    refused(await client.post("/v1/flags", json=body(**{k: v for k, v in fields.items() if v is not None})), field,
            says)
    assert await store.list_events() == []


@pytest.mark.parametrize(
    ("value_type", "value", "says"),
    [
        ("object", '{"n": NaN}', "finite"),
        ("object", '{"n": 1e400}', "finite"),
        ("float", "Infinity", "finite"),
        ("string", '"\\ud800"', "lone surrogate"),
        ("object", '{"\\udfff": 1}', "lone surrogate"),
    ],
)
async def test_what_no_reader_could_hold_is_refused(
    client: httpx.AsyncClient, store: InMemoryEventStore, value_type: str, value: str, says: str
) -> None:
    """Bytes Python's JSON parser accepts but JSON or UTF-8 cannot carry: a 422, never a 500 when sealing."""
    other = {"object": "{}", "float": "1.0", "string": '"x"'}[value_type]
    raw = (
        f'{{"reason": "r", "key": "x.odd", "group": "x", "type": "{value_type}",'
        f' "variants": {{"a": {value}, "b": {other}}}, "default_variant": "a", "off_variant": "b"}}'
    )
    response = await client.post("/v1/flags", content=raw, headers={"content-type": "application/json"})
    refused(response, "variants.a", says)
    assert await store.list_events() == []


# --- updating ----------------------------------------------------------------------------------------------------


async def test_patch_changes_a_typed_flags_variants_and_defaults(theme: httpx.AsyncClient) -> None:
    response = await theme.patch(
        f"/v1/flags/{THEME}", json=body(variants={"blue": "#00f", "grey": "#888"}, off_variant="grey")
    )
    assert response.status_code == 201, response.text
    [event] = response.json()["events"]
    assert event["type"] == "FlagUpdated"
    assert (event["previous"]["values"], event["previous"]["off_variant"]) == (THEME_BODY["variants"], "red")
    assert (event["new"]["values"], event["new"]["off_variant"]) == ({"blue": "#00f", "grey": "#888"}, "grey")
    assert event["new"]["value_type"] == "string" and event["new"]["default_variant"] == "blue"
    again = await theme.patch(f"/v1/flags/{THEME}", json=body(default_variant="blue", type="string"))
    assert (again.status_code, again.json()["events"]) == (200, [])  # the same type may be given back


@pytest.mark.parametrize(
    ("patch", "field", "says"),
    [
        ({"variants": {"green": "#0f0", "red": "#f00"}}, "default_variant", "unknown variant 'blue'"),
        ({"default_variant": "pink"}, "default_variant", "unknown variant 'pink'"),
        ({"variants": {"blue": 7, "red": "#f00"}}, "variants.blue", "not a string"),
        ({"variants": []}, "variants", "as an object"),
        ({"off_variant": None}, "off_variant", "cannot be null"),
        ({"type": "integer", "description": "x"}, "type", "is a string flag; a flag's type never changes"),
        ({"type": "integer"}, None, "nothing to update"),
    ],
)
async def test_a_bad_patch_of_a_typed_flag_is_a_422_and_writes_nothing(
    theme: httpx.AsyncClient, store: InMemoryEventStore, patch: dict, field: str, says: str
) -> None:
    refused(await theme.patch(f"/v1/flags/{THEME}", json=body(**patch)), field, says)
    assert len(await store.list_events()) == 1


async def test_a_boolean_flag_takes_no_typed_variants_by_patch(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/flags", json=body(key="ai.x", group="ai"))).status_code == 201
    refused(await client.patch("/v1/flags/ai.x", json=body(variants={"on": 1})), "variants.on", "boolean")
    refused(await client.patch("/v1/flags/ai.x", json=body(off_variant="off")), "off_variant", "implicit")


# --- a level serves a variant or a split ---------------------------------------------------------------------------


async def test_an_org_serves_a_variant_and_a_platform_a_split(
    theme: httpx.AsyncClient, store: InMemoryEventStore
) -> None:
    org = await theme.put(ORG_URL, json=body(enabled=True, variant="green"))
    assert org.status_code == 201, org.text
    assert [(e["type"], e["new"]) for e in org.json()["events"]] == [
        ("OrgOverrideSet", {"enabled": True, "rollout_percentage": None}),
        ("VariantSelected", {"enabled": True, "rollout_percentage": None, "variant": "green"}),
    ]
    meta = await theme.put(META_URL, json=body(split=HALVES))
    assert [(e["type"], e["new"]) for e in meta.json()["events"]] == [
        ("VariantSelected", {"enabled": None, "rollout_percentage": None, "split": HALVES}),
    ]
    state = await state_of(store)
    tenant = state.tenant(ORG)
    e = evaluate(state.catalog, tenant, THEME, user_id="u-1")
    assert (e.value, e.variant, e.reason) == ("#0f0", "green", Reason.TARGETING_MATCH)
    arms = tuple(Variant(**arm) for arm in HALVES)
    served = set()
    for user in (f"u-{i}" for i in range(40)):
        e = evaluate(state.catalog, tenant, THEME, platform="meta", user_id=user)
        chosen = select_variant(THEME, user, arms)
        assert chosen is not None and (e.variant, e.reason) == (chosen.name, Reason.SPLIT)
        assert e.value == {"blue": "#00f", "green": "#0f0"}[chosen.name]
        served.add(e.variant)
    assert served == {"blue", "green"}


async def test_every_level_serves_a_variant(theme: httpx.AsyncClient) -> None:
    for url in (f"/v1/flags/{THEME}/system", ORG_URL, META_URL, f"/v1/orgs/{ORG}/users/u@x.io/flags/{THEME}"):
        response = await theme.put(url, json=body(variant="green"))
        assert response.status_code == 201, response.text
        assert [e["type"] for e in response.json()["events"]] == ["VariantSelected"]


async def test_null_serves_the_default_again_and_the_same_request_twice_writes_nothing(
    theme: httpx.AsyncClient,
) -> None:
    assert (await theme.put(ORG_URL, json=body(enabled=True, split=HALVES))).status_code == 201
    assert (await theme.put(ORG_URL, json=body(split=HALVES))).status_code == 200
    back = await theme.put(ORG_URL, json=body(variant=None))
    [event] = back.json()["events"]
    assert (event["type"], event["new"]) == ("VariantSelected", {"enabled": True, "rollout_percentage": None})
    assert (await theme.put(ORG_URL, json=body(split=None))).status_code == 200


async def test_clearing_a_level_clears_its_selection_unless_given_with_it(theme: httpx.AsyncClient) -> None:
    assert (await theme.put(ORG_URL, json=body(enabled=True, rollout_percentage=30, variant="green"))).is_success
    cleared = await theme.put(ORG_URL, json=body(enabled=None, variant="blue"))
    assert [(e["type"], e["new"]) for e in cleared.json()["events"]] == [
        ("OrgOverrideCleared", None),
        ("VariantSelected", {"enabled": None, "rollout_percentage": None, "variant": "blue"}),
    ]
    gone = await theme.request("DELETE", ORG_URL, json=body())
    assert [(e["type"], e["new"]) for e in gone.json()["events"]] == [("OrgOverrideCleared", None)]


async def test_a_boolean_flag_serves_its_own_variants_and_an_experiments_arms(client: httpx.AsyncClient) -> None:
    arms = [{"name": "control", "weight": 500}, {"name": "new", "weight": 500}]
    assert (await client.post("/v1/flags", json=body(key="exp.x", group="exp", kind="experiment",
                                                     variants=arms))).status_code == 201
    url = f"/v1/orgs/{ORG}/flags/exp.x"
    assert (await client.put(url, json=body(enabled=True, variant="new"))).status_code == 201
    assert (await client.put(url, json=body(split=[{"name": "on", "weight": 1000}]))).status_code == 201
    refused(await client.put(url, json=body(variant="blue")), "variant", "known: control, new, off, on")


SELECTION_REFUSALS = [
    ("an unknown variant", {"variant": "pink"}, "variant", "unknown variant 'pink' (known: blue, green, red)"),
    ("an unknown variant in a split", {"split": [{"name": "blue", "weight": 500}, {"name": "pink", "weight": 500}]},
     "split.1.name", "unknown variant 'pink'"),
    ("weights short of 1000", {"split": [{"name": "blue", "weight": 500}, {"name": "red", "weight": 400}]}, "split",
     "sum to 1000, not 900"),
    ("percentages", {"split": [{"name": "blue", "weight": 50}, {"name": "red", "weight": 50}]}, "split",
     "sum to 1000"),
    ("a negative weight", {"split": [{"name": "blue", "weight": -1}, {"name": "red", "weight": 1001}]},
     "split.0.weight", "greater than or equal to 0"),
    ("a repeated variant", {"split": [{"name": "blue", "weight": 500}, {"name": "blue", "weight": 500}]}, "split",
     "distinct"),
    ("an empty split", {"split": []}, "split", "at least 1"),
    ("a variant and a split", {"variant": "blue", "split": [{"name": "blue", "weight": 1000}]}, "split",
     "not both"),
    ("a bad variant name", {"variant": "no way"}, "variant", "pattern"),
    ("a split arm with a value", {"split": [{"name": "blue", "weight": 1000, "value": "#00f"}]}, "split.0.value",
     "Extra inputs"),
    ("with a good change beside it", {"enabled": True, "rollout_percentage": 20, "variant": "pink"}, "variant",
     "unknown variant"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("wrong", "chosen", "field", "says"), SELECTION_REFUSALS, ids=[c[0] for c in SELECTION_REFUSALS]
)
async def test_a_bad_selection_is_a_422_naming_the_field_and_writes_nothing(
    theme: httpx.AsyncClient, store: InMemoryEventStore, wrong: str, chosen: dict, field: str, says: str
) -> None:
    for url in (ORG_URL, f"/v1/flags/{THEME}/system"):
        refused(await theme.put(url, json=body(**chosen)), field, says)
    assert len(await store.list_events()) == 1  # the definition only


async def test_a_selection_for_an_unknown_or_archived_flag_is_a_404(theme: httpx.AsyncClient) -> None:
    assert (await theme.put(f"/v1/orgs/{ORG}/flags/nope", json=body(variant="blue"))).status_code == 404
    assert (await theme.post(f"/v1/flags/{THEME}/archive", json=body())).status_code == 201
    assert (await theme.put(ORG_URL, json=body(variant="blue"))).status_code == 404


# --- rollback and the audit trail -----------------------------------------------------------------------------------

ADMIN = Actor(id="key:0123456789abcdef", name="admin")


class _Values:
    """The audit store's value reads over the in-memory log: a stream's value right after a version."""

    def __init__(self, store: InMemoryEventStore) -> None:
        self.store = store

    async def value_as_of(self, stream: str, at: datetime) -> tuple[int, dict | None]:
        raise AssertionError("these tests roll back to versions")

    async def value_at_version(self, stream: str, version: int) -> tuple[int, dict | None] | None:
        for stored in await self.store.list_events(limit=1000):
            envelope = decode(stored.body)
            if (envelope.stream, envelope.version) == (stream, version):
                return version, envelope.new
        return None


async def test_rollback_restores_a_levels_selection_and_a_typed_definition(store: InMemoryEventStore) -> None:
    service = CommandService(store)
    org = Scope.org(ORG)
    theme = {k: v for k, v in THEME_BODY.items() if k not in ("key", "type", "variants")}
    await service.execute(DefineFlag(flag_key=THEME, reason="t", value_type=ValueType.STRING,
                                     values=THEME_BODY["variants"], **theme))
    split = tuple(Variant(**arm) for arm in HALVES)
    await service.execute(SetSetting(scope=org, flag_key=THEME, enabled=True, split=split, reason="split"))  # v1, v2
    await service.execute(SetSetting(scope=org, flag_key=THEME, variant="red", reason="red"))  # v3
    stream = org.stream(THEME)
    [done] = await rollback(service, _Values(store), [stream], RollbackTarget(version=2), reason="undo", actor=ADMIN)
    assert [(e.type, e.previous, e.new) for e in done.events] == [
        ("VariantSelected", {"enabled": True, "rollout_percentage": None, "variant": "red"},
         {"enabled": True, "rollout_percentage": None, "split": HALVES}),
    ]  # fmt: skip
    [back] = await rollback(service, _Values(store), [stream], RollbackTarget(version=1), reason="u", actor=ADMIN)
    assert [(e.type, e.new) for e in back.events] == [
        ("VariantSelected", {"enabled": True, "rollout_percentage": None})
    ]  # fmt: skip

    definition = f"flag/{THEME}"
    await service.execute(UpdateFlag(flag_key=THEME, values={"blue": "#00f", "grey": "#888"}, off_variant="grey",
                                     reason="grey"))
    [restored] = await rollback(service, _Values(store), [definition], RollbackTarget(version=1), reason="undo",
                                actor=ADMIN)
    [event] = restored.events
    assert event.type == "FlagUpdated" and event.new is not None
    assert (event.new["values"], event.new["off_variant"]) == (THEME_BODY["variants"], "red")


async def test_rollback_of_a_system_default_that_only_chose_a_variant(store: InMemoryEventStore) -> None:
    """A system stream never switched on or off goes back to its selection; once switched, it cannot be unset."""
    service = CommandService(store)
    theme = {k: v for k, v in THEME_BODY.items() if k not in ("key", "type", "variants")}
    await service.execute(DefineFlag(flag_key=THEME, reason="t", value_type=ValueType.STRING,
                                     values=THEME_BODY["variants"], **theme))
    system = Scope.system()
    await service.execute(SetSetting(scope=system, flag_key=THEME, variant="green", reason="v1"))
    await service.execute(SetSetting(scope=system, flag_key=THEME, variant="blue", reason="v2"))
    stream = system.stream(THEME)
    [done] = await rollback(service, _Values(store), [stream], RollbackTarget(version=1), reason="undo", actor=ADMIN)
    assert [(e.type, e.new) for e in done.events] == [
        ("VariantSelected", {"enabled": None, "rollout_percentage": None, "variant": "green"})
    ]  # fmt: skip
    await service.execute(SetSetting(scope=system, flag_key=THEME, enabled=True, reason="on"))
    head = await service.stream_head(stream)
    with pytest.raises(InvalidCommand, match="cannot be unset") as no:
        await rollback(service, _Values(store), [stream], RollbackTarget(version=1), reason="undo", actor=ADMIN)
    assert no.value.field == "version" and (await service.stream_head(stream)).version == head.version


async def test_history_shows_a_selection_previous_to_new(theme: httpx.AsyncClient) -> None:
    assert (await theme.put(ORG_URL, json=body(variant="green"))).status_code == 201
    assert (await theme.put(ORG_URL, json=body(split=HALVES))).status_code == 201
    events = (await theme.get("/v1/events", params={"org": ORG})).json()["events"]
    assert [(e["type"], e["previous"], e["new"]) for e in events] == [
        ("VariantSelected", None, {"enabled": None, "rollout_percentage": None, "variant": "green"}),
        ("VariantSelected", {"enabled": None, "rollout_percentage": None, "variant": "green"},
         {"enabled": None, "rollout_percentage": None, "split": HALVES}),
    ]  # fmt: skip


# --- the OpenAPI document tells the truth about the new fields --------------------------------------------------


async def test_the_document_states_the_types_the_shapes_and_the_limits(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    define = schemas["DefineFlagRequest"]["properties"]
    assert schemas[define["type"]["$ref"].rsplit("/", 1)[-1]]["enum"] == [
        "boolean", "string", "integer", "float", "object"
    ]  # fmt: skip
    arms, typed = define["variants"]["anyOf"]
    assert arms["type"] == "array" and arms["maxItems"] == 20
    assert typed["type"] == "object" and typed["additionalProperties"] is False
    assert (typed["minProperties"], typed["maxProperties"]) == (1, 50)
    assert list(typed["patternProperties"]) == ["^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"]
    assert "10000 characters" in typed["description"] and "16384" in typed["description"]
    for name in ("default_variant", "off_variant"):
        assert define[name]["anyOf"][0]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
    update = schemas["UpdateFlagRequest"]["properties"]
    assert {"type", "variants", "default_variant", "off_variant"} <= set(update)
    for name in ("type", "variants", "default_variant", "off_variant"):  # PATCH refuses null: not offered
        assert "null" not in json.dumps(update[name]), name
    setting = schemas["SettingRequest"]["properties"]
    assert setting["variant"]["anyOf"][0]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
    split = setting["split"]["anyOf"][0]
    assert (split["type"], split["minItems"], split["maxItems"]) == ("array", 1, 50)
    arm = schemas[split["items"]["$ref"].rsplit("/", 1)[-1]]["properties"]["weight"]
    assert (arm["minimum"], arm["maximum"]) == (0, 1000)
    assert "summing to exactly 1000" in split["description"]


# --- the documented example runs ---------------------------------------------------------------------------------

DOC = Path(__file__).parents[2] / "docs" / "flag-semantics.md"


def documented_requests() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, body) of each curl command of the typed-flag example in docs/flag-semantics.md."""
    text = DOC.read_text().split("## Typed flags", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands: list[list[str]] = []
    for word in shlex.split(text.replace("\\\n", " ")):
        if word == "curl":
            commands.append([])
        elif commands:
            commands[-1].append(word)
    return [
        (c[c.index("-X") + 1], next(w for w in c if w.startswith("http://")).split(":8081", 1)[1],
         json.loads(c[c.index("-d") + 1]))
        for c in commands
    ]  # fmt: skip


async def test_the_documented_curl_example_runs(client: httpx.AsyncClient, store: InMemoryEventStore) -> None:
    requests = documented_requests()
    assert [method for method, _, _ in requests] == ["POST", "PUT", "PUT", "PUT", "PATCH"]
    for method, path, payload in requests:
        response = await client.request(method, path, json=payload)
        assert response.status_code == 201, (path, response.text)
    state = await state_of(store)
    e = evaluate(state.catalog, state.tenant("acme"), "checkout.theme", platform="google")
    assert (e.value, e.variant) == ("#00aa00", "green")


# --- whatever is sent: recorded as the log accepts it, or a 422 naming a field, nothing written ----------------

finite = st.floats(allow_nan=False, allow_infinity=False)  # what httpx can send (NaN: a raw-body test above)
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | finite | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
variant_names = st.sampled_from(["blue", "red", "on", "off", "x-1", "", "no way", "a" * 65])
typed_bodies = st.fixed_dictionaries(
    {"type": st.sampled_from(["boolean", "string", "integer", "float", "object"])},
    optional={
        "variants": st.dictionaries(variant_names, json_values, max_size=4)
        | st.lists(st.fixed_dictionaries({"name": variant_names, "weight": st.integers(-5, 1005)}), max_size=3),
        "default_variant": variant_names | st.none(),
        "off_variant": variant_names | st.none(),
    },
)
selections = st.fixed_dictionaries(
    {},
    optional={
        "enabled": st.none() | st.booleans(),
        "variant": variant_names | st.none(),
        "split": st.none()
        | st.lists(st.fixed_dictionaries({"name": variant_names, "weight": st.integers(-5, 1005)}), max_size=3),
    },
)


def test_any_typed_definition_or_selection_is_recorded_or_a_422_naming_a_field() -> None:
    """The law behind the refusal tables: a 201 only writes events the log's own check accepts; anything else
    writes nothing, and a 422 names a field of the request (or none, for the body as a whole). Never a 500."""
    store, keys, runner = InMemoryEventStore(reader=Tenancy.CROSS_TENANT), MemoryKeys(), asyncio.Runner()
    app = create_app(SETTINGS, store=store, auth=memory_gate(keys))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://command", headers=bearer(keys.issue(Role.SYSTEM_ADMIN))
    )
    seen: set[int] = set()

    def send(method: str, url: str, payload: dict[str, Any], fields: set[str]) -> None:
        before = len(runner.run(store.list_events(limit=100_000)))
        response = runner.run(client.request(method, url, json=payload))
        assert response.status_code in (200, 201, 409, 422), response.text
        written = runner.run(store.list_events(limit=100_000))[before:]
        seen.add(response.status_code)
        if response.status_code != 201:
            assert written == [], response.text  # a refusal writes nothing
        for event in written:
            decode(event.body)  # the log's own check accepts every event written
        if response.status_code == 422:
            field = response.json()["field"]
            assert field is None or field.split(".")[0] in fields, response.text

    @hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(typed=typed_bodies, chosen=selections, n=st.integers(0, 10**9))
    def check(typed: dict[str, Any], chosen: dict[str, Any], n: int) -> None:
        send("POST", "/v1/flags", body(key=f"x.gen{n}", group="x", **typed), set(DefineFlagRequest.model_fields))
        send("PUT", ORG_URL, body(**chosen), set(SettingRequest.model_fields))

    try:
        send("POST", "/v1/flags", body(**THEME_BODY), set())
        check()
    finally:
        runner.run(client.aclose())
        runner.close()
    assert {201, 422} <= seen  # both outcomes were drawn
