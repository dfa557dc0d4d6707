"""The hot path's answer cache: an OFREP answer served again only while it is still right, and counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest_asyncio
from fastapi import FastAPI

from events import Level, SettingScheduled
from flagcore import bucket, fold
from services.auth.policy import Role
from services.infra.cache_keys import CacheKeys
from services.infra.settings import Settings
from services.query.api import create_app
from services.query.cache import DocumentCache
from services.query.dependencies import wiring_of
from services.query.fastpath import FastPath
from services.query.ofrep import Evaluator
from services.query.service import QueryService
from tests.support.auth import MemoryKeys, bearer, memory_gate
from tests.support.eventlog import EventLog
from tests.support.query_fakes import StateSource
from tests.support.query_sample import KEY, sample_log

FLAG = f"/ofrep/v1/evaluate/flags/{KEY}"
BULK = "/ofrep/v1/evaluate/flags"
KEYS = CacheKeys("t")
# u-1 has an override of KEY of their own: what plans (services.query.plans) leave to the use cases and this cache.
CONTEXT = {"context": {"targetingKey": "u-1"}}
PLANNED = {"context": {"targetingKey": "u-7"}}  # no override: answered from a plan once the documents are at hand


class World:
    """The query app behind the fast path, its document cache online, with the evaluations it computes counted."""

    def __init__(
        self, client: httpx.AsyncClient, app: FastAPI, service: QueryService, source: StateSource, keys: MemoryKeys
    ) -> None:
        self.client = client
        self.service = service
        self.source = source
        self.keys = keys
        self.computed = 0  # evaluations the use cases ran (not served from the answer cache)
        self.counted: list[tuple[str, tuple[str, ...]]] = []  # evaluations served from it, as counted
        wiring = wiring_of(app)
        evaluations, count = wiring.evaluations, wiring.count_evaluations

        def computing() -> Evaluator:
            self.computed += 1
            return evaluations()

        def counting(org_id: str, flag_keys: tuple[str, ...]) -> None:
            self.counted.append((org_id, flag_keys))
            count(org_id, flag_keys)

        wiring.evaluations, wiring.count_evaluations = computing, counting  # type: ignore[method-assign]

    async def post(self, path: str, body: object, *, org: str | None = "acme", role: Role = Role.EVALUATOR,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        key = bearer(self.keys.issue(role, org))
        return await self.client.post(path, content=orjson.dumps(body), headers={**key, **(headers or {})})

    def change(self, log: EventLog, document: str) -> None:
        """What the projector does: new rows, then the document's invalidation."""
        self.source.state = fold(log.events)
        self.service.cache.invalidate(document)


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    source = StateSource(fold(sample_log().events))
    service = QueryService(DocumentCache(None, ttl=60), source, KEYS)
    service.cache.online = True  # as the invalidation listener sets it once subscribed
    keys = MemoryKeys()
    app = create_app(Settings(), service=service, auth=memory_gate(keys))
    transport = httpx.ASGITransport(app=FastPath(app), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://query.test") as client:
        yield World(client, app, service, source, keys)


async def test_the_same_request_is_answered_again_without_evaluating_and_counted(world: World) -> None:
    first = await world.post(FLAG, CONTEXT)  # documents read: what that answer came from just changed
    await world.post(FLAG, CONTEXT)  # kept
    computed = world.computed
    again = [await world.post(FLAG, CONTEXT) for _ in range(3)]
    assert world.computed == computed  # served from the answer cache
    assert all(r.status_code == 200 and r.content == first.content for r in again)
    assert world.counted == [("acme", (KEY,))] * 3  # usage still counts every evaluation served
    await world.post(BULK, CONTEXT)
    bulk = await world.post(BULK, CONTEXT)
    await world.post(BULK, CONTEXT)
    assert world.counted[-1] == ("acme", tuple(f["key"] for f in bulk.json()["flags"]))


async def test_a_changed_document_is_never_answered_from_before(world: World) -> None:
    before = (await world.post(FLAG, PLANNED)).json()
    assert before["reason"] == "SPLIT"
    log = sample_log()
    log.org("acme", KEY, False)
    log.rollout(KEY, None, level=Level.ORG, org="acme")
    world.change(log, KEYS.org("acme"))
    after = (await world.post(FLAG, PLANNED)).json()
    assert (after["value"], after["reason"]) == (False, "TARGETING_MATCH")


async def test_a_user_document_change_reaches_the_bulk_answer_and_its_etag(world: World) -> None:
    first = await world.post(BULK, PLANNED)
    etag = first.headers["etag"]
    assert (await world.post(BULK, PLANNED, headers={"If-None-Match": etag})).status_code == 304  # from a plan
    log = sample_log()
    log.user("acme", "u-7", KEY, True)
    world.change(log, KEYS.user("acme", "u-7"))
    changed = await world.post(BULK, PLANNED, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    flag = next(f for f in changed.json()["flags"] if f["key"] == KEY)
    assert (flag["value"], flag["metadata"]["level"]) == (True, "user")


async def test_nothing_is_served_from_it_while_invalidations_may_be_missed(world: World) -> None:
    await world.post(FLAG, CONTEXT)
    await world.post(FLAG, CONTEXT)
    world.service.cache.online = False  # the subscription dropped
    computed = world.computed
    await world.post(FLAG, CONTEXT)
    assert world.computed == computed + 1


async def test_a_scheduled_step_ends_the_answer_at_its_instant(world: World) -> None:
    at = datetime.now(UTC) + timedelta(seconds=0.5)
    log = sample_log()
    log.add(SettingScheduled(flag_key=KEY, level=Level.ORG, org_id="acme", effective_at=at, rollout_percentage=0))
    world.change(log, KEYS.org("acme"))
    user = next(u for u in (f"u-{i}" for i in range(2, 200)) if bucket(KEY, u) <= 30)  # on before the step
    context = {"context": {"targetingKey": user}}
    for _ in range(3):  # the last ones from a plan
        assert (await world.post(FLAG, context)).json()["value"] is True
    assert world.counted
    await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + 0.05)
    after = (await world.post(FLAG, context)).json()
    assert (after["value"], after["metadata"]["rolloutPercentage"]) == (False, 0)  # from a plan made again


async def test_another_org_or_scope_never_gets_a_kept_answer(world: World) -> None:
    acme = await world.post(BULK, CONTEXT)
    globex = await world.post(BULK, CONTEXT, org="globex")
    assert globex.status_code == 200 and globex.content != acme.content  # globex has none of acme's overrides
    system_wide = await world.post(BULK, CONTEXT, org=None, role=Role.SYSTEM_ADMIN)  # must name the org
    assert (system_wide.status_code, system_wide.json()["errorCode"]) == (400, "INVALID_CONTEXT")
    auditor = await world.post(BULK, CONTEXT, role=Role.AUDITOR)
    assert auditor.status_code == 403


# --- the native route: GET /v1/orgs/{org}/flags/{key}, kept the same way -----------------------------------------

NATIVE = f"/v1/orgs/acme/flags/{KEY}"


async def get(world: World, path: str, query: str, *, org: str | None = "acme", role: Role = Role.EVALUATOR
              ) -> httpx.Response:
    return await world.client.get(f"{path}?{query}", headers=bearer(world.keys.issue(role, org)))


async def test_a_native_answer_is_served_again_without_evaluating_and_counted(world: World) -> None:
    first = await get(world, NATIVE, "platform=tiktok&user=u-7")
    await get(world, NATIVE, "platform=tiktok&user=u-7")  # documents read by the first: this one is kept
    computed, counted = world.computed, len(world.counted)
    again = [await get(world, NATIVE, "platform=tiktok&user=u-7") for _ in range(3)]
    assert world.computed == computed
    assert all(r.status_code == 200 and r.content == first.content for r in again)
    assert world.counted[counted:] == [("acme", (KEY,))] * 3
    other = await get(world, NATIVE, "user=u-7&platform=tiktok")  # another spelling: computed, same answer
    assert world.computed == computed + 1 and other.json() == first.json()


async def test_a_changed_document_ends_a_kept_native_answer(world: World) -> None:
    for _ in range(2):
        before = (await get(world, NATIVE, "user=u-7")).json()
    assert before["reason"] == "SPLIT"
    log = sample_log()
    log.org("acme", KEY, False)
    log.rollout(KEY, None, level=Level.ORG, org="acme")
    world.change(log, KEYS.org("acme"))
    after = (await get(world, NATIVE, "user=u-7")).json()
    assert (after["value"], after["reason"], after["level"]) == (False, "TARGETING_MATCH", "org")


async def test_a_kept_native_answer_never_reaches_another_scope(world: World) -> None:
    for _ in range(2):
        assert (await get(world, NATIVE, "user=u-7")).status_code == 200
    assert (await get(world, NATIVE, "user=u-7", org="globex")).status_code == 403
    assert (await get(world, NATIVE, "user=u-7", role=Role.AUDITOR)).status_code == 403
    refused = await get(world, NATIVE, "user=has space")
    assert refused.status_code == 422 and (await get(world, NATIVE, "user=has space")).status_code == 422
