"""The projector process against the real Kafka, PostgreSQL and Redis.

Events are sealed and hash-chained by `EventLog` (the command side in miniature)
and produced straight to the topic; the projector runs as `python -m
services.projector` and is killed with SIGKILL where a test needs a crash.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from redis.asyncio import Redis

from events import Record
from flagcore import fold
from services.infra.cache_keys import CacheKeys
from services.infra.settings import Role, Settings
from tests.support.eventlog import EventLog, random_log
from tests.support.kafka import produce, read_topic
from tests.support.processes import ServiceProcess
from tests.support.projection import applied_offsets, publish_and_wait, tenant_rows, wait_for_offsets

pytestmark = pytest.mark.integration


@asynccontextmanager
async def running_projector(settings: Settings, log_dir: Path) -> AsyncIterator[ServiceProcess]:
    process = ServiceProcess("projector", settings, log_dir).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def fresh_settings(make_settings: Callable[[], Settings]) -> Settings:
    """A database and topics of the test's own (made outside the event loop)."""
    return make_settings()


# --- (a) exactly once across a crash --------------------------------------------------------------


async def read_models(settings: Settings, orgs: Sequence[str]) -> dict[str, Any]:
    """Every read-model row, tenant by tenant (RLS), keyed for comparison with the fold."""
    flags = await tenant_rows(settings, Role.PROJECTOR, None, "SELECT * FROM flags")
    system = await tenant_rows(settings, Role.PROJECTOR, None, "SELECT * FROM system_defaults")
    overrides: dict[tuple[str, ...], tuple[Any, ...]] = {}
    heads: dict[str, tuple[int, str]] = {}
    history: list[str] = []
    for org in [None, *orgs]:
        if org is not None:
            for r in await tenant_rows(settings, Role.PROJECTOR, org, "SELECT * FROM overrides"):
                key = (r["org_id"], r["level"], r["platform"], r["user_id"], r["flag_key"])
                overrides[key] = (r["enabled"], r["rollout_percentage"], r["version"], str(r["event_id"]))
        where = "org_id IS NULL" if org is None else "org_id = $1"
        args = () if org is None else (org,)
        rows = await tenant_rows(settings, Role.PROJECTOR, org, f"SELECT * FROM stream_heads WHERE {where}", *args)
        heads.update((r["stream"], (r["version"], r["hash"])) for r in rows)
        rows = await tenant_rows(
            settings, Role.PROJECTOR, org, f"SELECT event_id FROM flag_history WHERE {where}", *args
        )
        history.extend(str(r["event_id"]) for r in rows)
    return {
        "flags": {r["flag_key"]: (r["kind"], r["archived"], r["version"], str(r["event_id"])) for r in flags},
        "system": {
            r["flag_key"]: (r["enabled"], r["rollout_percentage"], r["version"], str(r["event_id"])) for r in system
        },
        "overrides": overrides,
        "heads": heads,
        "history": history,
    }


def expected_models(log: EventLog) -> dict[str, Any]:
    """The same shape, from `flagcore.fold` of the whole log."""
    state = fold(log.events)
    overrides: dict[tuple[str, ...], tuple[Any, ...]] = {}

    def row(s: Any) -> tuple[Any, ...]:
        return (s.enabled, s.rollout_percentage, s.source.version, s.source.event_id)

    for org, rules in state.tenants.items():
        for key, s in rules.org.items():
            overrides[(org, "org", "", "", key)] = row(s)
        for (platform, key), s in rules.platform.items():
            overrides[(org, "platform", platform, "", key)] = row(s)
        for (user, key), s in rules.user.items():
            overrides[(org, "user", "", user, key)] = row(s)
    return {
        "flags": {
            k: (d.kind.value, d.archived, d.source.version, d.source.event_id)
            for k, d in state.catalog.definitions.items()
        },
        "system": {k: row(s) for k, s in state.catalog.system.items()},
        "overrides": overrides,
        "heads": {s: (h.version, h.hash) for s, h in state.heads.items()},
        "history": sorted(str(e.event_id) for e in log.events),
    }


