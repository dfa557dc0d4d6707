"""Targeting rules through the command API, over the in-memory store: every refusal a 422 naming the field with
nothing written, the authorisation of each level, optimistic concurrency, "the same list again writes nothing",
reading the list back, the OpenAPI document stating the limits, and the fold of what was written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from events import Actor, decode
from events.targeting import MAX_CONDITIONS, MAX_REGEX_LENGTH, MAX_RULES, MAX_VALUES, Operator
from flagcore import Reason, evaluate, fold
from flagcore.model import Definition
from services.auth.policy import Role
from services.command.api import create_app
from services.command.errors import InvalidCommand
from services.command.memory import InMemoryEventStore
from services.command.rollback import RollbackTarget, rollback
from services.command.rules import checked_rules
from services.command.service import CommandService
from services.infra.settings import Settings
from services.infra.tenancy import Tenancy
from tests.support.auth import MemoryKeys, bearer, memory_gate

THEME = "checkout.theme"
ORG = "acme"
SYSTEM_URL = f"/v1/flags/{THEME}/rules"
ORG_URL = f"/v1/orgs/{ORG}/flags/{THEME}/rules"
SETTINGS = Settings(max_body_bytes=64 * 1024, command_rate_per_second=10_000.0, command_rate_burst=10_000)
THEME_BODY = {
    "key": THEME,
    "group": "checkout",
    "type": "string",
    "variants": {"blue": "#00f", "red": "#f00", "green": "#0f0"},
    "default_variant": "blue",
    "off_variant": "red",
}
STAFF = {"id": "staff", "conditions": [{"attribute": "email", "operator": "ends_with", "values": ["@acme.com"]}],
         "variant": "green"}  # fmt: skip
BETA = {
    "id": "beta",
    "conditions": [{"attribute": "app_version", "operator": "semver_gte", "values": ["2.1.0"]}],
    "split": [{"name": "blue", "weight": 500}, {"name": "green", "weight": 500}],
}
DEFINITION = Definition.from_value(THEME, {
    "kind": "release", "description": "", "owner": None, "group": "checkout", "archived": False,
    "value_type": "string", "values": THEME_BODY["variants"], "default_variant": "blue", "off_variant": "red",
})  # fmt: skip


def body(**fields: Any) -> dict[str, Any]:
    return {"reason": "testing", **fields}


def condition(operator: str, *values: Any, attribute: str = "a", **extra: Any) -> dict[str, Any]:
    return {"attribute": attribute, "operator": operator, "values": list(values), **extra}


def rule(*conditions: dict[str, Any], id: str = "r", **serves: Any) -> dict[str, Any]:
    return {"id": id, "conditions": list(conditions), **(serves or {"variant": "green"})}


# --- the pure checks ----------------------------------------------------------------------------------------------

REFUSED = [
    # (rules, field, a word of the detail)
    ([rule(condition("regex", "x"))], "rules.0.conditions.0.operator", "equals"),
    ([rule(condition("equals", "a", "b"))], "rules.0.conditions.0.values", "exactly one"),
    ([rule(condition("equals"))], "rules.0.conditions.0.values", "exactly one"),
    ([rule(condition("exists", "x"))], "rules.0.conditions.0.values", "takes no values"),
    ([rule(condition("in"))], "rules.0.conditions.0.values", f"1 to {MAX_VALUES}"),
    ([rule(condition("in", *range(MAX_VALUES + 1)))], "rules.0.conditions.0.values", str(MAX_VALUES)),
    ([rule(condition("lt", "10"))], "rules.0.conditions.0.values.0", "finite number"),
    ([rule(condition("lt", True))], "rules.0.conditions.0.values.0", "finite number"),
    ([rule(condition("starts_with", 3))], "rules.0.conditions.0.values.0", "takes strings"),
    ([rule(condition("matches", "(unclosed"))], "rules.0.conditions.0.values.0", "RE2"),
    ([rule(condition("matches", r"(a)\1"))], "rules.0.conditions.0.values.0", "RE2"),  # a backreference
    (
        [rule(condition("matches", "a" * (MAX_REGEX_LENGTH + 1)))],
        "rules.0.conditions.0.values.0",
        str(MAX_REGEX_LENGTH),
    ),
    ([rule(condition("semver_gt", "1.2"))], "rules.0.conditions.0.values.0", "semantic version"),
    ([rule(condition("before", "2026-01-01T00:00:00"))], "rules.0.conditions.0.values.0", "offset"),
    ([rule(condition("after", "tomorrow"))], "rules.0.conditions.0.values.0", "ISO 8601"),
    ([rule(condition("in_cidr", "10.0.0.0/8", "10.0.0.1/8"))], "rules.0.conditions.0.values.1", "network"),
    ([rule(condition("equals", "nul\x00"))], "rules.0.conditions.0.values.0", "NUL"),
    ([rule(condition("equals", "\ud800"))], "rules.0.conditions.0.values.0", "surrogate"),
    ([rule(condition("equals", "x", attribute="no spaces"))], "rules.0.conditions.0.attribute", "pattern"),
    ([rule()], "rules.0.conditions", "at least 1"),
    ([rule(*[condition("exists")] * (MAX_CONDITIONS + 1))], "rules.0.conditions", str(MAX_CONDITIONS)),
    ([rule(condition("exists"), id="has space")], "rules.0.id", "pattern"),
    (
        [rule(condition("exists"), id="a"), rule(condition("exists"), id="b"), rule(condition("exists"), id="a")],
        "rules.2.id",
        "rules.0",
    ),
    ([rule(condition("exists"), id=f"r{i}") for i in range(MAX_RULES + 1)], "rules", str(MAX_RULES)),
    ([rule(condition("exists"), variant="pink")], "rules.0.variant", "unknown variant 'pink'"),
    (
        [rule(condition("exists"), split=[{"name": "blue", "weight": 500}, {"name": "pink", "weight": 500}])],
        "rules.0.split.1.name",
        "unknown variant 'pink'",
    ),
    (
        [rule(condition("exists"), split=[{"name": "blue", "weight": 500}, {"name": "green", "weight": 400}])],
        "rules.0.split",
        "sum to 1000",
    ),
    ([rule(condition("exists"), variant="blue", split=[{"name": "blue", "weight": 1000}])], "rules.0", "exactly one"),
    ([rule(condition("exists"), variant=None)], "rules.0", "exactly one"),
    (
        [rule(condition("exists"), id="ok"), rule(condition("exists"), condition("lte", "x"), id="bad")],
        "rules.1.conditions.1.values.0",
        "finite number",
    ),
]


@pytest.mark.parametrize(("rules", "field", "says"), REFUSED)
def test_each_refusal_names_its_field(rules: list[dict[str, Any]], field: str, says: str) -> None:
    with pytest.raises(InvalidCommand) as refused:
        checked_rules(DEFINITION, rules)
    assert refused.value.field == field, refused.value.detail
    assert refused.value.detail.startswith(f"{field}: ") and says in refused.value.detail, refused.value.detail


def test_every_operator_with_a_fitting_value_is_accepted() -> None:
    fitting: dict[Operator, list[Any]] = {
        Operator.EQUALS: ["x"], Operator.NOT_EQUALS: [1.5], Operator.IN: ["a", 2, True], Operator.NOT_IN: ["b"],
        Operator.STARTS_WITH: ["a"], Operator.ENDS_WITH: ["@acme.com"], Operator.CONTAINS: ["c"],
        Operator.MATCHES: [r"^\w+@acme\.com$"], Operator.LT: [1], Operator.LTE: [2.5], Operator.GT: [-1],
        Operator.GTE: [0], Operator.SEMVER_EQ: ["1.0.0"], Operator.SEMVER_LT: ["2.0.0-rc.1"],
        Operator.SEMVER_LTE: ["1.2.3"], Operator.SEMVER_GT: ["0.1.0"], Operator.SEMVER_GTE: ["10.0.0"],
        Operator.BEFORE: ["2027-01-01T00:00:00Z"], Operator.AFTER: ["2026-01-01T00:00:00+01:00"],
        Operator.IN_CIDR: ["10.0.0.0/8", "2001:db8::/32"], Operator.EXISTS: [], Operator.NOT_EXISTS: [],
    }  # fmt: skip
    segment_tests = {Operator.IN_SEGMENT, Operator.NOT_IN_SEGMENT}  # no attribute; the store checks the keys
    assert set(fitting) == set(Operator) - segment_tests
    rules = [rule(condition(op.value, *values), id=f"r-{op.value}") for op, values in fitting.items()]
    rules += [rule({"operator": op.value, "values": ["beta"]}, id=f"r-{op.value}") for op in sorted(segment_tests)]
    checked = checked_rules(DEFINITION, rules)
    assert [r.id for r in checked] == [r["id"] for r in rules]
    assert [r.conditions[0].operator for r in checked] == [*fitting, *sorted(segment_tests)]


def test_a_boolean_flags_rule_serves_on_off_or_an_experiment_arm() -> None:
    boolean = Definition.from_value("ai.x", {"kind": "release", "description": "", "owner": None, "group": "ai",
                                             "archived": False})  # fmt: skip
    assert checked_rules(boolean, [rule(condition("exists"), variant="on")])[0].variant == "on"
    with pytest.raises(InvalidCommand) as refused:
        checked_rules(boolean, [rule(condition("exists"), variant="green")])
    assert refused.value.field == "rules.0.variant" and "known: off, on" in refused.value.detail


# --- over HTTP ----------------------------------------------------------------------------------------------------


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore(reader=Tenancy.CROSS_TENANT)


@pytest.fixture
def keys() -> MemoryKeys:
    return MemoryKeys()


@pytest.fixture
async def app_client(store: InMemoryEventStore, keys: MemoryKeys) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SETTINGS, store=store, auth=memory_gate(keys))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://command") as c:
        yield c


@pytest.fixture
async def client(app_client: httpx.AsyncClient, keys: MemoryKeys) -> httpx.AsyncClient:
    """A system admin's client, with the string flag `checkout.theme` defined."""
    app_client.headers.update(bearer(keys.issue(Role.SYSTEM_ADMIN, name="ops")))
    response = await app_client.post("/v1/flags", json=body(**THEME_BODY))
    assert response.status_code == 201, response.text
    return app_client


