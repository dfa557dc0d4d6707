"""The relay's logic over the in-memory store and a fake producer: order, marking, outages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from events import Actor, FlagDefined, OrgOverrideSet, from_record
from services.command.memory import InMemoryEventStore
from services.command.relay import Relay
from services.infra.tenancy import Tenancy

ACTOR = Actor(id="t", name="t")
NOW = datetime(2026, 3, 1, tzinfo=UTC)


class FakeBroker:
    """Holds what was 'published'; can be down, or fail the n-th send of the next batch."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.down = False
        self.fail_at: int | None = None
        self.lose_acks_at: int | None = None  # from the n-th send of a producer: written, but its ack never comes
        self.producers = 0

    def event_ids(self) -> list[str]:
        return [dict(headers)["ce_id"].decode() for _, _, _, headers in self.records]

    def producer(self) -> FakeProducer:
        self.producers += 1
        return FakeProducer(self)


class FakeProducer:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.sent = 0

    async def start(self) -> None:
        if self.broker.down:
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")

    async def stop(self) -> None:
        pass

    async def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: Any = None,
        timestamp_ms: Any = None,
        headers: Any = None,
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent += 1
        if self.broker.down or (self.broker.fail_at is not None and self.sent >= self.broker.fail_at):
            future.set_exception(KafkaTimeoutError("expired"))
        elif self.broker.lose_acks_at is not None and self.sent >= self.broker.lose_acks_at:
            self.broker.records.append((topic, key, value, headers))
            future.set_exception(KafkaTimeoutError("expired"))  # the broker wrote it; the answer was lost
        else:
            self.broker.records.append((topic, key, value, headers))
            future.set_result(len(self.broker.records))
        return future


class FakePublishedLog:
    """The broker's records as `PublishedLog` reads them: the ids of each 'partition's' last records."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.reads = 0

    async def recent_event_ids(self, per_partition: int) -> set[str]:
        self.reads += 1
        return set(self.broker.event_ids()[-per_partition:])


class Crash(BaseException):
    """The process dying between Kafka's acknowledgement and the mark (kill -9 in production)."""


async def fill(store: InMemoryEventStore, n: int, org: str = "acme") -> list[int]:
    await store.append(
        [FlagDefined(flag_key="a.b", group="a")], actor=ACTOR, reason="r", expected_version=None, occurred_at=NOW
    )
    for i in range(n - 1):
        await store.append(
            [OrgOverrideSet(flag_key="a.b", org_id=org, enabled=i % 2 == 0)],
            actor=ACTOR,
            reason="r",
            expected_version=None,
            occurred_at=NOW,
        )
    return [e.sequence for e in await store.list_events()]


