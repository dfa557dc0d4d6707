"""Kafka and Redis adapters of the projector: the dead-letter topic and cache invalidation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence

import orjson
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis
from redis.exceptions import RedisError

from flaglog import DeadLetter
from services.infra.cache_keys import CacheKeys
from services.observability import tracing
from services.projector.cache_targets import CacheTarget

log = logging.getLogger(__name__)


class KafkaDeadLetters:
    """Publishes rejected records to the dead-letter topic and waits for acks=all."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        pending = [
            await self._producer.send(self._topic, value=letter.value, key=letter.key, headers=letter.out_headers())
            for letter in letters
        ]
        await asyncio.gather(*pending)


def cache_key(keys: CacheKeys, target: CacheTarget) -> str:
    if target.scope == "catalog":
        return keys.catalog
    assert target.org_id is not None
    if target.scope == "org":
        return keys.org(target.org_id)
    assert target.user_id is not None
    return keys.user(target.org_id, target.user_id)


# DEL the documents, then PUBLISH one message per document, as one atomic command (a
# pipeline of thousands of commands costs three times as much client time).
DELETE_AND_ANNOUNCE = """
for i = 1, #KEYS, 1000 do
    redis.call('DEL', unpack(KEYS, i, math.min(i + 999, #KEYS)))
end
for i = 2, #ARGV do
    redis.call('PUBLISH', ARGV[1], ARGV[i])
end
return #KEYS
"""


class RedisInvalidator:
    """After a commit: DEL the changed documents and PUBLISH one message per document.

    Failures are logged and answered False, never raised: the projection is committed
    already, and `invalidation.BackgroundInvalidator` sends them again.
    """

    def __init__(self, redis: Redis, keys: CacheKeys) -> None:
        self._redis = redis
        self.last_error: Exception | None = None  # why the last invalidation failed (the caller reports it)
        self._script = redis.register_script(DELETE_AND_ANNOUNCE)
        self._keys = keys

    async def invalidate(self, targets: Iterable[CacheTarget]) -> bool:
        ordered = sorted(set(targets))
        if not ordered:
            return True
        # Traced: a client span, a child of the span current where it is called (the background sender's).
        attributes = {"db.system": "redis", "db.operation.name": "EVALSHA", "flagstream.documents": len(ordered)}
        with tracing.span("invalidate redis", attributes=attributes, kind="client") as span:
            try:
                await self._script(
                    keys=[cache_key(self._keys, t) for t in ordered],
                    args=[self._keys.invalidation_channel, *(orjson.dumps(t.message()) for t in ordered)],
                )
            except (RedisError, OSError) as exc:
                log.debug("cache invalidation of %d documents failed: %s", len(ordered), exc)
                self.last_error = exc
                if span is not None:
                    span.fail(exc)
                return False
        return True

    async def purge(self) -> int:
        """DEL every cached document and tell every replica to drop its copies; how many were cached."""
        redis, removed = self._redis, 0
        async for chunk in _chunks(redis.scan_iter(match=self._keys.documents, count=1000), 1000):
            removed += await redis.delete(*chunk)
        await redis.publish(self._keys.invalidation_channel, orjson.dumps(PURGE))
        return removed


PURGE = {"scope": "all"}


async def _chunks(keys: AsyncIterator[bytes], size: int) -> AsyncIterator[list[bytes]]:
    chunk: list[bytes] = []
    async for key in keys:
        chunk.append(key)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