def refused(response: httpx.Response, field: str | None, says: str = "") -> None:
    assert response.status_code == 422, response.text
    payload = response.json()
    assert (payload["error"], payload["field"]) == ("invalid_request", field), payload
    assert says in payload["detail"], payload


async def version_of(client: httpx.AsyncClient, stream: str) -> int:
    return int((await client.get(f"/v1/streams/{stream}")).json()["version"])


async def test_rules_are_set_read_back_and_the_same_list_again_writes_nothing(client: httpx.AsyncClient) -> None:
    response = await client.put(ORG_URL, json=body(rules=[STAFF, BETA]))
    assert response.status_code == 201, response.text
    result = response.json()
    [event] = result["events"]
    stream = f"org/{ORG}/flag/{THEME}/rules"
    assert (result["stream"], result["version"], event["type"], event["stream"]) == (
        stream, 1, "TargetingRulesSet", stream
    )  # fmt: skip
    recorded = [
        {**STAFF, "conditions": [{**STAFF["conditions"][0], "case_sensitive": True}]},
        {**BETA, "conditions": [{**BETA["conditions"][0], "case_sensitive": True}]},
    ]
    assert (event["previous"], event["new"]) == (None, {"rules": recorded})

    again = await client.put(ORG_URL, json=body(rules=[STAFF, BETA]))
    assert (again.status_code, again.json()["changed"], again.json()["version"]) == (200, False, 1)
    shown = await client.get(ORG_URL)
    assert shown.status_code == 200 and shown.json() == {"stream": stream, "version": 1, "rules": recorded}

    reordered = await client.put(ORG_URL, json=body(rules=[BETA, STAFF], expected_version=1))
    assert reordered.status_code == 201 and [r["id"] for r in reordered.json()["events"][0]["new"]["rules"]] == [
        "beta", "staff"
    ]  # fmt: skip
    cleared = await client.request("DELETE", ORG_URL, json=body())
    assert cleared.status_code == 201 and cleared.json()["events"][0]["new"] is None
    assert (await client.request("DELETE", ORG_URL, json=body())).status_code == 200  # nothing left to clear
    assert (await client.get(ORG_URL)).json() == {"stream": stream, "version": 3, "rules": []}
    emptied = await client.put(ORG_URL, json=body(rules=[]))
    assert (emptied.status_code, emptied.json()["changed"]) == (200, False)  # [] is clearing: already clear


