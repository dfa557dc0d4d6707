"""The projector's `/readyz`: lag per partition against the threshold, Postgres reachable, served with Retry-After."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from flaglog import TopicPartition
from services.observability import Metrics
from services.observability.endpoint import MetricsEndpoint, Readiness
from services.projector.metrics import Lag, ProjectorMetrics
from services.projector.projection import BatchResult
from services.projector.readiness import ProjectorReadiness
from tests.support.records import TOPIC, Rec

NOW = 1_000_000.0


@dataclass
class Consumer:
    """The consumer calls `ProjectorMetrics` makes: what is assigned, its position and the topic's end."""

    ends: dict[int, int | None]
    positions: dict[int, int] = field(default_factory=dict)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, p) for p in self.ends}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions.get(tp.partition, 0)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends[tp.partition]


@dataclass(frozen=True)
class Stamped(Rec):
    timestamp: int = 0  # ms


def applied(metrics: ProjectorMetrics, partition: int, offset: int, age: float) -> None:
    record = Stamped(TOPIC, partition, offset, None, None, (), timestamp=int((NOW - age) * 1000))
    metrics.batch([record], BatchResult(records=1, applied=1), 0.01)


async def up() -> bool:
    return True


async def down() -> bool:
    return False


async def test_lag_is_the_age_of_the_last_record_applied_while_records_wait_and_zero_once_caught_up() -> None:
    consumer = Consumer({0: 11, 1: 5, 2: None}, positions={2: 3})
    metrics = ProjectorMetrics(lambda: consumer, clock=lambda: NOW)
    applied(metrics, 0, 9, age=40.0)  # next offset 10, the end is 11: one record behind
    applied(metrics, 1, 4, age=90.0)  # next offset 5 = the end: caught up
    lags = await metrics.lags()
    assert lags == {0: Lag(10, 1, 40.0), 1: Lag(5, 0, 0.0), 2: Lag(3, None, 0.0)}


async def test_ready_within_the_threshold_not_ready_beyond_it() -> None:
    consumer = Consumer({0: 11, 1: 5})
    metrics = ProjectorMetrics(lambda: consumer, clock=lambda: NOW)
    applied(metrics, 1, 4, age=90.0)
    applied(metrics, 0, 9, age=20.0)
    ready = await ProjectorReadiness(metrics.lags, up, max_lag_seconds=30)()
    assert ready == Readiness(True, {"status": "ready", "postgres": "ok", "lag_seconds": {"0": 20.0, "1": 0.0},
                                     "max_lag_seconds": 30})  # fmt: skip
    applied(metrics, 0, 9, age=45.0)  # an older record re-applied does not move the newest stamp back
    assert (await ProjectorReadiness(metrics.lags, up, max_lag_seconds=30)()).ready
    consumer.ends[0] = 50
    metrics = ProjectorMetrics(lambda: consumer, clock=lambda: NOW)
    applied(metrics, 0, 9, age=45.0)
    behind = await ProjectorReadiness(metrics.lags, up, max_lag_seconds=30, retry_after=7)()
    assert not behind.ready and behind.retry_after == 7
    assert behind.body["status"] == "catching_up" and behind.body["lag_seconds"]["0"] == 45.0


async def test_not_ready_without_postgres_or_before_owning_a_partition() -> None:
    consumer = Consumer({0: 1})
    metrics = ProjectorMetrics(lambda: consumer, clock=lambda: NOW)
    assert (await ProjectorReadiness(metrics.lags, down, max_lag_seconds=30)()).body == {
        "status": "unavailable", "postgres": "down"}  # fmt: skip
    starting = ProjectorMetrics(lambda: None, clock=lambda: NOW)
    assert (await ProjectorReadiness(starting.lags, up, max_lag_seconds=30)()).body["status"] == "starting"
    unassigned = ProjectorMetrics(lambda: Consumer({}), clock=lambda: NOW)
    assert not (await ProjectorReadiness(unassigned.lags, up, max_lag_seconds=30)()).ready


async def _get(port: int, path: str) -> tuple[str, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, body


async def test_the_endpoint_answers_readyz_200_or_503_with_retry_after() -> None:
    answers = [Readiness(False, {"status": "catching_up"}, 9), Readiness(True, {"status": "ready"})]

    async def judge() -> Readiness:
        return answers.pop(0)

    endpoint = MetricsEndpoint(Metrics(), host="127.0.0.1", port=0, ready=judge)
    await endpoint.start()
    try:
        port = endpoint.port
        status, headers, body = await _get(port, "/readyz")
        assert status == "HTTP/1.1 503 Service Unavailable" and headers["retry-after"] == "9"
        assert json.loads(body) == {"status": "catching_up"}
        status, headers, body = await _get(port, "/readyz")
        assert status == "HTTP/1.1 200 OK" and "retry-after" not in headers
        assert json.loads(body) == {"status": "ready"}
    finally:
        await endpoint.stop()


async def test_without_a_judgement_there_is_no_readyz() -> None:
    endpoint = MetricsEndpoint(Metrics(), host="127.0.0.1", port=0)
    await endpoint.start()
    try:
        assert (await _get(endpoint.port, "/readyz"))[0] == "HTTP/1.1 404 Not Found"
        assert (await _get(endpoint.port, "/healthz"))[0] == "HTTP/1.1 200 OK"
    finally:
        await endpoint.stop()
