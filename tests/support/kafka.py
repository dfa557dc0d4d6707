"""The changes topic from the outside, for integration tests: produce as the relay does, count, read back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from events import Record
from services.infra.settings import Settings


async def produce(settings: Settings, records: Iterable[Record], *, topic: str | None = None) -> None:
    """Send records as the relay would (idempotent, acks=all), in order, and wait for all acks."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True, acks="all", linger_ms=5
    )
    await producer.start()
    try:
        pending = [
            await producer.send(topic or settings.topic, value=r.value, key=r.key, headers=list(r.headers))
            for r in records
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def topic_size(settings: Settings, topic: str | None = None) -> int:
    """Records in the topic so far (sum of the partitions' end offsets)."""
    name = topic or settings.topic
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(name, p) for p in range(settings.topic_partitions)]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def read_topic(settings: Settings, topic: str, count: int, *, timeout: float = 20) -> list[Any]:
    """The first `count` records of `topic` (fewer if `timeout` passes first), read with no consumer group."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                found.extend(recs)
    finally:
        await consumer.stop()
    return found


async def consume_all(settings: Settings, expected: int, timeout: float = 20.0) -> list[Any]:
    """Every record of the topic from the beginning (no group), stopping once `expected` arrived."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(records) < expected and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for part in batch.values():
                records.extend(part)
        await asyncio.sleep(0.5)  # anything beyond `expected` would be a duplicate: give it a chance
        for part in (await consumer.getmany(timeout_ms=300)).values():
            records.extend(part)
        return records
    finally:
        await consumer.stop()


async def read_to_end(settings: Settings) -> list[Any]:
    """Every record of the topic up to its end offsets at the call, in partition order: a fresh replay's input."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()
