"""`flagctl audit verify` on a real log: produced by the command service, copied, corrupted each way, caught.

The log is made through the real command service and relay. Each test copies
it, record by record into the same partitions, to a scratch topic, corrupts the
copy one way, and runs the CLI on the copy (`--topic`) as a subprocess.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from events import hash_of
from flagctl.logreader import read_topic
from flaglog.connection import client_options
from flaglog.verification import LogRecord
from services.infra.settings import Settings
from tests.support.auth import admin_headers
from tests.support.processes import REPO, ServiceProcess, settings_env
from tests.support.tenants import database_url

pytestmark = pytest.mark.integration

Corruption = Callable[[list[LogRecord]], list[LogRecord]]
_COPIES: list[str] = []  # scratch topics made by this module, deleted at its end


@pytest.fixture(scope="module")
def log(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A topic holding a real log: definitions, system defaults and two orgs' overrides, all relayed."""
    settings = make_settings()
    health = f"http://127.0.0.1:{settings.command_port}/healthz"
    service = ServiceProcess("command", settings, tmp_path_factory.mktemp("audit-verify"), health).start()
    try:
        base = f"http://127.0.0.1:{settings.command_port}"
        with httpx.Client(base_url=base, timeout=10, headers=admin_headers(settings)) as http:
            for n in range(2):
                flag = f"verify.flag{n}"
                _write(http, "POST", "/v1/flags", key=flag, group="verify")
                _write(http, "PUT", f"/v1/flags/{flag}/system", enabled=False)
                for org in ("acme", "globex"):
                    for pct in (10, 20, 30, 40):
                        _write(http, "PUT", f"/v1/orgs/{org}/flags/{flag}", enabled=True, rollout_percentage=pct)
                    _write(http, "PUT", f"/v1/orgs/{org}/platforms/meta/flags/{flag}", enabled=False)
        asyncio.run(_published(settings))
        yield settings
    finally:
        service.stop()
        asyncio.run(_delete(settings, _COPIES))


def _write(http: httpx.Client, method: str, path: str, **fields: object) -> None:
    response = http.request(method, path, json={"reason": "verify test", **fields})
    assert response.status_code == 201, response.text


async def _published(settings: Settings, timeout: float = 30.0) -> None:
    conn = await asyncpg.connect(database_url(settings))
    try:
        deadline = time.monotonic() + timeout
        while await conn.fetchval("SELECT count(*) FROM event_store WHERE published_at IS NULL"):
            assert time.monotonic() < deadline, "the relay did not publish everything"
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def _records(settings: Settings, topic: str) -> list[LogRecord]:
    found: list[LogRecord] = []
    await read_topic(settings, topic, found.append)
    return found


async def _copy(settings: Settings, records: list[LogRecord]) -> str:
    """A scratch topic with the same partitions, holding `records` in their given order per partition."""
    topic = f"{settings.topic}.copy-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, settings.topic_partitions, 1)])
        _COPIES.append(topic)
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**client_options(settings), enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for r in records:
            await producer.send_and_wait(topic, r.value, key=r.key, partition=r.partition, headers=list(r.headers))
    finally:
        await producer.stop()
    return topic


