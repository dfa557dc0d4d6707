"""Traces across the write path, with OpenTelemetry's in-memory exporter: the command's span, the outbox row,
the relay's producer span and the record's headers, the projector's batch span and the Redis invalidation."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from events import Actor, FlagDefined, from_record, to_record
from events.cloudevents import CE_TRACEPARENT_HEADER, TRACEPARENT_HEADER
from flaglog.fastdecode import _decode
from services.auth.policy import Role
from services.command.api import create_app
from services.command.memory import InMemoryEventStore
from services.command.relay import Relay
from services.infra.cache_keys import CacheKeys
from services.infra.settings import Settings
from services.infra.tenancy import Tenancy
from services.observability import tracing
from services.observability.logs import JsonFormatter
from services.observability.trace_requests import TraceRequests
from services.projector.adapters import RedisInvalidator
from services.projector.cache_targets import CacheTarget
from services.projector.invalidation import BackgroundInvalidator
from services.projector.projection import Projector
from tests.support.auth import MemoryKeys, bearer, memory_gate
from tests.support.eventlog import EventLog
from tests.support.projector_fakes import FakeDeadLetters, FakeInvalidator, FakeStore
from tests.support.records import TOPIC, Rec

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def tracing_off() -> Iterator[None]:
    tracing.shutdown()
    yield
    tracing.shutdown()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    assert tracing.configure("flagstream-test", exporter=exporter)
    return exporter


def trace_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def parent_id(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


def named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


# --- the traceparent itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "read"),
    [
        (CALLER, CALLER),
        (CALLER.encode(), CALLER),
        (f"  {CALLER}", CALLER),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", CALLER),  # a later version: 4 fields
        (CALLER + "-extra", None),  # version 00 has exactly four
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None),
        (CALLER.upper(), None),
        ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", None),
        ("garbage", None),
        (b"\xff\xfe", None),
        ("", None),
        (None, None),
    ],
)
def test_a_traceparent_is_read_as_the_w3c_propagator_reads_it(given: str | bytes | None, read: str | None) -> None:
    assert tracing.valid_traceparent(given) == read


# --- off: nothing made, the caller's context passed on --------------------------------------------


def test_off_by_default_and_by_the_standard_variables() -> None:
    assert not tracing.enabled()
    assert not tracing.configure("x", environ={})
    assert not tracing.configure("x", environ={"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.configure("x", environ={"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"})
    assert not tracing.configure("x", environ={"OTEL_TRACES_EXPORTER": "zipkin"})  # unknown: said, and off
    assert not tracing.enabled()


def test_an_otlp_endpoint_alone_asks_for_otlp_which_needs_its_optional_exporter() -> None:
    try:
        installed = importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is not None
    except ModuleNotFoundError:  # not even its parent package
        installed = False
    assert tracing.configure("x", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) is installed
    assert tracing.enabled() is installed  # without the extra: said once, and off rather than failing


def test_console_is_switched_on_by_the_exporter_variable() -> None:
    assert tracing.configure("x", environ={"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "mine"})
    assert tracing.enabled()
    tracing.shutdown()
    assert not tracing.enabled()


def test_off_a_span_is_the_shared_no_op_and_a_callers_traceparent_is_passed_on() -> None:
    first, second = tracing.span("a"), tracing.span("b", attributes={"k": 1})
    assert first is second  # nothing allocated per call
    with first as inside:
        assert inside is None
        assert tracing.current_traceparent() is None
    with tracing.span("c", parent=CALLER.encode()) as inside:
        assert inside is None
        assert tracing.current_traceparent() == CALLER
        line = json.loads(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})))
        assert line["trace_id"] == CALLER_TRACE
        assert "span_id" not in line  # no span of ours
    assert tracing.current_traceparent() is None
    with tracing.span("d", parent="garbage"):
        assert tracing.current_traceparent() is None
    assert tracing.start_span("e", parent=CALLER) is None


# --- on ------------------------------------------------------------------------------------------------


def test_a_span_continues_its_parent_links_others_and_binds_its_ids_to_log_lines(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.span("work", parent=CALLER, links=[OTHER, "garbage"], attributes={"k": "v"}) as current:
        assert current is not None
        assert tracing.current_traceparent() == current.traceparent
        line = json.loads(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})))
        with tracing.span("child"):
            pass
    (child, work) = spans.get_finished_spans()
    assert (trace_of(work), parent_id(work)) == (CALLER_TRACE, CALLER_SPAN)
    assert (line["trace_id"], line["span_id"]) == (CALLER_TRACE, span_id(work))
    assert (trace_of(child), parent_id(child)) == (CALLER_TRACE, span_id(work))
    assert [f"{link.context.trace_id:032x}" for link in work.links] == [OTHER[3:35]]
    assert work.attributes == {"k": "v"}
    assert tracing.current_traceparent() is None


def test_without_a_valid_parent_a_span_starts_a_trace_and_a_failure_is_recorded(
    spans: InMemorySpanExporter,
) -> None:
    with pytest.raises(ValueError), tracing.span("work", parent="00-garbage"):
        raise ValueError("boom")
    (work,) = spans.get_finished_spans()
    assert work.parent is None
    assert work.status.status_code is StatusCode.ERROR
    assert [e.name for e in work.events] == ["exception"]


def test_a_started_span_is_not_current_and_is_ended_by_its_owner(spans: InMemorySpanExporter) -> None:
    opened = tracing.start_span("send", parent=CALLER, kind="producer")
    assert opened is not None
    assert tracing.current_traceparent() is None
    assert opened.trace_id == CALLER_TRACE
    assert spans.get_finished_spans() == ()
    opened.end()
    (send,) = spans.get_finished_spans()
    assert (parent_id(send), send.kind, span_id(send)) == (CALLER_SPAN, SpanKind.PRODUCER, opened.span_id)


class FakeBroker:
    """Acknowledges every record at once, and keeps what it was sent (the relay's `Producer` port)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []

    def producer(self) -> FakeBroker:
        return self

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None, **_: Any) -> Any:
        self.records.append((topic, key, value, headers))
        future = asyncio.get_running_loop().create_future()
        future.set_result(len(self.records))
        return future


