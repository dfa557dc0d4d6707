"""A broker that stops answering (SIGSTOP) under writes, on a Kafka of the test's own: seen, survived, exactly once.

The command service must keep accepting changes (the outbox holds them), say within seconds that Kafka
is down (`/readyz`'s relay state), log it once rather than per retry, and, once the broker answers
again, publish every change, each once: the relay keeps the producer whose sends are unanswered rather
than send them again under a new producer id, and marks what the topic already holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from events import decode
from services.infra.settings import Settings
from tests.support.auth import admin_headers
from tests.support.kafka import consume_all
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

FLAG = "outage.kafka"


@pytest.fixture(scope="module")
def own_kafka() -> Iterator[PrivateStack]:
    with private_stack() as stack:
        yield stack


@pytest.fixture
def command(make_settings: Callable[[], Settings], own_kafka: PrivateStack, tmp_path: Path
            ) -> Iterator[ServiceProcess]:
    settings = make_settings().model_copy(update={"kafka_bootstrap": own_kafka.kafka_bootstrap})
    process = ServiceProcess("command", settings, tmp_path, f"http://127.0.0.1:{settings.command_port}/healthz")
    process.start()
    try:
        yield process
    finally:
        process.stop()


async def _events_stored(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.pg_admin_url.rsplit("/", 1)[0] + f"/{settings.pg_database}")
    try:
        return int(await conn.fetchval("SELECT count(*) FROM event_store"))
    finally:
        await conn.close()


def _relay(url: str) -> tuple[int, str | None, int | None]:
    answer = httpx.get(f"{url}/readyz", timeout=5)
    body = answer.json()
    return answer.status_code, (body.get("relay") or {}).get("kafka"), body.get("outbox_lag")


def test_a_paused_broker_is_seen_within_seconds_and_every_change_reaches_it_once(
    command: ServiceProcess, own_kafka: PrivateStack
) -> None:
    settings = command.settings
    url = f"http://127.0.0.1:{settings.command_port}"
    headers = admin_headers(settings)
    with httpx.Client(timeout=15, headers=headers) as http:
        assert http.post(f"{url}/v1/flags", json={"key": FLAG, "group": "o", "reason": "t"}).status_code == 201
        deadline = time.monotonic() + 30
        while _relay(url)[1:] != ("ok", 0):
            assert time.monotonic() < deadline, _relay(url)
            time.sleep(0.1)
        log_before = len(command.log_path.read_text().splitlines())

        own_kafka.pause_kafka()
        paused, seen_down, writes = time.monotonic(), None, 1
        try:
            while time.monotonic() - paused < 15:
                wrote = http.put(f"{url}/v1/orgs/acme/flags/{FLAG}",
                                 json={"enabled": writes % 2 == 0, "reason": "during the outage"})
                assert wrote.status_code == 201, wrote.text  # accepted: the outbox holds it
                writes += 1
                status, kafka, _ = _relay(url)
                assert status == 200  # ready to accept changes, with Kafka reported down
                if seen_down is None and kafka == "down":
                    seen_down = time.monotonic() - paused
                time.sleep(0.3)
        finally:
            own_kafka.resume_kafka()
        assert seen_down is not None and seen_down < 12, seen_down  # a 5 s send time-out, a 2 s idle probe

        deadline = time.monotonic() + 60
        while _relay(url)[1:] != ("ok", 0):
            assert time.monotonic() < deadline, _relay(url)
            time.sleep(0.2)

    accepted = asyncio.run(_events_stored(settings))  # the writes, the flag, and the admin key's creation
    assert accepted == writes + 1
    records = asyncio.run(consume_all(settings, accepted))
    ids = [decode(r.value).event_id for r in records]
    assert len(ids) == accepted and len(set(ids)) == accepted  # every change in the log, each once
    outage_log = command.log_path.read_text().splitlines()[log_before:]
    assert sum("Kafka unavailable" in line for line in outage_log) == 1
    noise = [line for line in outage_log if " accepted " not in line]  # not the one line each change makes
    assert len(noise) < 40, "\n".join(noise)  # said once, not per retry