async def _delete(settings: Settings, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()


def _verify(settings: Settings, topic: str, *options: str) -> subprocess.CompletedProcess[str]:
    key = admin_headers(settings)["Authorization"].removeprefix("Bearer ")
    env = {**os.environ, **settings_env(settings), "FLAGS_API_KEY": key}
    url = f"http://127.0.0.1:{settings.command_port}"
    return subprocess.run(
        [sys.executable, "-m", "flagctl.main", "--command-url", url, "audit", "verify", "--topic", topic, *options],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def _fields(record: LogRecord) -> dict:
    return json.loads(record.value or b"")


def _middle_of_a_stream(records: list[LogRecord]) -> tuple[int, str, int]:
    """(index, stream, version) of an event with a successor in its stream: org acme's v2 of flag0."""
    stream = "org/acme/flag/verify.flag0"
    index = next(i for i, r in enumerate(records) if (f := _fields(r))["stream"] == stream and f["version"] == 2)
    return index, stream, 2


def _edited(record: LogRecord, **changes: object) -> LogRecord:
    fields = {**_fields(record), **changes}
    return replace(record, value=json.dumps(fields).encode())


def alter(records: list[LogRecord]) -> list[LogRecord]:
    i, _, _ = _middle_of_a_stream(records)
    fields = _fields(records[i])
    return [*records[:i], _edited(records[i], new={**fields["new"], "rollout_percentage": 99}), *records[i + 1:]]


def drop(records: list[LogRecord]) -> list[LogRecord]:
    i, _, _ = _middle_of_a_stream(records)
    return records[:i] + records[i + 1:]


def duplicate(records: list[LogRecord]) -> list[LogRecord]:
    i, _, _ = _middle_of_a_stream(records)
    return records[: i + 1] + records[i:]


def reorder(records: list[LogRecord]) -> list[LogRecord]:
    i, stream, _ = _middle_of_a_stream(records)
    j = next(k for k, r in enumerate(records) if (f := _fields(r))["stream"] == stream and f["version"] == 3)
    swapped = list(records)
    swapped[i], swapped[j] = records[j], records[i]
    return swapped


def forge(records: list[LogRecord]) -> list[LogRecord]:
    """Rewrite an event's reason and seal it again: its own hash checks, its successor's link does not."""
    i, _, _ = _middle_of_a_stream(records)
    forged = _fields(records[i]) | {"reason": "approved by the board"}
    forged["hash"] = hash_of(forged)
    return [*records[:i], replace(records[i], value=json.dumps(forged).encode()), *records[i + 1:]]


def test_the_real_log_verifies(log: Settings) -> None:
    records = asyncio.run(_records(log, log.topic))
    streams = {_fields(r)["stream"] for r in records}
    result = _verify(log, log.topic)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(records)} events in {len(streams)} streams verified" in result.stdout
    assert "reading the log:" in result.stderr
    document = json.loads(_verify(log, log.topic, "--json").stdout)
    assert (document["ok"], document["events"], document["streams"]) == (True, len(records), len(streams))
    assert (document["partitions"], document["truncated"], document["findings"]) == (log.topic_partitions, {}, [])


def test_a_faithful_copy_verifies(log: Settings) -> None:
    records = asyncio.run(_records(log, log.topic))
    copy = asyncio.run(_copy(log, records))
    result = _verify(log, copy)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("corrupt", "kind", "version"),
    [(alter, "altered", 2), (drop, "removed", 3), (duplicate, "duplicate", 2), (reorder, "reordered", 3),
     (forge, "chain_broken", 3)],
    ids=["altered", "removed", "duplicated", "reordered", "forged and re-sealed"],
)
def test_each_corruption_is_caught(log: Settings, corrupt: Corruption, kind: str, version: int) -> None:
    records = asyncio.run(_records(log, log.topic))
    copy = asyncio.run(_copy(log, corrupt(records)))
    result = _verify(log, copy)
    assert result.returncode == 3, result.stdout + result.stderr
    [finding] = [line for line in result.stdout.splitlines() if line.startswith("org/")]
    assert finding.startswith(f"org/acme/flag/verify.flag0: {kind} at v{version}"), result.stdout
    assert "TAMPERED: 1 of" in result.stdout


def drop_last(records: list[LogRecord]) -> list[LogRecord]:
    i = max(k for k, r in enumerate(records) if _fields(r)["stream"] == "org/acme/flag/verify.flag0")
    return records[:i] + records[i + 1:]


def reseal_last(records: list[LogRecord]) -> list[LogRecord]:
    i = max(k for k, r in enumerate(records) if _fields(r)["stream"] == "org/acme/flag/verify.flag0")
    forged = _fields(records[i]) | {"reason": "approved by the board"}
    forged["hash"] = hash_of(forged)
    return [*records[:i], replace(records[i], value=json.dumps(forged).encode()), *records[i + 1:]]


@pytest.mark.parametrize(
    ("corrupt", "kind"), [(drop_last, "removed"), (reseal_last, "differs_from_store")],
    ids=["last event removed", "last event re-sealed"],
)
def test_the_end_of_a_stream_needs_the_store(log: Settings, corrupt: Corruption, kind: str) -> None:
    records = asyncio.run(_records(log, log.topic))
    copy = asyncio.run(_copy(log, corrupt(records)))
    alone = _verify(log, copy)
    assert alone.returncode == 0, alone.stdout + alone.stderr  # what no hash chain can see
    result = _verify(log, copy, "--against-store")
    assert result.returncode == 3, result.stdout + result.stderr
    [finding] = [line for line in result.stdout.splitlines() if line.startswith("org/")]
    assert finding.startswith(f"org/acme/flag/verify.flag0: {kind} at v5"), result.stdout
    assert _verify(log, log.topic, "--against-store").returncode == 0


