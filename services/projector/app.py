"""The projector's consumer: the FastStream broker and subscriber, the rebalance listener, and the poll.

It names no concrete adapter: the subscriber hands each batch to the `Wiring`'s projector and the listener
reads the `Wiring`'s stored offsets, both connected by the lifespan `bootstrap` gives. Nothing connects
at import time: `create_app` declares, its lifespan connects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from itertools import chain
from typing import TYPE_CHECKING, Any

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.message import StreamMessage

from services.infra.kafka import broker_security
from services.infra.settings import Settings
from services.projector.dependencies import Wiring
from services.projector.metrics import ProjectorMetrics
from services.projector.ports import StoredOffsets

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

log = logging.getLogger(__name__)

MAX_RECORDS = 1000
POLL_MS = 1000
EMPTY_AT_ONCE = 0.05  # seconds
ASSIGN_RETRIES = (0.5, 1.0, 2.0, 4.0)


class SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, position each partition at the next offset stored in Postgres.

    The offsets committed to Kafka only show consumer lag; Postgres is the truth,
    because it is committed in the same transaction as the read models.
    """

    def __init__(self, wiring: Wiring) -> None:
        self._wiring = wiring
        self._subscriber: Any = None

    def bind(self, subscriber: Any) -> None:
        """The subscriber whose consumer (created at broker start) this listener positions."""
        self._subscriber = subscriber

    def consumer(self) -> AIOKafkaConsumer | None:
        """The subscriber's consumer, once the broker has started it."""
        return getattr(self._subscriber, "consumer", None)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = self.consumer()
        store = self._wiring.offsets
        if consumer is None or store is None or not assigned:
            return
        stored = await self._stored(store)
        if stored is None:
            log.error("cannot read stored offsets; starting from Kafka's committed offsets (batches still dedupe)")
            return
        placed: dict[int, int | str] = {}
        for tp in sorted(assigned):
            offset = stored.get(tp.partition)
            if offset is None:
                await consumer.seek_to_beginning(tp)
                placed[tp.partition] = "beginning"
            else:
                consumer.seek(tp, offset)
                placed[tp.partition] = offset
        log.info("partitions assigned, positioned at %s", placed)

    async def _stored(self, store: StoredOffsets) -> dict[int, int] | None:
        for delay in (*ASSIGN_RETRIES, None):
            try:
                return await store.stored_offsets(self._wiring.settings.topic)
            except Exception as exc:
                if delay is None:
                    log.error("reading stored offsets failed: %r", exc)
                    return None
                log.warning("reading stored offsets failed, retrying in %.1fs: %r", delay, exc)
                await asyncio.sleep(delay)
        return None  # pragma: no cover


async def _tolerant_parse(
    records: tuple[ConsumerRecord[Any, Any], ...], default: Callable[..., Awaitable[StreamMessage[Any]]]
) -> StreamMessage[Any]:
    """FastStream's batch parser decodes every header value as UTF-8. A record whose headers are
    not text must still reach the projector, which dead-letters it, instead of failing the whole
    batch before the handler runs (a poison batch that is never applied)."""
    try:
        return await default(records)
    except (UnicodeDecodeError, AttributeError):
        readable = tuple(
            replace(r, headers=[(k, (v or b"").decode("utf-8", "replace").encode()) for k, v in r.headers])
            for r in records
        )
        message = await default(readable)
        message.raw_message = records  # the projector reads (and dead-letters) the originals
        return message


async def poll(consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord[Any, Any], ...]:
    """One fetch for the subscriber's loop, in place of FastStream's batch `get_msg`.

    That one sleeps its whole poll timeout (200 ms) after every empty poll, so a change that
    arrived during the sleep waited for it: 207 ms p50 with changes a second apart, against
    11 ms back to back. Here an empty poll returns at once and is polled again; `getmany`
    itself waits (up to POLL_MS) for records, so only a poll that came back empty at once
    (nothing assigned yet) is followed by a short pause.
    """
    started = time.monotonic()
    fetched = await consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
    if not fetched and time.monotonic() - started < EMPTY_AT_ONCE:
        await asyncio.sleep(EMPTY_AT_ONCE)
    return tuple(chain.from_iterable(fetched.values()))


async def _raw_records(msg: StreamMessage[Any]) -> Any:
    """The projector reads `msg.raw_message` itself: skip FastStream's per-record body decoding."""
    return msg.raw_message


def create_app(
    settings: Settings, wiring: Wiring, *, lifespan: Callable[[], AbstractAsyncContextManager[None]]
) -> FastStream:
    """The consumer of `settings.topic`, applying batches with `wiring`'s projector once `lifespan` connected it."""
    # The broker's own per-message access log goes to DEBUG; the projector logs progress.
    broker = KafkaBroker(
        settings.kafka_bootstrap,
        security=broker_security(settings),
        client_id="flagstream-projector",
        log_level=logging.DEBUG,
    )
    listener = SeekToStoredOffsets(wiring)
    subscriber = broker.subscriber(
        settings.topic,
        group_id=settings.projector_group,
        group_instance_id=settings.projector_instance_id,
        batch=True,
        max_records=MAX_RECORDS,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        # A fetch for caught-up partitions waits this long on the broker and holds back the
        # next fetch for the partitions that still have data: keep it short while replaying.
        fetch_max_wait_ms=100,
        listener=listener,
        parser=_tolerant_parse,
        decoder=_raw_records,
        description="Flag change events (CloudEvents binary mode) → read models, exactly once.",
    )
    listener.bind(subscriber)
    wiring.metrics = metrics = ProjectorMetrics(listener.consumer)
    subscriber.get_msg = poll  # type: ignore[method-assign]

    @subscriber
    async def project(msg: KafkaMessage) -> None:
        """Apply one batch; raising (infrastructure only) rewinds the batch for redelivery."""
        records = msg.raw_message  # a tuple of aiokafka ConsumerRecords
        started = time.monotonic()
        result = None
        try:
            result = await wiring.connected().handle(records)
        finally:
            metrics.batch(records, result, time.monotonic() - started)

    return FastStream(broker, lifespan=lifespan)
