"""Targeting rules on the running stack: projected into `targeting_rules`, invalidated, served with a context.

The events are produced to the real topic as the relay publishes them (the command routes that write
rules are another change); the real projector writes the rows (migration 0012) and deletes the cached
documents they change, and `python -m services.query` serves them. Each step asks first, so the
catalogue's and the org's documents are cached when the next rule change arrives: the answer must follow
the change (the catalogue invalidated for a system list, the org's document for an org's, and no other
org's). The real OpenFeature OFREP provider passes its evaluation context's attributes and reads the rule
from the flag metadata.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import Reason

from events import AnyChange, FlagDefined, SystemDefaultSet, to_record
from services.infra.settings import Role, Settings
from tests.support.auth import bearer
from tests.support.eventlog import rules_change
from tests.support.factories import LogBuilder
from tests.support.kafka import produce, topic_size
from tests.support.projection import tenant_rows, wait_for_offsets
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

ORG, OTHER, FLAG = "acme", "globex", "r.checkout"
STAFF = {"id": "staff", "conditions": [{"attribute": "email", "operator": "ends_with", "values": ["@acme.com"]}],
         "variant": "on"}  # fmt: skip
BIG = {"id": "big", "conditions": [{"attribute": "seats", "operator": "gte", "values": [100]}], "variant": "off"}
ANA = {"email": "ana@acme.com", "seats": 500}


class World:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.log = LogBuilder()
        self.keys: dict[str, str] = {}

    def publish(self, *changes: AnyChange) -> None:
        events = self.log.extend(changes)
        assert len(events) == len(changes)
        before = asyncio.run(topic_size(self.stack.settings))
        asyncio.run(produce(self.stack.settings, [to_record(e) for e in events]))
        asyncio.run(wait_for_offsets(self.stack.settings, before + len(events)))

    def key(self, org: str) -> str:
        if org not in self.keys:
            with httpx.Client(base_url=self.stack.command_url, headers=self.stack.headers, timeout=10) as http:
                body = {"name": f"{org} app", "role": "evaluator", "org_id": org, "reason": "targeting rules test"}
                response = http.post("/v1/keys", json=body)
                assert response.status_code == 201, response.text
            self.keys[org] = str(response.json()["key"])
        return self.keys[org]

    def answers(self, org: str, context: dict[str, Any]) -> list[tuple[Any, ...]]:
        """(value, reason, level, rule) from the native GET, the native POST, OFREP single and OFREP bulk."""
        with httpx.Client(base_url=self.stack.query_url, headers=bearer(self.key(org)), timeout=10) as http:
            params = [("user", "u-1"), *((f"context.{k}", v) for k, v in context.items() if isinstance(v, str))]
            typed = {k: v for k, v in context.items() if not isinstance(v, str)}
            if typed:
                params.append(("context", json.dumps(typed)))
            native = http.get(f"/v1/orgs/{org}/flags/{FLAG}", params=params).json()
            posted = http.post(f"/v1/orgs/{org}/flags/{FLAG}/evaluate", json={"user": "u-1", "context": context})
            body = {"context": {"targetingKey": "u-1", **context}}
            one = http.post(f"/ofrep/v1/evaluate/flags/{FLAG}", json=body).json()
            bulk = http.post("/ofrep/v1/evaluate/flags", json=body).json()
        [listed] = [f for f in bulk["flags"] if f["key"] == FLAG]
        got = [(native["value"], native["reason"], native["level"], native["rule"])]
        p = posted.json()
        got.append((p["value"], p["reason"], p["level"], p["rule"]))
        for o in (one, listed):
            got.append((o["value"], o["reason"], o["metadata"].get("level"), o["metadata"].get("rule")))
        return got

    def eventually(self, org: str, context: dict[str, Any], expected: tuple[Any, ...], within: float = 15) -> None:
        """Every surface answers `expected` within `within` seconds (the projection and its invalidation)."""
        deadline = time.monotonic() + within
        while True:
            got = self.answers(org, context)
            if got == [expected] * 4:
                return
            assert time.monotonic() < deadline, f"{org} {context}: {got} != {expected}"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def world(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    stack = start_stack(make_settings(), tmp_path_factory.mktemp("rules"))
    try:
        w = World(stack)
        w.publish(FlagDefined(flag_key=FLAG, group="r", description="checkout"), SystemDefaultSet(flag_key=FLAG,
                  enabled=False))  # fmt: skip
        yield w
    finally:
        stack.stop()


def test_rule_changes_are_projected_invalidated_and_served_with_the_context(world: World) -> None:
    off = (False, "STATIC", "system", None)
    for org in (ORG, OTHER):  # asked first: the catalogue and both orgs' documents are cached now
        world.eventually(org, ANA, off)
    world.publish(rules_change(FLAG, None, STAFF))  # the system's list: the catalogue is invalidated
    for org in (ORG, OTHER):
        world.eventually(org, ANA, (True, "TARGETING_MATCH", "system", "staff"), within=10)
        world.eventually(org, {"email": "bob@example.com"}, off)
    world.publish(rules_change(FLAG, ORG, BIG))  # the org's list: its document, and no other org's
    world.eventually(ORG, ANA, (False, "TARGETING_MATCH", "org", "big"), within=10)
    world.eventually(ORG, {"email": "ana@acme.com", "seats": 5}, (True, "TARGETING_MATCH", "system", "staff"))
    world.eventually(OTHER, ANA, (True, "TARGETING_MATCH", "system", "staff"))
    world.publish(rules_change(FLAG, None))  # the system's list emptied: its row is deleted
    world.eventually(OTHER, ANA, off, within=10)
    world.eventually(ORG, ANA, (False, "TARGETING_MATCH", "org", "big"))
    rows = asyncio.run(tenant_rows(world.stack.settings, Role.QUERY, ORG, "SELECT stream FROM targeting_rules"))
    assert [r["stream"] for r in rows] == [f"org/{ORG}/flag/{FLAG}/rules"]
    rows = asyncio.run(tenant_rows(world.stack.settings, Role.QUERY, OTHER, "SELECT stream FROM targeting_rules"))
    assert rows == []  # the other org's tenancy sees neither ORG's list nor (now) a system one


def test_the_ofrep_provider_passes_its_context_and_reads_the_rule(world: World) -> None:
    world.publish(rules_change(FLAG, OTHER, {**STAFF, "id": "globex-staff"}))
    token = world.key(OTHER)
    domain = f"rules-{uuid.uuid4().hex[:8]}"
    api.set_provider(OFREPProvider(world.stack.query_url, headers_factory=lambda: bearer(token)), domain)
    client = api.get_client(domain)
    deadline = time.monotonic() + 10
    while True:
        details = client.get_boolean_details(FLAG, False, EvaluationContext("u-1", {"email": "ana@acme.com"}))
        if details.reason == Reason.TARGETING_MATCH or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (details.value, details.reason, details.flag_metadata.get("rule")) == (
        True, Reason.TARGETING_MATCH, "globex-staff"
    )  # fmt: skip
    plain = client.get_boolean_details(FLAG, False, EvaluationContext("u-1", {"email": "ana@example.com"}))
    assert (plain.value, plain.reason) == (False, Reason.STATIC)
    refused = client.get_boolean_details(FLAG, True, EvaluationContext("u-1", {"email": "x" * 1001}))
    assert (refused.value, refused.reason) == (True, Reason.ERROR)  # 400 INVALID_CONTEXT: the caller's default