async def eventually(probe: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await probe():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def relay_for(store: InMemoryEventStore, broker: FakeBroker, **options: Any) -> Relay:
    options = {"poll_interval": 0.05, "min_backoff": 0.01, "max_backoff": 0.05, **options}
    return Relay(store, broker.producer, topic="changes", **options)


async def test_publishes_the_stored_bytes_in_sequence_order_then_marks_them() -> None:
    store, broker = InMemoryEventStore(reader=Tenancy.CROSS_TENANT), FakeBroker()
    sequences = await fill(store, 7)
    relay = relay_for(store, broker, batch_size=3)

    assert await relay.publish_batch() == 3
    assert await relay.publish_batch() == 3
    assert await relay.publish_batch() == 1
    assert await relay.publish_batch() == 0

    stored = {e.sequence: e.body for e in await store.list_events()}
    assert [value for _, _, value, _ in broker.records] == [stored[s] for s in sequences]
    assert await relay.lag() == 0
    topic, key, value, headers = broker.records[1]
    assert (topic, key) == ("changes", b"acme")
    assert from_record(value, headers).sequence == sequences[1]
    assert broker.records[0][1] == b"_system"


async def test_a_partial_failure_marks_only_the_delivered_prefix() -> None:
    store, broker = InMemoryEventStore(reader=Tenancy.CROSS_TENANT), FakeBroker()
    sequences = await fill(store, 5)
    broker.fail_at = 3
    relay = relay_for(store, broker)

    with pytest.raises(Exception, match="2/5 delivered"):
        await relay.publish_batch()
    assert [s.sequence for s in await store.unpublished(10)] == sequences[2:]


async def test_an_outage_keeps_the_rows_logs_once_and_recovers_exactly_once_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, broker = InMemoryEventStore(reader=Tenancy.CROSS_TENANT), FakeBroker()
    broker.down = True
    relay = relay_for(store, broker)
    with caplog.at_level(logging.INFO, logger="services.command.relay"):
        await relay.start()
        try:
            sequences = await fill(store, 4)
            await eventually(lambda: _true(broker.producers >= 4))  # several retries happened
            assert await relay.lag() == 4
            assert relay.status()["kafka"] == "down"

            broker.down = False
            await eventually(lambda: _lag_is(relay, 0))
            more = await fill_more(store, 2)
            await eventually(lambda: _lag_is(relay, 0))
        finally:
            await relay.stop()

    published = [from_record(v, h).sequence for _, _, v, h in broker.records]
    assert published == sequences + more
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Kafka unavailable" in warnings[0].getMessage()
    assert any("available again" in r.getMessage() for r in caplog.records)
    assert relay.status()["published_total"] == 6


async def test_only_the_lease_holder_relays() -> None:
    store, broker = InMemoryEventStore(reader=Tenancy.CROSS_TENANT), FakeBroker()
    await fill(store, 2)
    leader = relay_for(store, broker)
    standby = relay_for(store, broker, standby_interval=0.02)
    await leader.start()
    await eventually(lambda: _lag_is(leader, 0))
    await standby.start()
    try:
        await asyncio.sleep(0.1)
        assert leader.status()["leader"] and not standby.status()["leader"]
        await leader.stop()
        await eventually(lambda: _true(standby.status()["leader"]))
        await fill_more(store, 1)
        await eventually(lambda: _lag_is(standby, 0))
    finally:
        await standby.stop()
    assert len(broker.records) == 3  # nothing published twice


async def test_a_lost_database_is_survived() -> None:
    store, broker = InMemoryEventStore(reader=Tenancy.CROSS_TENANT), FakeBroker()
    await fill(store, 1)
    relay = relay_for(store, broker)
    store.available = False
    await relay.start()
    try:
        await asyncio.sleep(0.1)
        assert not relay.status()["leader"]
        store.available = True
        await eventually(lambda: _lag_is(relay, 0))
    finally:
        await relay.stop()
    assert not relay.status()["running"]


async def fill_more(store: InMemoryEventStore, n: int) -> list[int]:
    before = {e.sequence for e in await store.list_events()}
    for i in range(n):
        await store.append(
            [OrgOverrideSet(flag_key="a.b", org_id=f"o{i}", enabled=True)],
            actor=ACTOR,
            reason="r",
            expected_version=None,
            occurred_at=NOW,
        )
    return [e.sequence for e in await store.list_events() if e.sequence not in before]


async def _true(value: bool) -> bool:
    return value


async def _lag_is(relay: Relay, n: int) -> bool:
    return await relay.lag() == n


async def test_events_kafka_wrote_before_a_crash_are_marked_by_the_next_relay_not_sent_again() -> None:
    store, broker = InMemoryEventStore(reader=Tenancy.CROSS_TENANT), FakeBroker()
    sequences = await fill(store, 5)
    crashed = relay_for(store, broker, published=FakePublishedLog(broker))
    marking = store.mark_published

    async def crash(_sequences: Any) -> None:
        raise Crash

    store.mark_published = crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await crashed.publish_batch()
    store.mark_published = marking  # type: ignore[method-assign]
    assert len(broker.records) == 5 and await crashed.lag() == 5

    log = FakePublishedLog(broker)
    restarted = relay_for(store, broker, published=log)
    assert await restarted.publish_batch() == 5
    assert await restarted.lag() == 0 and log.reads == 1
    more = await fill_more(store, 2)
    assert await restarted.publish_batch() == 2
    assert log.reads == 1  # the same producer: checked once, before its first send
    assert [from_record(v, h).sequence for _, _, v, h in broker.records] == sequences + more
    assert len(set(broker.event_ids())) == len(broker.records)  # each event once
    assert restarted.status()["found_published_total"] == 5 and restarted.status()["published_total"] == 2


async def test_a_lost_acknowledgement_is_not_a_second_copy_after_the_outage() -> None:
    store, broker = InMemoryEventStore(reader=Tenancy.CROSS_TENANT), FakeBroker()
    sequences = await fill(store, 6)
    broker.lose_acks_at = 3  # sends 1-2 acknowledged; 3-6 written but their answers lost
    relay = relay_for(store, broker, published=FakePublishedLog(broker))
    with pytest.raises(Exception, match="2/6 delivered"):
        await relay.publish_batch()
    broker.lose_acks_at = None
    await relay._close_producer()  # what the loop does after a failure: the next send is a new producer's
    assert await relay.publish_batch() == 4
    assert [from_record(v, h).sequence for _, _, v, h in broker.records] == sequences
    assert await relay.lag() == 0


async def test_without_reading_the_topic_the_same_crash_would_send_twice() -> None:
    """Why the relay reads the topic's end: a new producer's id defeats Kafka's idempotence."""
    store, broker = InMemoryEventStore(reader=Tenancy.CROSS_TENANT), FakeBroker()
    await fill(store, 3)
    broker.lose_acks_at = 1
    blind = relay_for(store, broker)
    with pytest.raises(Exception, match="0/3 delivered"):
        await blind.publish_batch()
    broker.lose_acks_at = None
    await blind._close_producer()
    await blind.publish_batch()
    assert len(broker.records) == 6 and len(set(broker.event_ids())) == 3


class SilentProducer(FakeProducer):
    """A broker that took the connection and never answers: sends are never acknowledged."""

    async def send(self, topic: str, value: Any = None, key: Any = None, partition: Any = None,
                   timestamp_ms: Any = None, headers: Any = None) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()


class LateProducer(FakeProducer):
    """A paused broker: it writes and acknowledges each send, but only `delay` seconds later."""

    delay = 0.3

    async def send(self, topic: str, value: Any = None, key: Any = None, partition: Any = None,
                   timestamp_ms: Any = None, headers: Any = None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def write() -> None:
            self.broker.records.append((topic, key, value, headers))
            future.set_result(len(self.broker.records))

        asyncio.get_running_loop().call_later(self.delay, write)
        return future


async def test_sends_nobody_acknowledges_are_an_outage_within_the_send_timeout_then_given_up() -> None:
    store, broker = InMemoryEventStore(reader=Tenancy.CROSS_TENANT), FakeBroker()
    await fill(store, 3)
    relay = Relay(store, lambda: SilentProducer(broker), topic="changes", send_timeout=0.1, abandon_after=0.2)
    with pytest.raises(Exception, match="0/3 delivered"):
        await relay.publish_batch()
    assert relay.status()["kafka"] == "down"
    assert await relay.lag() == 3


async def test_a_late_broker_is_reported_down_but_its_sends_stay_with_the_producer_and_land_once() -> None:
    store, broker = InMemoryEventStore(reader=Tenancy.CROSS_TENANT), FakeBroker()
    sequences = await fill(store, 3)
    made: list[LateProducer] = []
    relay = Relay(store, lambda: made.append(LateProducer(broker)) or made[-1], topic="changes", send_timeout=0.1,
                  published=FakePublishedLog(broker))
    batch = asyncio.create_task(relay.publish_batch())
    await asyncio.sleep(0.2)
    assert relay.status()["kafka"] == "down" and not batch.done()  # said before the acknowledgements came
    assert await batch == 3
    assert relay.status()["kafka"] == "ok" and len(made) == 1  # no second producer, so no second copy
    assert [from_record(v, h).sequence for _, _, v, h in broker.records] == sequences


async def test_an_idle_relay_sees_the_broker_go_and_come_back(caplog: pytest.LogCaptureFixture) -> None:
    store, broker = InMemoryEventStore(reader=Tenancy.CROSS_TENANT), FakeBroker()
    await fill(store, 1)
    answering = [True]
    probes: list[float] = []

    async def probe(_producer: Any) -> None:
        probes.append(asyncio.get_running_loop().time())
        if not answering[0]:
            raise KafkaConnectionError("no broker")

    relay = relay_for(store, broker, probe=probe, probe_interval=0.05, probe_timeout=0.1)
    with caplog.at_level(logging.INFO, logger="services.command.relay"):
        await relay.start()
        try:
            await eventually(lambda: _lag_is(relay, 0))
            await eventually(lambda: _true(len(probes) >= 2))  # idle: asked every probe_interval
            assert relay.status()["kafka"] == "ok"
            answering[0] = False
            await eventually(lambda: _true(relay.status()["kafka"] == "down"), timeout=2)
            answering[0] = True
            await eventually(lambda: _true(relay.status()["kafka"] == "ok"), timeout=2)
        finally:
            await relay.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Kafka unavailable" in warnings[0] and "no broker" in warnings[0]
    assert any("available again" in r.getMessage() for r in caplog.records)