async def test_the_system_level_has_its_own_rules_stream(client: httpx.AsyncClient) -> None:
    response = await client.put(SYSTEM_URL, json=body(rules=[STAFF]))
    assert response.status_code == 201, response.text
    assert response.json()["stream"] == f"flag/{THEME}/system/rules"
    assert await version_of(client, f"flag/{THEME}/system") == 0  # the system default is untouched
    assert (await client.get(SYSTEM_URL)).json()["rules"][0]["id"] == "staff"
    assert (await client.get(ORG_URL)).json()["version"] == 0


async def test_what_was_written_folds_to_a_targeting_match(client: httpx.AsyncClient, store: InMemoryEventStore
                                                           ) -> None:  # fmt: skip
    assert (await client.put(f"/v1/flags/{THEME}/system", json=body(enabled=True))).status_code == 201
    assert (await client.put(ORG_URL, json=body(rules=[STAFF]))).status_code == 201
    state = fold(decode(e.body) for e in await store.list_events(limit=1000))
    staff = evaluate(state.catalog, state.tenant(ORG), THEME, user_id="u1", context={"email": "kim@acme.com"})
    assert (staff.value, staff.variant, staff.reason, staff.rule) == ("#0f0", "green", Reason.TARGETING_MATCH, "staff")
    other = evaluate(state.catalog, state.tenant(ORG), THEME, user_id="u1", context={"email": "kim@example.com"})
    assert (other.value, other.reason) == ("#00f", Reason.STATIC)


