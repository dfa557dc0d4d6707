"""The query service over HTTP, on data the real projector put in the real Postgres."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from events import Envelope, Level, Platform
from flagcore import bucket, evaluate, fold
from services.infra.settings import Settings
from tests.support.auth import admin_headers
from tests.support.eventlog import EventLog
from tests.support.processes import ServiceProcess, free_port
from tests.support.projection import publish_and_wait

pytestmark = pytest.mark.integration

KEY = "query.itest.enabled"
ROLLOUT_KEY = "query.rollout.enabled"
PLATFORM_KEYS = {p: f"platform.{p.value}.enabled" for p in Platform}


def query_process(settings: Settings, log_dir: Path, name: str = "query") -> ServiceProcess:
    process = ServiceProcess("query", settings, log_dir, f"http://127.0.0.1:{settings.query_port}/healthz")
    process.log_path = log_dir / f"{name}.log"
    return process.start()


@pytest.fixture(scope="module")
def services(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A projector and a query service on the shared database; yields their log directory."""
    log_dir = tmp_path_factory.mktemp("query-logs")
    projector = ServiceProcess("projector", settings, log_dir).start()
    query = query_process(settings, log_dir)
    yield log_dir
    query.stop()
    projector.stop()


@dataclass
class World:
    log: EventLog
    by_name: dict[str, Envelope]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(settings: Settings, services: Path) -> World:
    log = EventLog(start_sequence=50_000)
    named: dict[str, Envelope] = {}
    log.define(KEY, group="query")
    named["system"] = log.system(KEY, False)
    named["org"] = log.org("q-acme", KEY, True)
    named["platform"] = log.platform("q-acme", "tiktok", KEY, False)
    named["user"] = log.user("q-acme", "u-1", KEY, True)
    log.define(ROLLOUT_KEY, group="query")
    named["rollout"] = log.rollout(ROLLOUT_KEY, 37, level=Level.ORG, org="q-roll")
    for key in PLATFORM_KEYS.values():
        log.define(key, group="platform")
    log.system(PLATFORM_KEYS[Platform.META], True)
    log.platform("q-plat", "google", PLATFORM_KEYS[Platform.GOOGLE], True)
    log.platform("q-plat", "meta", PLATFORM_KEYS[Platform.META], False)
    log.user("q-plat", "vip", PLATFORM_KEYS[Platform.TIKTOK], True)
    await publish_and_wait(settings, log)
    return World(log, named)


@pytest_asyncio.fixture(loop_scope="session")
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.query_port}", timeout=10, headers=admin_headers(settings)
    ) as client:
        yield client


async def evaluation(http: httpx.AsyncClient, org: str, key: str = KEY, **params: str) -> dict[str, Any]:
    response = await http.get(f"/v1/orgs/{org}/flags/{key}", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def eventually(
    http: httpx.AsyncClient, org: str, key: str, event: Envelope, *, timeout: float = 5
) -> dict[str, Any]:
    """The answer once it names `event` (the invalidation follows the projector's commit)."""
    deadline = time.monotonic() + timeout
    while True:
        response = await http.get(f"/v1/orgs/{org}/flags/{key}")
        if response.status_code == 200 and response.json()["event"]["id"] == str(event.event_id):
            return response.json()  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"still {response.status_code} {response.text} after {timeout}s")
        await asyncio.sleep(0.02)


async def test_user_beats_platform_beats_org_beats_system(http: httpx.AsyncClient, world: World) -> None:
    cases = [
        ({"platform": "tiktok", "user": "u-1"}, "q-acme", "user", True),
        ({"platform": "tiktok", "user": "u-2"}, "q-acme", "platform", False),
        ({"platform": "meta", "user": "u-2"}, "q-acme", "org", True),
        ({}, "q-acme", "org", True),
        ({"platform": "tiktok", "user": "u-1"}, "q-other", "system", False),
    ]
    for params, org, level, value in cases:
        answer = await evaluation(http, org, **params)
        assert (answer["level"], answer["value"]) == (level, value), (org, params, answer)
        setter = world.by_name[level]
        assert answer["event"]["id"] == str(setter.event_id)
        assert answer["event"]["version"] == setter.version
        assert answer["event"]["stream"] == setter.stream
        assert answer["reason"] == ("STATIC" if level == "system" else "TARGETING_MATCH")


