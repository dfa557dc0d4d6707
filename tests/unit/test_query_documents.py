"""Documents: read-model rows → JSON → compiled structures, and answers rendered from them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import FlagArchived, Level, Platform
from flagcore import Catalog, EventRef, FlagState, Setting, TenantRules, bucket, evaluate, fold
from services.query import rendering
from services.query.documents import (
    catalog_document,
    compile_catalog,
    compile_org,
    compile_user,
    dumps,
    org_document,
    user_document,
)
from tests.support.eventlog import EventLog, random_log
from tests.support.query_fakes import catalog_rows, override_rows, setting_row


def compiled_documents(state: FlagState, org: str, user: str | None) -> tuple[Catalog, TenantRules]:
    """Evaluation inputs as the query service builds them: rows → documents → bytes → compiled."""
    flags, system = catalog_rows(state.catalog)
    catalog = compile_catalog(dumps(catalog_document(flags, system))).catalog
    rows = override_rows(state.tenant(org))
    compiled_org = compile_org(dumps(org_document(org, [r for r in rows if r["level"] != "user"])))
    users = {}
    if user is not None:
        mine = [r for r in rows if r["level"] == "user" and r["user_id"] == user]
        users = compile_user(dumps(user_document(org, user, mine))).user
    return catalog, TenantRules(org, compiled_org.org, compiled_org.platform, users)


# --- round trips ------------------------------------------------------------------------------------


def test_catalog_round_trip_keeps_definitions_defaults_and_their_events() -> None:
    log = EventLog()
    log.define("a.b", group="g")
    log.system("a.b", True)
    log.rollout("a.b", 25, level=Level.SYSTEM)
    log.define("c.d")
    archived = log.add(FlagArchived(flag_key="c.d"))
    state = fold(log.events)
    flags, system = catalog_rows(state.catalog)
    compiled = compile_catalog(dumps(catalog_document(flags, system)))
    assert compiled.catalog.definitions == state.catalog.definitions
    assert compiled.catalog.system == state.catalog.system
    listing = orjson.loads(compiled.listing)["flags"]
    assert [f["key"] for f in listing] == ["a.b", "c.d"]
    assert listing[0]["system"]["rollout_percentage"] == 25 and listing[0]["system"]["version"] == 2
    assert listing[1]["system"] is None and listing[1]["archived"] is True
    assert listing[1]["version"] == 2 and listing[1]["event"]["id"] == str(archived.event_id)


def test_org_and_user_documents_round_trip_and_an_empty_one_is_still_a_document() -> None:
    log = EventLog()
    log.org("o1", "a.b", True)
    log.platform("o1", "meta", "a.b", False)
    log.rollout("a.b", 10, level=Level.PLATFORM, org="o1", platform="meta")
    log.user("o1", "u1", "a.b", True)
    rules = fold(log.events).tenant("o1")
    rows = override_rows(rules)
    org = compile_org(dumps(org_document("o1", rows)))
    assert org.org == rules.org and org.platform == rules.platform
    user = compile_user(dumps(user_document("o1", "u1", [r for r in rows if r["level"] == "user"])))
    assert user.user == rules.user
    nobody = user_document("o1", "u9", [])
    assert nobody == {"org_id": "o1", "user_id": "u9", "user": []}
    assert compile_user(dumps(nobody)).user == {}


def test_event_times_travel_as_utc_rfc3339() -> None:
    at = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    ref = EventRef(str(uuid.uuid4()), "org/o/flag/a.b", 3, "alice", "why", at)
    raw = dumps(org_document("o", [setting_row("a.b", Setting(True, None, ref), level="org", platform="")]))
    assert b'"occurred_at":"2026-03-01T12:30:00Z"' in raw
    assert compile_org(raw).org["a.b"].source == ref


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 5000))
def test_compiled_documents_evaluate_exactly_like_the_fold(seed: int) -> None:
    log = random_log(250, orgs=["o1", "o2"], flags=4, users=3, seed=seed)
    state = fold(log.events)
    for org in ("o1", "o2", "o-none"):
        for user in (None, "user-0", "user-2", "stranger"):
            catalog, tenant = compiled_documents(state, org, user)
            for key in sorted(state.catalog.definitions):
                for platform in (None, "meta", "google"):
                    want = evaluate(state.catalog, state.tenant(org), key, platform=platform, user_id=user)
                    got = evaluate(catalog, tenant, key, platform=platform, user_id=user)
                    assert got == want


# --- rendering ---------------------------------------------------------------------------------------------


def test_an_evaluation_renders_with_its_rollout_and_event() -> None:
    log = EventLog()
    log.define("a.b")
    set_ = log.org("o1", "a.b", True)
    log.rollout("a.b", 40, level=Level.ORG, org="o1")
    state = fold(log.events)
    answer = rendering.evaluation(evaluate(state.catalog, state.tenant("o1"), "a.b", user_id="u7"))
    assert answer["rollout"] == {"percentage": 40, "bucket": bucket("a.b", "u7")}
    assert answer["value"] is (bucket("a.b", "u7") <= 40)
    assert (answer["reason"], answer["level"], answer["error_code"]) == ("SPLIT", "org", None)
    assert answer["event"]["version"] == 2 and answer["event"]["id"] != str(set_.event_id)
    body = orjson.loads(rendering.dumps(answer))
    assert body["event"]["occurred_at"].endswith("Z")
    fields = {
        "flag_key", "value", "reason", "level", "error_code", "variant", "rule", "explanation", "rollout", "event"
    }  # fmt: skip
    assert set(body) == fields


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], ("ERROR", None, "FLAG_NOT_FOUND", False)),
        (["define"], ("DEFAULT", None, None, False)),
        (["define", "archive"], ("DISABLED", "system", None, False)),
    ],
)
def test_answers_without_a_setting(events: list[str], expected: tuple[Any, ...]) -> None:
    log = EventLog()
    for e in events:
        log.define("a.b") if e == "define" else log.add(FlagArchived(flag_key="a.b"))
    state = fold(log.events)
    answer = rendering.evaluation(evaluate(state.catalog, state.tenant("o"), "a.b", platform=Platform.META))
    assert (answer["reason"], answer["level"], answer["error_code"], answer["value"]) == expected
    assert answer["rollout"] is None
    assert (answer["event"] is None) == (expected[0] != "DISABLED")


def test_error_bodies_have_the_common_shape() -> None:
    body = orjson.loads(rendering.error("unknown_flag", "no such flag", "flag_key", flag_key="x.y"))
    assert body == {"error": "unknown_flag", "detail": "no such flag", "field": "flag_key", "flag_key": "x.y"}
