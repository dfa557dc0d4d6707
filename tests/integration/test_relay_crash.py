"""The command service killed (SIGKILL) again and again under writes: every accepted change in the log exactly once.

A kill can fall between Kafka's acknowledgement of a record and the relay's mark in the outbox; the
restarted relay, with a new producer id, must find such records at the topic's end rather than send
them again (services/command/published_log.py). Writes in flight at a kill may fail or succeed; the
event store says which were accepted, and the topic must hold exactly those, each once, in order.
"""

from __future__ import annotations

import asyncio
import random
import threading
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
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

FLAG = "crash.relay"
KILLS = 5


@pytest.fixture
def command(make_settings: Callable[[], Settings], tmp_path: Path) -> Iterator[ServiceProcess]:
    settings = make_settings()
    process = ServiceProcess("command", settings, tmp_path, f"http://127.0.0.1:{settings.command_port}/healthz")
    process.start()
    try:
        yield process
    finally:
        process.stop()


async def _stored(settings: Settings) -> list[tuple[str, int, str]]:
    conn = await asyncpg.connect(settings.pg_admin_url.rsplit("/", 1)[0] + f"/{settings.pg_database}")
    try:
        rows = await conn.fetch("SELECT stream, version, event_id::text FROM event_store ORDER BY sequence")
        unpublished = await conn.fetchval("SELECT count(*) FROM event_store WHERE published_at IS NULL")
    finally:
        await conn.close()
    assert unpublished == 0
    return [(r["stream"], r["version"], r["event_id"]) for r in rows]


def _writer(url: str, headers: dict[str, str], stop: threading.Event) -> None:
    """Org overrides as fast as the service answers; refused connections (the service is down) retried."""
    i = 0
    with httpx.Client(timeout=5, headers=headers) as http:
        while not stop.is_set():
            i += 1
            try:
                http.put(f"{url}/v1/orgs/org-{i % 7}/flags/{FLAG}", json={"enabled": i % 2 == 0, "reason": "crash"})
            except httpx.HTTPError:
                time.sleep(0.05)


def test_every_accepted_change_is_in_the_log_once_across_relay_kills(command: ServiceProcess) -> None:
    settings = command.settings
    url = f"http://127.0.0.1:{settings.command_port}"
    headers = admin_headers(settings)
    assert httpx.post(f"{url}/v1/flags", json={"key": FLAG, "group": "crash", "reason": "t"}, headers=headers,
                      timeout=10).status_code == 201
    stop = threading.Event()
    writers = [threading.Thread(target=_writer, args=(url, headers, stop)) for _ in range(4)]
    for writer in writers:
        writer.start()
    rng = random.Random(7)
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.5, 1.5))  # writes and relaying under way
            command.kill()
            command.start()
    finally:
        time.sleep(1.0)
        stop.set()
        for writer in writers:
            writer.join()
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/readyz", timeout=5).json().get("outbox_lag") != 0:
        assert time.monotonic() < deadline, "the last relay did not drain the outbox"
        time.sleep(0.2)

    stored = asyncio.run(_stored(settings))
    assert len(stored) > 50, "the writers got changes in between the kills"
    records = asyncio.run(consume_all(settings, len(stored)))
    logged = [decode(r.value) for r in records]
    assert sorted(str(e.event_id) for e in logged) == sorted(event_id for _, _, event_id in stored)  # each once
    by_stream: dict[str, list[int]] = {}
    for envelope in logged:  # consume_all reads partition by partition: a stream's versions in order
        by_stream.setdefault(envelope.stream, []).append(envelope.version)
    assert all(versions == list(range(1, len(versions) + 1)) for versions in by_stream.values())