async def test_rollout_buckets_are_flagcore_buckets(http: httpx.AsyncClient, world: World) -> None:
    state = fold(world.log.events)
    users = [f"user-{i}" for i in range(40)]
    answers = await asyncio.gather(*(evaluation(http, "q-roll", ROLLOUT_KEY, user=u) for u in users))
    for user, answer in zip(users, answers, strict=True):
        assert answer["rollout"] == {"percentage": 37, "bucket": bucket(ROLLOUT_KEY, user)}
        assert answer["value"] is (bucket(ROLLOUT_KEY, user) <= 37)
        local = evaluate(state.catalog, state.tenant("q-roll"), ROLLOUT_KEY, user_id=user)
        assert (answer["value"], answer["reason"], answer["level"]) == (local.value, "SPLIT", "org")
    assert {a["value"] for a in answers} == {True, False}  # 40 users land on both sides of 37%
    by_org = await evaluation(http, "q-roll", ROLLOUT_KEY)
    assert by_org["rollout"]["bucket"] == bucket(ROLLOUT_KEY, "q-roll")


async def test_enabled_platforms(http: httpx.AsyncClient, world: World) -> None:
    async def enabled(org: str, **params: str) -> list[str]:
        response = await http.get(f"/v1/orgs/{org}/platforms", params=params)
        assert response.status_code == 200
        assert response.json()["org_id"] == org
        return response.json()["enabled"]  # type: ignore[no-any-return]

    assert await enabled("q-plat") == ["google"]
    assert await enabled("q-plat", user="vip") == ["google", "tiktok"]
    assert await enabled("q-nobody") == ["meta"]


async def test_every_flag_and_the_catalogue(http: httpx.AsyncClient, world: World) -> None:
    listing = (await http.get("/v1/orgs/q-acme/flags", params={"platform": "tiktok"})).json()
    by_key = {f["flag_key"]: f for f in listing["flags"]}
    assert by_key[KEY]["level"] == "platform" and by_key[ROLLOUT_KEY]["reason"] == "DEFAULT"
    catalogue = {f["key"]: f for f in (await http.get("/v1/flags")).json()["flags"]}
    assert catalogue[KEY]["system"]["enabled"] is False
    assert catalogue[KEY]["system"]["version"] == world.by_name["system"].version
    assert catalogue[ROLLOUT_KEY]["system"] is None


async def test_a_new_event_replaces_the_cached_answer(
    settings: Settings, http: httpx.AsyncClient, world: World
) -> None:
    log = EventLog(start_sequence=60_000)
    log.define("query.fresh.enabled", group="query")
    first = log.org("q-fresh", "query.fresh.enabled", True)
    await publish_and_wait(settings, log)
    assert (await eventually(http, "q-fresh", "query.fresh.enabled", first))["value"] is True
    for _ in range(3):  # now it is cached in process and in Redis
        assert (await evaluation(http, "q-fresh", "query.fresh.enabled"))["value"] is True

    start = len(log.events)
    second = log.org("q-fresh", "query.fresh.enabled", False)
    await publish_and_wait(settings, log, since=start)
    answer = await eventually(http, "q-fresh", "query.fresh.enabled", second)
    assert (answer["value"], answer["event"]["version"]) == (False, 2)


async def test_with_redis_unreachable_answers_come_from_postgres(
    settings: Settings, http: httpx.AsyncClient, world: World, services: Path
) -> None:
    no_redis = settings.model_copy(
        update={"query_port": free_port(), "redis_url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    process = query_process(no_redis, services, "query-no-redis")
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{no_redis.query_port}", timeout=10, headers=admin_headers(settings)
        ) as degraded:
            for params in ({"platform": "tiktok", "user": "u-1"}, {"platform": "tiktok"}, {}, {"user": "u-9"}):
                for _ in range(2):  # the second time must not come from a stale in-process copy either
                    assert await evaluation(degraded, "q-acme", **params) == await evaluation(http, "q-acme", **params)
            ready = await degraded.get("/readyz")
            assert ready.status_code == 200 and ready.json() == {"status": "ready", "postgres": True, "redis": False}

            log = EventLog(start_sequence=70_000)
            log.define("query.noredis.enabled", group="query")
            log.org("q-noredis", "query.noredis.enabled", True)
            await publish_and_wait(settings, log)
            assert (await evaluation(degraded, "q-noredis", "query.noredis.enabled"))["value"] is True
            start = len(log.events)
            log.org("q-noredis", "query.noredis.enabled", False)
            await publish_and_wait(settings, log, since=start)
            # No invalidation can reach this process, so it must not have cached the first answer.
            assert (await evaluation(degraded, "q-noredis", "query.noredis.enabled"))["value"] is False
    finally:
        process.stop()
    assert "Traceback" not in process.tail(200)