# --- the command service: a span per write request ------------------------------------------------------


def seen_app() -> tuple[FastAPI, list[str | None]]:
    seen: list[str | None] = []
    app = FastAPI()

    @app.post("/things/{thing}")
    async def post(thing: str) -> dict[str, str]:
        seen.append(tracing.current_traceparent())
        return {"thing": thing}

    @app.get("/things/{thing}")
    async def get(thing: str) -> dict[str, str]:
        seen.append(tracing.current_traceparent())
        return {"thing": thing}

    app.add_middleware(TraceRequests)
    return app, seen


async def test_a_write_request_is_a_server_span_named_by_its_route_continuing_the_caller(
    spans: InMemorySpanExporter,
) -> None:
    app, seen = seen_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.post("/things/a1", headers={"traceparent": CALLER})).status_code == 200
        assert (await client.post("/things/a2", headers={"traceparent": "nonsense"})).status_code == 200
        assert (await client.get("/things/a3", headers={"traceparent": CALLER})).status_code == 200
    continued, fresh = spans.get_finished_spans()
    assert continued.name == "POST /things/{thing}"
    assert continued.kind is SpanKind.SERVER
    assert (trace_of(continued), parent_id(continued)) == (CALLER_TRACE, CALLER_SPAN)
    assert continued.attributes is not None
    assert continued.attributes["http.response.status_code"] == 200
    assert fresh.parent is None and trace_of(fresh) != CALLER_TRACE
    assert seen[0] is not None and seen[0][3:35] == CALLER_TRACE and seen[0][36:52] == span_id(continued)
    assert seen[2] is None  # a read is not traced


async def test_off_a_write_request_passes_the_callers_traceparent_on_unchanged() -> None:
    app, seen = seen_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await client.post("/things/a1", headers={"traceparent": CALLER})
        await client.post("/things/a2")
    assert seen == [CALLER, None]


