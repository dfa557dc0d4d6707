"""Evaluation counts and override counts on the real stack (Kafka, Postgres, Redis, the services as processes).

Evaluations on every route (the native single-flag GET and OFREP on the hot path, the
native bulk GET on the app) are counted per org and flag, flushed to Redis about once a
second by the query service, and read back per org (its audit readers) or for every org
(system-wide readers). The override counts route answers what the projector counted.
And the Redis adapter on its own: counts add up across flushes, keys expire.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from services.infra.settings import Settings
from services.query.usage import RETENTION_MINUTES, window
from services.query.usage_redis import RedisUsage
from tests.support.auth import bearer
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

FLAG, OTHER_FLAG = "usage.probe", "usage.other"
REASON = "usage test"


@pytest.fixture(scope="module")
def usage_stack(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(make_settings(), tmp_path_factory.mktemp("usage-logs"))
    with httpx.Client(timeout=10, headers=stack.headers) as http:
        for key in (FLAG, OTHER_FLAG):
            r = http.post(f"{stack.command_url}/v1/flags", json={"key": key, "group": "usage", "reason": REASON})
            assert r.status_code == 201, r.text
        listed = _wait_for(lambda: http.get(f"{stack.query_url}/v1/flags").json(),
                           lambda a: {FLAG, OTHER_FLAG} <= {f["key"] for f in a["flags"]})
        assert {FLAG, OTHER_FLAG} <= {f["key"] for f in listed["flags"]}, "the flags were never projected"
    yield stack
    stack.stop()


def _key(stack: Stack, role: str, org: str | None) -> dict[str, str]:
    body = {"name": f"{role} {org}", "role": role, "org_id": org, "reason": REASON}
    r = httpx.post(f"{stack.command_url}/v1/keys", json=body, headers=stack.headers, timeout=10)
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


def _wait_for(read: Callable[[], dict[str, Any]], check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        answer = read()
        if check(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def _totals(answer: dict[str, Any]) -> dict[str, int]:
    return {f["flag_key"]: f["total"] for f in answer["flags"]}


def test_evaluations_on_every_route_are_counted_per_org_and_flag(usage_stack: Stack) -> None:
    stack, org, other = usage_stack, f"use-{uuid.uuid4().hex[:8]}", f"use-{uuid.uuid4().hex[:8]}"
    q = stack.query_url
    with httpx.Client(timeout=10, headers=stack.headers) as http:
        for _ in range(3):
            assert http.get(f"{q}/v1/orgs/{org}/flags/{FLAG}", params={"user": "u1"}).status_code == 200
        ofrep = {"context": {"org": org, "targetingKey": "u2"}}
        assert http.post(f"{q}/ofrep/v1/evaluate/flags/{FLAG}", json=ofrep).status_code == 200
        assert http.post(f"{q}/ofrep/v1/evaluate/flags", json=ofrep).status_code == 200  # every flag once
        assert http.get(f"{q}/v1/orgs/{org}/flags").status_code == 200  # the app's route: every flag once
        assert http.get(f"{q}/v1/orgs/{other}/flags/{OTHER_FLAG}").status_code == 200
        assert http.get(f"{q}/v1/orgs/{org}/flags/no.such.flag").status_code == 404  # not an evaluation

        auditor = _key(stack, "auditor", org)
        expected = {FLAG: 6, OTHER_FLAG: 2}
        mine = _wait_for(lambda: http.get(f"{q}/v1/orgs/{org}/usage", headers=auditor).json(),
                         lambda a: _totals(a) == expected)
        assert mine["org_id"] == org and _totals(mine) == expected
        assert len(mine["minutes"]) == 60 and all(len(f["counts"]) == 60 for f in mine["flags"])

        everyone = http.get(f"{q}/v1/usage", params={"minutes": 5}).json()
        assert everyone["org_id"] is None and len(everyone["minutes"]) == 5
        assert _totals(everyone)[OTHER_FLAG] >= 3  # both orgs (other tests' orgs may add more)

        assert http.get(f"{q}/v1/orgs/{other}/usage", headers=auditor).status_code == 403
        assert http.get(f"{q}/v1/usage", headers=auditor).status_code == 403  # an org's auditor: not every org
        bad = http.get(f"{q}/v1/orgs/{org}/usage", params={"minutes": 0})
        assert bad.status_code == 422 and bad.json()["field"] == "minutes"
        assert http.get(f"{q}/v1/usage", params={"minutes": "lots"}).json()["field"] == "minutes"


def test_the_override_counts_route_answers_what_the_projector_counted(usage_stack: Stack) -> None:
    stack = usage_stack
    orgs = [f"oc-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    with httpx.Client(timeout=10, headers=stack.headers) as http:
        for org in orgs:
            body = {"enabled": True, "reason": REASON}
            r = http.put(f"{stack.command_url}/v1/orgs/{org}/flags/{OTHER_FLAG}", json=body)
            assert r.status_code == 201, r.text
        r = http.put(f"{stack.command_url}/v1/orgs/{orgs[0]}/users/u9/flags/{OTHER_FLAG}",
                     json={"enabled": False, "reason": REASON})
        assert r.status_code == 201, r.text
        r = http.request("DELETE", f"{stack.command_url}/v1/orgs/{orgs[2]}/flags/{OTHER_FLAG}", json={"reason": REASON})
        assert r.status_code == 201, r.text

        def counts() -> dict[str, Any]:
            return {f["flag_key"]: f for f in http.get(f"{stack.query_url}/v1/reports/override-counts").json()["flags"]}

        # The three orgs' events travel on different partitions: wait for the final counts, not for
        # a total that an intermediate state (three org overrides, before the user's and the clear) also has.
        expected = {"flag_key": OTHER_FLAG, "orgs": 2, "overrides": 3}
        found = _wait_for(counts, lambda c: c.get(OTHER_FLAG) == expected)
        assert found[OTHER_FLAG] == expected
        org_admin = _key(stack, "org-admin", orgs[0])
        assert http.get(f"{stack.query_url}/v1/reports/override-counts", headers=org_admin).status_code == 403


async def test_the_redis_adapter_adds_counts_up_and_lets_them_expire(settings: Settings) -> None:
    redis = Redis.from_url(settings.redis_url, **settings.redis_options())
    prefix = f"usage-test-{uuid.uuid4().hex[:8]}"
    store = RedisUsage(redis, prefix)
    try:
        now = window(time.time(), 2)
        await store.add({(now[0], "acme", "a.one"): 2, (now[1], "acme", "a.one"): 1, (now[1], "globex", "a.one"): 4})
        await store.add({(now[1], "acme", "a.one"): 5, (now[1], "acme", "b.two"): 1})
        assert await store.read("acme", now) == {now[0]: {"a.one": 2}, now[1]: {"a.one": 6, "b.two": 1}}
        assert await store.read(None, now) == {now[0]: {"a.one": 2}, now[1]: {"a.one": 10, "b.two": 1}}
        assert await store.read("initech", now) == {}
        ttl = await redis.ttl(store.key(now[1], "acme"))
        assert RETENTION_MINUTES * 60 - 5 <= ttl <= RETENTION_MINUTES * 60
        short = RedisUsage(redis, prefix + "-short", retention_minutes=0)
        await short.add({(now[1], "acme", "a.one"): 1})
        assert await short.read("acme", now) == {}  # a zero TTL: gone at once
    finally:
        await redis.aclose()
