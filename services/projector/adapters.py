"""Kafka and Redis adapters of the projector: the dead-letter topic and cache invalidation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

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

    Failures are logged, never raised: the projection is committed already and
    cached documents expire on their own.
    """

    def __init__(self, redis: Redis, keys: CacheKeys) -> None:
        self._script = redis.register_script(DELETE_AND_ANNOUNCE)
        self._keys = keys

    async def invalidate(self, targets: Iterable[CacheTarget]) -> bool:
        ordered = sorted(set(targets))
        if not ordered:
            return True
        # Traced: a client span, a child of the span current where it is called (the projector's batch).
        attributes = {"db.system": "redis", "db.operation.name": "EVALSHA", "flagstream.documents": len(ordered)}
        with tracing.span("invalidate redis", attributes=attributes, kind="client") as span:
            try:
                await self._script(
                    keys=[cache_key(self._keys, t) for t in ordered],
                    args=[self._keys.invalidation_channel, *(orjson.dumps(t.message()) for t in ordered)],
                )
            except (RedisError, OSError) as exc:
                log.warning("cache invalidation of %d documents failed (they expire by TTL): %s", len(ordered), exc)
                if span is not None:
                    span.fail(exc)
                return False
        return True