@pytest.fixture
async def command() -> AsyncIterator[tuple[httpx.AsyncClient, InMemoryEventStore]]:
    store, keys = InMemoryEventStore(reader=Tenancy.CROSS_TENANT), MemoryKeys()
    app = create_app(Settings(), store=store, auth=memory_gate(keys))
    admin = keys.issue(Role.SYSTEM_ADMIN, name="ops")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://command", headers=bearer(admin)
    ) as client:
        yield client, store


async def test_a_command_stores_its_span_with_its_events_and_the_relay_carries_it_onto_the_record(
    spans: InMemorySpanExporter, command: tuple[httpx.AsyncClient, InMemoryEventStore]
) -> None:
    client, store = command
    body = {"key": "ai.insights.enabled", "group": "ai", "reason": "traced"}
    response = await client.post("/v1/flags", json=body, headers={"traceparent": CALLER})
    assert response.status_code == 201, response.text
    (request,) = named(spans, "POST")
    assert request.name == "POST /v1/flags"
    (row,) = await store.unpublished(10)
    assert row.traceparent == f"00-{CALLER_TRACE}-{span_id(request)}-01"

    broker = FakeBroker()
    relay = Relay(store, broker.producer, topic="changes")
    assert await relay.publish_batch() == 1
    (_, _, value, headers) = broker.records[0]
    assert value == row.body  # the event's bytes are the stored ones; the trace is in the headers only
    sent = dict(headers)
    (publish,) = named(spans, "publish")
    assert publish.kind is SpanKind.PRODUCER
    assert (trace_of(publish), parent_id(publish)) == (CALLER_TRACE, span_id(request))
    assert (
        sent[TRACEPARENT_HEADER] == sent[CE_TRACEPARENT_HEADER] == f"00-{CALLER_TRACE}-{span_id(publish)}-01".encode()
    )
    assert from_record(value, headers).event_id == from_record(value, headers[:-2]).event_id


async def test_off_the_relay_passes_the_stored_traceparent_on_and_an_untraced_row_gets_no_header() -> None:
    store = InMemoryEventStore(reader=Tenancy.CROSS_TENANT)
    actor = Actor(id="t", name="t")
    with tracing.span("request", parent=CALLER):
        await store.append([FlagDefined(flag_key="a.b", group="a")], actor=actor, reason="r", expected_version=None,
                           occurred_at=NOW)  # fmt: skip
    await store.append([FlagDefined(flag_key="c.d", group="c")], actor=actor, reason="r", expected_version=None,
                       occurred_at=NOW)  # fmt: skip
    broker = FakeBroker()
    assert await Relay(store, broker.producer, topic="changes").publish_batch() == 2
    traced, untraced = (dict(headers) for *_, headers in broker.records)
    assert traced[TRACEPARENT_HEADER] == traced[CE_TRACEPARENT_HEADER] == CALLER.encode()
    assert TRACEPARENT_HEADER not in untraced and CE_TRACEPARENT_HEADER not in untraced


def test_a_traced_record_keeps_its_value_and_stays_on_the_fast_decoding_path() -> None:
    log = EventLog()
    envelope = log.org("o1", "a.b", True)
    plain, traced = to_record(envelope), to_record(envelope, traceparent=CALLER)
    assert traced.value == plain.value
    assert traced.headers[: len(plain.headers)] == plain.headers
    assert dict(traced.headers)[TRACEPARENT_HEADER] == CALLER.encode()
    record = Rec(TOPIC, 0, 0, traced.key, traced.value, tuple(traced.headers))
    assert _decode(record).envelope == envelope  # no fall back to the full path for the extra headers


# --- the projector: a span per batch, the Redis invalidation a child of it ---------------------------------


def traced_records(*traceparents: str | None) -> list[Rec]:
    log = EventLog()
    envelopes = [log.org("o1", "a.b", i % 2 == 0) for i in range(len(traceparents))]
    records = [to_record(e, traceparent=tp) for e, tp in zip(envelopes, traceparents, strict=True)]
    return [Rec(TOPIC, 0, i, r.key, r.value, tuple(r.headers)) for i, r in enumerate(records)]