@pytest.mark.parametrize("instance_id", [None, "crash-projector-1"], ids=["dynamic", "static-membership"])
async def test_exactly_once_across_a_sigkill_and_republished_duplicates(
    fresh_settings: Settings, log_dir: Path, instance_id: str | None
) -> None:
    """Static membership (FLAGS_PROJECTOR_INSTANCE_ID, as scripts/services runs it) hands the killed
    instance's partitions straight to its restart: the same exactly-once either way."""
    settings = fresh_settings.model_copy(update={"projector_instance_id": instance_id})
    orgs = [f"crash-org-{i}" for i in range(40)]
    log = random_log(3000, orgs=orgs, flags=12, users=8, seed=11)
    records = log.records()
    await produce(settings, records[:1000])

    first = ServiceProcess("projector", settings, log_dir).start()
    try:
        await wait_for_offsets(settings, 600)
        # Keep the topic flowing while the projector works, and kill it in the middle of that.
        for start in range(1000, 3000, 250):
            await produce(settings, records[start : start + 250])
            if start == 1750:
                first.kill()
        # The relay's at-least-once: 300 events published a second time.
        await produce(settings, records[500:800])
        consumed_at_crash = await applied_offsets(settings)
        assert 0 < consumed_at_crash < 3300, consumed_at_crash
    finally:
        first.kill()

    async with running_projector(settings, log_dir) as second:
        await wait_for_offsets(settings, 3300)
        models = await read_models(settings, orgs)
        assert "positioned at {" in second.tail(200)

    expected = expected_models(log)
    for table in ("flags", "system", "heads"):
        assert models[table] == expected[table], table
    missing = expected["overrides"].keys() - models["overrides"].keys()
    extra = models["overrides"].keys() - expected["overrides"].keys()
    assert not missing and not extra, (sorted(missing)[:5], sorted(extra)[:5])
    for key, want in expected["overrides"].items():
        assert models["overrides"][key] == want, key
    assert len(models["history"]) == 3000
    assert sorted(models["history"]) == expected["history"]


# --- (b) dead letters ------------------------------------------------------------------------------


async def test_malformed_records_go_to_the_dead_letter_topic_and_the_rest_applies(
    fresh_settings: Settings, log_dir: Path
) -> None:
    settings = fresh_settings
    log = EventLog()
    log.define("dlq.flag")
    log.org("dlq-org", "dlq.flag", True)
    template = log.records()[1]
    second = log.org("dlq-org", "dlq.flag", False)
    third = log.user("dlq-org", "u1", "dlq.flag", True)
    good = log.records()
    tampered = json.loads(good[2].value)
    tampered["data"]["enabled"] = True  # the hash no longer matches
    bad = [
        Record(template.key, b"this is not json", template.headers),
        Record(template.key, json.dumps(tampered).encode(), good[2].headers),
        Record(template.key, good[2].value, [h for h in good[2].headers if h[0] != "ce_id"]),
        # not even text: FastStream's own parser would fail the whole batch on it
        Record(template.key, good[2].value, [(k, b"\xff\xfe" if k == "ce_id" else v) for k, v in good[2].headers]),
    ]
    await produce(settings, [good[0], good[1], *bad, good[2], good[3]])

    async with running_projector(settings, log_dir):
        await wait_for_offsets(settings, 8)
        letters = await read_topic(settings, settings.dead_letter_topic, 4)

    assert len(letters) == 4
    reasons = []
    partitions = set()
    for offset, (letter, original) in enumerate(zip(letters, bad, strict=True), start=1):
        headers = dict(letter.headers)
        assert letter.key == original.key and letter.value == original.value
        assert list(letter.headers[: len(original.headers)]) == list(original.headers)
        assert headers["dlq_topic"].decode() == settings.topic
        assert int(headers["dlq_offset"]) == offset  # after the org's first event, in order
        partitions.add(headers["dlq_partition"])
        reasons.append(headers["dlq_reason"].decode())
    assert len(partitions) == 1  # one key, one partition
    assert "not JSON" in reasons[0]
    assert "hash" in reasons[1]
    assert "ce_id" in reasons[2]
    assert "not UTF-8" in reasons[3]

    rows = await tenant_rows(settings, Role.PROJECTOR, "dlq-org", "SELECT * FROM overrides ORDER BY level")
    assert [(r["level"], r["user_id"], r["enabled"], r["version"]) for r in rows] == [
        ("org", "", False, 2),
        ("user", "u1", True, 1),
    ]
    assert str(rows[0]["event_id"]) == str(second.event_id) and str(rows[1]["event_id"]) == str(third.event_id)


