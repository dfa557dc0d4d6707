"""The end of the change topic, read back by the relay before a new producer sends anything.

A record Kafka wrote whose acknowledgement never reached the relay (the process
was killed between the two, or the connection dropped) is still unmarked in the
outbox, and a new producer has a new producer id, so Kafka's idempotence cannot
spot the re-send. Reading what the partitions end with, and marking what is
there, is what keeps every event in the log exactly once.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from events.cloudevents import ID_HEADER
from flaglog.connection import client_options
from services.infra.kafka import topic_partitions
from services.infra.settings import Settings

__all__ = ["KafkaPublishedLog"]


class KafkaPublishedLog:
    """`PublishedLog` on the broker: an unassigned consumer (no group) reading each partition's tail."""

    def __init__(self, settings: Settings, *, topic: str | None = None) -> None:
        self._settings = settings
        self._topic = topic or settings.topic

    async def recent_event_ids(self, per_partition: int) -> set[str]:
        consumer = AIOKafkaConsumer(**client_options(self._settings), enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(self._topic, p) for p in await topic_partitions(self._settings, self._topic)]
            if not tps:
                return set()
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            remaining = set()
            for tp in tps:
                if ends[tp] > starts[tp]:
                    consumer.seek(tp, max(starts[tp], ends[tp] - per_partition))
                    remaining.add(tp)
            found: set[str] = set()
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
                for records in batches.values():
                    for record in records:
                        event_id = dict(record.headers).get(ID_HEADER)
                        if event_id is not None:
                            found.add(event_id.decode("latin-1"))
                remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
            return found
        finally:
            await consumer.stop()