async def test_a_stale_expected_version_is_a_conflict_and_writes_nothing(client: httpx.AsyncClient) -> None:
    assert (await client.put(ORG_URL, json=body(rules=[STAFF], expected_version=0))).status_code == 201
    stale = await client.put(ORG_URL, json=body(rules=[BETA], expected_version=0))
    assert stale.status_code == 409, stale.text
    payload = stale.json()
    assert (payload["error"], payload["field"], payload["current_version"], payload["expected_version"]) == (
        "version_conflict", "expected_version", 1, 0
    )  # fmt: skip
    stale_clear = await client.request("DELETE", ORG_URL, json=body(expected_version=0))
    assert stale_clear.status_code == 409
    assert [r["id"] for r in (await client.get(ORG_URL)).json()["rules"]] == ["staff"]


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ([rule(condition("regex", "x"))], "rules.0.conditions.0.operator"),  # the schema's enum
        ([rule(condition("in", *range(MAX_VALUES + 1)))], "rules.0.conditions.0.values"),  # maxItems
        ([rule(condition("equals", "x" * 1001))], "rules.0.conditions.0.values.0"),  # maxLength
        ([rule(condition("equals", {"an": "object"}))], "rules.0.conditions.0.values.0"),
        ([rule(condition("lt", 10**400))], "rules.0.conditions.0.values.0"),  # beyond 64 bits: never a 500
        ([{**STAFF, "extra": 1}], "rules.0.extra"),
        ([rule(condition("exists"), id=f"r{i}") for i in range(MAX_RULES + 1)], "rules"),
        ([STAFF, {**BETA, "id": "staff"}], "rules.1.id"),  # the checks past the schema
        ([STAFF, rule(condition("semver_lt", "v2"))], "rules.1.conditions.0.values.0"),
        ([rule(condition("exists"), variant="pink")], "rules.0.variant"),
    ],
)
async def test_a_refused_list_is_a_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, store: InMemoryEventStore, rules: list[dict[str, Any]], field: str
) -> None:
    before = len(await store.list_events(limit=1000))
    for url in (ORG_URL, SYSTEM_URL):
        refused(await client.put(url, json=body(rules=rules)), field)
    assert len(await store.list_events(limit=1000)) == before


