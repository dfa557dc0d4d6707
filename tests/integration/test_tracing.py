"""One change followed by its trace on the real stack: a command sent with a W3C `traceparent` to the command
service (a process, tracing on with the console exporter, JSON logs), through its outbox row and the relay, to
the Kafka record's headers, into the projector's batch span and its Redis invalidation (the projector's own
code, run in this process with OpenTelemetry's in-memory exporter, as tests/integration/test_override_counts.py
runs it)."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from events import decode
from events.cloudevents import CE_TRACEPARENT_HEADER, TRACEPARENT_HEADER
from services.infra.cache_keys import CacheKeys
from services.infra.settings import Settings
from services.observability import tracing
from services.projector.adapters import RedisInvalidator
from services.projector.projection import Projector
from services.projector.store import PostgresStore, create_projector_pool
from tests.support.auth import admin_headers
from tests.support.kafka import read_to_end
from tests.support.processes import ServiceProcess
from tests.support.projector_fakes import NoDeadLetters

pytestmark = pytest.mark.integration


@pytest.fixture
def command(
    make_settings: Callable[[], Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServiceProcess]:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "flagstream-command-under-test")
    settings = make_settings().model_copy(update={"log_format": "json"})
    health = f"http://127.0.0.1:{settings.command_port}/healthz"
    process = ServiceProcess("command", settings, tmp_path, health).start()
    yield process
    process.stop()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure("flagstream-projector-under-test", exporter=exporter)
    yield exporter
    tracing.shutdown()


async def record_of(settings: Settings, event_id: str, timeout: float = 20.0) -> tuple[Any, list[Any]]:
    """The topic's record of `event_id` once the relay published it, and every record up to it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        records = await read_to_end(settings)
        found = [r for r in records if decode(r.value).event_id == uuid.UUID(event_id)]
        if found:
            return found[0], records
        assert asyncio.get_running_loop().time() < deadline, f"{event_id} never reached the topic"
        await asyncio.sleep(0.2)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The service's JSON log lines (the console exporter's spans, printed over several lines, are not among them)."""
    lines = []
    for text in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict) and "message" in line:
            lines.append(line)
    return lines


async def test_one_change_is_one_trace_from_the_request_to_the_redis_invalidation(
    command: ServiceProcess, spans: InMemorySpanExporter
) -> None:
    settings = command.settings
    trace_id, caller_span = uuid.uuid4().hex, secrets.token_hex(8)
    traceparent = f"00-{trace_id}-{caller_span}-01"
    flag = f"tr{uuid.uuid4().hex[:8]}.enabled"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.command_port}", timeout=10) as client:
        headers = {**admin_headers(settings), "traceparent": traceparent}
        response = await client.post(
            "/v1/flags", json={"key": flag, "group": "tr", "reason": "traced"}, headers=headers
        )
    assert response.status_code == 201, response.text
    (event,) = response.json()["events"]

    # the relay's record: the same trace in both headers, the stored bytes as the value
    record, records = await record_of(settings, event["event_id"])
    sent = {name: value.decode() for name, value in record.headers}
    assert sent[TRACEPARENT_HEADER] == sent[CE_TRACEPARENT_HEADER]
    _, sent_trace, relay_span, _ = sent[TRACEPARENT_HEADER].split("-")
    assert sent_trace == trace_id
    assert relay_span != caller_span  # the relay's producer span, a descendant of the command's
    assert decode(record.value).event_id == uuid.UUID(event["event_id"])

    # the projector continues it: its batch span in the same trace, the Redis invalidation under it
    pool = await create_projector_pool(settings)
    redis = Redis.from_url(settings.redis_url, **settings.redis_options())
    try:
        projector = Projector(
            PostgresStore(pool, settings.projector_group),
            NoDeadLetters(),
            RedisInvalidator(redis, CacheKeys(settings.redis_prefix)),
            retry_backoff=0,
        )
        result = await projector.handle(records)
    finally:
        await redis.aclose()
        await pool.close()
    assert result.applied >= 1
    finished = spans.get_finished_spans()
    (batch,) = [s for s in finished if s.name == "project batch"]
    assert batch.context is not None and batch.parent is not None
    assert f"{batch.context.trace_id:032x}" == trace_id
    assert f"{batch.parent.span_id:016x}" == relay_span
    (invalidation,) = [s for s in finished if s.name == "invalidate redis"]
    assert invalidation.context is not None and invalidation.parent is not None
    assert f"{invalidation.context.trace_id:032x}" == trace_id
    assert invalidation.parent.span_id == batch.context.span_id

    # the command service's JSON lines name the event and the trace where they handled it
    command.stop()  # flushes its log and its last spans
    lines = json_lines(command.log_path)
    accepted = [line for line in lines if line.get("event_id") == event["event_id"]]
    assert {line["message"].split(" ")[0] for line in accepted} >= {"accepted", "relay:"}, accepted
    assert {line["trace_id"] for line in accepted} == {trace_id}
    assert all(line.get("span_id") for line in accepted)
    assert "POST /v1/flags" in command.log_path.read_text()  # the console exporter printed the command's span
