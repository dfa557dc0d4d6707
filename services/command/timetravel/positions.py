"""Where a snapshot run ends on Kafka: per partition, the offset after the last record it covers."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from flaglog.connection import client_options
from services.infra.kafka import topic_partitions
from services.infra.settings import Settings


async def kafka_positions(settings: Settings, sequence: int, start: dict[int, int]) -> dict[int, int]:
    """Scan each partition from `start` to its end; records carry their sequence in `ce_sequence`."""
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic, p) for p in await topic_partitions(settings, settings.topic)]
        if not tps:
            return {}
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        found = {tp.partition: start.get(tp.partition, 0) for tp in tps}
        for tp in tps:
            consumer.seek(tp, found[tp.partition])
        remaining = {tp for tp in tps if found[tp.partition] < ends[tp]}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                for r in records:
                    if _sequence(r.headers) <= sequence:
                        found[tp.partition] = r.offset + 1
                    if r.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return found
    finally:
        await consumer.stop()


def _sequence(headers: object) -> int:
    for name, value in headers:  # type: ignore[attr-defined]
        if name == "ce_sequence":
            return int(value)
    return 0