def test_a_missing_topic_is_an_error_not_a_verdict(log: Settings) -> None:
    result = _verify(log, f"no-such-topic-{uuid.uuid4().hex[:6]}")
    assert result.returncode == 1 and "no topic" in result.stderr


def test_the_reader_reads_every_partition_from_offset_zero(log: Settings) -> None:
    records = asyncio.run(_records(log, log.topic))
    by_partition: dict[int, list[int]] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(r.offset)
    assert all(offsets == list(range(len(offsets))) for offsets in by_partition.values())
    assert len(records) == asyncio.run(_stored(log)) == 1 + 2 * (2 + 2 * 6)  # and the admin key's creation


async def _stored(settings: Settings) -> int:
    conn = await asyncpg.connect(database_url(settings))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM event_store"))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def stray_log(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A log of its own with one event and, after it, a record this product never wrote."""
    settings = make_settings()
    health = f"http://127.0.0.1:{settings.command_port}/healthz"
    service = ServiceProcess("command", settings, tmp_path_factory.mktemp("foreign"), health).start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{settings.command_port}", timeout=10,
                          headers=admin_headers(settings)) as http:
            _write(http, "POST", "/v1/flags", key="verify.foreign", group="verify")
        asyncio.run(_published(settings))
        asyncio.run(_produce(settings, b'{"order": 17, "status": "paid"}'))
        yield settings
    finally:
        service.stop()


async def _produce(settings: Settings, value: bytes) -> None:
    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic, value, key=b"orders", partition=0)
    finally:
        await producer.stop()


def _flagctl(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    key = admin_headers(settings)["Authorization"].removeprefix("Bearer ")
    env = {**os.environ, **settings_env(settings), "FLAGS_API_KEY": key}
    url = f"http://127.0.0.1:{settings.command_port}"
    return subprocess.run([sys.executable, "-m", "flagctl.main", "--command-url", url, *argv],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_a_foreign_record_fails_the_log_until_a_system_admin_acknowledges_it(stray_log: Settings) -> None:
    settings = stray_log
    failing = _verify(settings, settings.topic)
    assert failing.returncode == 3 and "foreign" in failing.stdout, failing.stdout + failing.stderr
    [stray] = json.loads(_verify(settings, settings.topic, "--json").stdout)["unattributed"]
    digest = stray["detail"].rsplit("sha256 ", 1)[1]
    assert digest == hashlib.sha256(b'{"order": 17, "status": "paid"}').hexdigest()
    where = ["--partition", str(stray["partition"]), "--offset", str(stray["offset"])]

    base = f"http://127.0.0.1:{settings.command_port}/v1"
    with httpx.Client(timeout=10, headers=admin_headers(settings)) as http:
        bad = http.post(f"{base}/audit/foreign-records",
                        json={"partition": 0, "offset": 0, "sha256": "not a hash", "reason": "r"})
        assert bad.status_code == 422 and "sha256" in bad.text, bad.text
        made = http.post(f"{base}/keys", json={"name": "acme admin", "role": "org-admin", "org_id": "acme",
                                                "reason": "foreign test"})
        assert made.status_code == 201, made.text
        org_admin = {"Authorization": f"Bearer {made.json()['key']}"}
        refused = http.post(f"{base}/audit/foreign-records", headers=org_admin,
                            json={"partition": stray["partition"], "offset": stray["offset"], "sha256": digest,
                                  "reason": "not an org's to say"})
        assert refused.status_code == 403, refused.text

    done = _flagctl(settings, "audit", "acknowledge", *where, "--sha256", digest, "--reason", "a load test's order")
    assert done.returncode == 0 and "acknowledged partition" in done.stdout, done.stdout + done.stderr
    again = _flagctl(settings, "audit", "acknowledge", *where, "--sha256", digest, "--reason", "twice")
    assert again.returncode == 1 and "409" in again.stderr, again.stdout + again.stderr

    asyncio.run(_published(settings))  # the acknowledgement is on the log now, after the record it names
    passing = _verify(settings, settings.topic)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "foreign (warning): acknowledged by" in passing.stdout and "a load test's order" in passing.stdout