async def test_a_missing_list_and_a_wrong_shape_are_refused(client: httpx.AsyncClient) -> None:
    refused(await client.put(ORG_URL, json=body()), "rules", "required")
    refused(await client.put(ORG_URL, json=body(rules={"staff": STAFF})), "rules")
    refused(await client.put(ORG_URL, json={"rules": [STAFF]}), "reason")


async def test_an_unknown_or_archived_flag_is_a_404(client: httpx.AsyncClient) -> None:
    for method, kwargs in (("PUT", {"json": body(rules=[STAFF])}), ("DELETE", {"json": body()}), ("GET", {})):
        missing = await client.request(method, "/v1/orgs/acme/flags/no.such.flag/rules", **kwargs)
        assert (missing.status_code, missing.json()["error"], missing.json()["field"]) == (
            404, "unknown_flag", "flag_key"
        ), (method, missing.text)  # fmt: skip
    assert (await client.put(ORG_URL, json=body(rules=[STAFF]))).status_code == 201
    assert (await client.post(f"/v1/flags/{THEME}/archive", json=body())).status_code == 201
    archived = await client.put(ORG_URL, json=body(rules=[BETA]))
    assert archived.status_code == 404 and "archived" in archived.json()["detail"]
    assert [r["id"] for r in (await client.get(ORG_URL)).json()["rules"]] == ["staff"]  # its history stays readable


async def test_each_level_is_authorised_like_its_setting(client: httpx.AsyncClient, keys: MemoryKeys) -> None:
    org_admin = bearer(keys.issue(Role.ORG_ADMIN, ORG))
    other_admin = bearer(keys.issue(Role.ORG_ADMIN, "globex"))
    evaluator = bearer(keys.issue(Role.EVALUATOR, ORG))
    auditor = bearer(keys.issue(Role.AUDITOR, ORG))

    mine = await client.put(ORG_URL, json=body(rules=[STAFF]), headers=org_admin)
    assert mine.status_code == 201, mine.text
    assert mine.json()["events"][0]["new"]["rules"][0]["id"] == "staff"
    for headers in (other_admin, evaluator, auditor):
        assert (await client.put(ORG_URL, json=body(rules=[BETA]), headers=headers)).status_code == 403
        assert (await client.request("DELETE", ORG_URL, json=body(), headers=headers)).status_code == 403
    for headers in (org_admin, evaluator, auditor):
        assert (await client.put(SYSTEM_URL, json=body(rules=[BETA]), headers=headers)).status_code == 403
    # reading: the org's rules are its own (the audit trail's readers), the system's the catalogue
    assert (await client.get(ORG_URL, headers=auditor)).status_code == 200
    assert (await client.get(ORG_URL, headers=other_admin)).status_code == 403
    assert (await client.get(ORG_URL, headers=evaluator)).status_code == 403
    assert (await client.get(SYSTEM_URL, headers=evaluator)).status_code == 200
    assert [r["id"] for r in (await client.get(ORG_URL)).json()["rules"]] == ["staff"]