async def test_a_batch_continues_its_first_traced_record_and_links_the_others(spans: InMemorySpanExporter) -> None:
    store = FakeStore()
    projector = Projector(store, FakeDeadLetters(store), FakeInvalidator(store), retry_backoff=0)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("services.projector.projection")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        result = await projector.handle(traced_records(None, CALLER, OTHER))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert result.applied == 3
    finished = spans.get_finished_spans()
    (batch,) = [s for s in finished if s.name == "project batch"]
    (record,) = [s for s in finished if s.name == "project record"]  # OTHER's own piece of its trace
    assert (trace_of(record), parent_id(record)) == (OTHER[3:35], OTHER[36:52])
    assert [f"{link.context.span_id:016x}" for link in record.links] == [span_id(batch)]
    assert record.start_time is not None and batch.start_time is not None and record.start_time <= batch.start_time
    assert batch.kind is SpanKind.CONSUMER
    assert (trace_of(batch), parent_id(batch)) == (CALLER_TRACE, CALLER_SPAN)
    assert [f"{link.context.trace_id:032x}" for link in batch.links] == [OTHER[3:35]]
    assert batch.attributes is not None and batch.attributes["flagstream.applied"] == 3
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    applied = [line for line in lines if "event_id" in line]
    assert [(line["trace_id"], line.get("span_id")) for line in applied] == [
        (CALLER_TRACE, span_id(batch)),
        (OTHER[3:35], None),  # linked, not in the batch's trace
    ]


async def test_an_untraced_batch_is_a_root_span_and_off_nothing_is_made(spans: InMemorySpanExporter) -> None:
    store = FakeStore()
    projector = Projector(store, FakeDeadLetters(store), FakeInvalidator(store), retry_backoff=0)
    await projector.handle(traced_records(None))
    (batch,) = spans.get_finished_spans()
    assert batch.parent is None and batch.links == ()
    tracing.shutdown()
    spans.clear()
    await projector.handle(traced_records(CALLER, None)[1:])
    assert spans.get_finished_spans() == ()


class FakeRedis:
    """What `RedisInvalidator` uses of a Redis client: one registered script, which may fail."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[dict[str, Any]] = []

    def register_script(self, _source: str) -> Any:
        async def run(**call: Any) -> int:
            if self.fail:
                raise ConnectionError("redis is down")
            self.calls.append(call)
            return len(call["keys"])

        return run


async def test_the_redis_invalidation_is_a_client_span_under_the_batch(spans: InMemorySpanExporter) -> None:
    invalidator = RedisInvalidator(FakeRedis(), CacheKeys("t"))  # type: ignore[arg-type]
    failing = RedisInvalidator(FakeRedis(fail=True), CacheKeys("t"))  # type: ignore[arg-type]
    with tracing.span("batch", parent=CALLER) as batch:
        assert await invalidator.invalidate([CacheTarget("org", "o1")])
        assert not await failing.invalidate([CacheTarget("org", "o1")])
    assert batch is not None
    done, failed, _ = spans.get_finished_spans()
    assert (done.name, done.kind, parent_id(done), trace_of(done)) == (
        "invalidate redis",
        SpanKind.CLIENT,
        batch.span_id,
        CALLER_TRACE,
    )
    assert failed.status.status_code is StatusCode.ERROR


async def test_the_background_sender_continues_the_batches_whose_documents_it_invalidates(
    spans: InMemorySpanExporter,
) -> None:
    """The projector queues a batch's documents; the send that carries them is in that batch's trace."""
    invalidator = RedisInvalidator(FakeRedis(), CacheKeys("t"))  # type: ignore[arg-type]

    async def purge() -> int:
        return 0

    sender = BackgroundInvalidator(invalidator, purge)
    await sender.drain()  # the start-up purge
    with tracing.span("batch", parent=CALLER) as first:
        await sender.invalidate([CacheTarget("org", "o1")])
    with tracing.span("batch", parent=OTHER):
        await sender.invalidate([CacheTarget("org", "o2")])
    await sender.drain()
    assert first is not None
    [send] = named(spans, "send cache invalidations")
    [redis] = named(spans, "invalidate redis")
    assert (trace_of(send), parent_id(send)) == (CALLER_TRACE, first.span_id)
    assert [link.context.trace_id for link in send.links] == [int(OTHER.split("-")[1], 16)]
    assert parent_id(redis) == span_id(send)
