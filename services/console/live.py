"""The flag-change topic, as the console sees it: new audit entries pushed to open pages, and lag figures.

One read-only consumer per console process (no consumer group: it commits
nothing and takes nothing from the projector) starts at the end of the topic
and hands every event to the pages subscribed. It also records how long each
event took from its commit to this consumer, and reads the projector's
consumer-group lag from Kafka for the status page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from events import DecodeError, from_record
from flaglog.connection import client_options
from services.console.broadcast import Broadcaster
from services.infra.settings import Settings

__all__ = ["TopicFeed"]

log = logging.getLogger(__name__)


class TopicFeed:
    """Consumes the topic from its end into a `Broadcaster`; reconnects after Kafka errors."""

    def __init__(self, settings: Settings, broadcaster: Broadcaster) -> None:
        self._settings = settings
        self._broadcaster = broadcaster
        self._consumer: AIOKafkaConsumer | None = None
        self.ready = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                log.warning("live feed: Kafka error %r; retrying in 2 s", exc)
            finally:
                self.ready.clear()
                if self._consumer is not None:
                    with contextlib.suppress(Exception):
                        await self._consumer.stop()
                    self._consumer = None
            await asyncio.sleep(2)

    async def _consume(self) -> None:
        s = self._settings
        consumer = AIOKafkaConsumer(**client_options(s), group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed", client_id="flagstream-console")
        self._consumer = consumer
        await consumer.start()
        consumer.subscribe([s.topic])  # no group: every partition, assigned as soon as metadata arrives
        for _ in range(100):
            if consumer.assignment():
                break
            await asyncio.sleep(0.1)
        assigned = sorted(consumer.assignment())
        if not assigned:
            raise KafkaError(f"topic {s.topic} has no partitions yet")
        await consumer.seek_to_end(*assigned)
        for tp in assigned:
            await consumer.position(tp)  # resolved now: nothing committed from here on is missed
        self.ready.set()
        log.info("live feed: following %s from its end (%d partitions)", s.topic, len(assigned))
        async for record in consumer:
            try:
                envelope = from_record(record.value, record.headers)
            except DecodeError as exc:
                log.warning("live feed: skipping an undecodable record at %s/%s: %s", record.partition,
                            record.offset, exc)
                continue
            self._broadcaster.publish(envelope.model_dump(mode="json"))

    async def projector_lag(self) -> int | None:
        """Records on the topic the projector's consumer group has not committed; None when unknown."""
        consumer = self._consumer
        if consumer is None or not self.ready.is_set():
            return None
        s = self._settings
        admin = AIOKafkaAdminClient(**client_options(s), request_timeout_ms=3000)
        try:
            await admin.start()
            committed = await admin.list_consumer_group_offsets(s.projector_group)
            ends = await consumer.end_offsets(list(consumer.assignment()))
        except (TimeoutError, KafkaError, OSError) as exc:
            log.info("projector lag unknown: %r", exc)
            return None
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        return sum(max(0, end - (committed[tp].offset if tp in committed else 0)) for tp, end in ends.items())