async def test_a_request_without_a_key_is_a_401(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.put(ORG_URL, json=body(rules=[STAFF]))).status_code == 401


async def test_the_openapi_document_states_the_limits(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    assert set(paths[SYSTEM_URL.replace(THEME, "{flag_key}")]) == {"put", "delete", "get"}
    assert set(paths["/v1/orgs/{org_id}/flags/{flag_key}/rules"]) == {"put", "delete", "get"}
    schemas = document["components"]["schemas"]
    assert schemas["RulesRequest"]["properties"]["rules"]["maxItems"] == MAX_RULES
    rule_schema = schemas["RuleIn"]["properties"]
    assert (rule_schema["conditions"]["minItems"], rule_schema["conditions"]["maxItems"]) == (1, MAX_CONDITIONS)
    assert rule_schema["id"]["pattern"] and rule_schema["id"]["maxLength"] == 64
    condition_schema = schemas["ConditionIn"]["properties"]
    assert condition_schema["values"]["maxItems"] == MAX_VALUES
    assert condition_schema["attribute"]["pattern"]
    assert set(schemas["Operator"]["enum"]) == {op.value for op in Operator}
    item_types = {alt.get("type") for alt in condition_schema["values"]["items"]["anyOf"]}
    assert item_types == {"string", "boolean", "integer", "number"}
    [string] = [alt for alt in condition_schema["values"]["items"]["anyOf"] if alt.get("type") == "string"]
    assert string["maxLength"] == 1000


def test_an_integer_beyond_64_bits_is_refused_not_a_500() -> None:
    """`math.isfinite` overflows on such an int: it is refused by name before the operator's check runs."""
    with pytest.raises(InvalidCommand) as refused:
        checked_rules(DEFINITION, [rule(condition("in", 1, 10**400))])
    assert refused.value.field == "rules.0.conditions.0.values.1"


# --- rollback: a rule change is a change ----------------------------------------------------------------------------


class _Values:
    """The audit store's value reads over the in-memory log: a stream's value right after a version."""

    def __init__(self, store: InMemoryEventStore) -> None:
        self.store = store

    async def value_as_of(self, stream: str, at: Any) -> tuple[int, dict[str, Any] | None]:
        raise AssertionError("these tests roll back to versions")

    async def value_at_version(self, stream: str, version: int) -> tuple[int, dict[str, Any] | None] | None:
        for stored in await self.store.list_events(limit=1000):
            envelope = decode(stored.body)
            if (envelope.stream, envelope.version) == (stream, version):
                return version, envelope.new
        return None


async def test_rollback_restores_a_levels_rules_whole(client: httpx.AsyncClient, store: InMemoryEventStore) -> None:
    assert (await client.put(ORG_URL, json=body(rules=[STAFF]))).status_code == 201  # v1
    assert (await client.put(ORG_URL, json=body(rules=[BETA, STAFF]))).status_code == 201  # v2
    assert (await client.request("DELETE", ORG_URL, json=body())).status_code == 201  # v3
    service, stream = CommandService(store), f"org/{ORG}/flag/{THEME}/rules"
    actor = Actor(id="key:0123456789abcdef", name="admin")
    [done] = await rollback(service, _Values(store), [stream], RollbackTarget(version=2), reason="undo", actor=actor)
    [event] = done.events
    assert (event.type, event.previous) == ("TargetingRulesSet", None)
    assert event.new is not None and [r["id"] for r in event.new["rules"]] == ["beta", "staff"]
    [again] = await rollback(service, _Values(store), [stream], RollbackTarget(version=2), reason="u", actor=actor)
    assert not again.changed  # already at its goal: nothing written
    [back] = await rollback(service, _Values(store), [stream], RollbackTarget(version=1), reason="u", actor=actor)
    assert back.events[0].new == {"rules": [{**STAFF, "conditions": [{**STAFF["conditions"][0],
                                                                        "case_sensitive": True}]}]}  # fmt: skip