# --- (c) row-level security and (d) invalidation, on the shared database -----------------------------


@pytest.fixture(scope="module")
def module_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("projector-logs")


@pytest.fixture(scope="module")
def projector(settings: Settings, module_log_dir: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess("projector", settings, module_log_dir).start()
    yield process
    process.stop()


async def test_rls_shows_a_tenant_only_its_own_rows(settings: Settings, projector: ServiceProcess) -> None:
    a, b = "rls-org-a", "rls-org-b"
    log = EventLog(start_sequence=10_000)
    log.define("rls.flag")
    log.org(a, "rls.flag", True)
    log.user(a, "ua", "rls.flag", True)
    log.platform(b, "meta", "rls.flag", False)
    log.org(b, "rls.flag", False)
    await publish_and_wait(settings, log)

    as_a = await tenant_rows(settings, Role.QUERY, a, "SELECT org_id, level FROM overrides")
    assert sorted((r["org_id"], r["level"]) for r in as_a) == [(a, "org"), (a, "user")]
    history_a = await tenant_rows(settings, Role.QUERY, a, "SELECT org_id, type FROM flag_history")
    assert {r["org_id"] for r in history_a} <= {a, None}
    assert sum(r["org_id"] == a for r in history_a) == 2

    for no_context in (None, ""):
        rows = await tenant_rows(settings, Role.QUERY, no_context, "SELECT * FROM overrides")
        assert rows == []
        history = await tenant_rows(settings, Role.QUERY, no_context, "SELECT org_id FROM flag_history")
        assert history and all(r["org_id"] is None for r in history)  # system rows only

    conn = await asyncpg.connect(settings.pg_dsn(Role.QUERY))
    try:  # outside any transaction, the setting is simply absent
        assert await conn.fetch("SELECT * FROM overrides WHERE org_id IN ($1, $2)", a, b) == []
        heads = await conn.fetch("SELECT org_id FROM stream_heads")  # granted for SDK bootstrap, under RLS
        assert heads and all(r["org_id"] is None for r in heads)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM stream_heads")
    finally:
        await conn.close()


async def test_a_projected_change_deletes_and_announces_exactly_its_documents(
    settings: Settings, projector: ServiceProcess
) -> None:
    org = "inval-org"
    keys = CacheKeys(settings.redis_prefix)
    redis = Redis.from_url(settings.redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.invalidation_channel)

    async def messages(count: int) -> list[dict[str, str]]:
        found: list[dict[str, str]] = []
        deadline = time.monotonic() + 15
        while len(found) < count and time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                found.append(orjson.loads(message["data"]))
        return sorted(found, key=lambda m: (len(m), sorted(m.items())))

    try:
        log = EventLog(start_sequence=20_000)
        log.define("inval.flag")
        log.org(org, "inval.flag", True)
        await publish_and_wait(settings, log)
        assert await messages(2) == [{"scope": "catalog"}, {"scope": "org", "org_id": org}]

        untouched = [keys.catalog, keys.user(org, "u2"), keys.org("other-org")]
        touched = [keys.org(org), keys.user(org, "u1")]
        for key in untouched + touched:
            await redis.set(key, b"{}", ex=60)
        start = len(log.events)
        log.platform(org, "google", "inval.flag", True)
        log.user(org, "u1", "inval.flag", False)
        await publish_and_wait(settings, log, since=start)

        assert await messages(2) == [
            {"scope": "org", "org_id": org},
            {"scope": "user", "org_id": org, "user_id": "u1"},
        ]
        for key in touched:  # deleted before the messages were published
            assert await redis.exists(key) == 0, key
        for key in untouched:
            assert await redis.exists(key) == 1, key
    finally:
        await pubsub.aclose()
        await redis.aclose()
