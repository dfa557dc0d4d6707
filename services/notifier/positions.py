"""Where the projector is and where the topic ends: what the "projector lag" alert is measured from.

The projector stores its next offset per partition in Postgres with every batch it applies
(`projector_offsets`, in the batch's transaction), so that is where it is, whatever its process says;
the topic's end offsets come from Kafka (the notifier's consumer of the same topic). Each adapter
translates its driver's errors into `PositionsUnavailable`: a tick that cannot measure judges nothing.
"""

from __future__ import annotations

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.infra.postgres import tenant_transaction
from services.notifier.store import DRIVER_ERRORS

__all__ = ["KafkaEnds", "PositionsUnavailable", "ProjectorPositions"]

APPLIED = "SELECT partition, next_offset FROM projector_offsets WHERE consumer_group = $1 AND topic = $2"


class PositionsUnavailable(Exception):
    """The projector's positions or the topic's ends could not be read this time."""


class ProjectorPositions:
    def __init__(self, pool: asyncpg.Pool, *, group: str, topic: str) -> None:
        self._pool = pool
        self._group = group
        self._topic = topic

    async def applied(self) -> dict[int, int]:
        """Partition → the projector's next offset to apply (a partition it never applied is absent)."""
        try:
            async with tenant_transaction(self._pool, None) as conn:
                rows = await conn.fetch(APPLIED, self._group, self._topic)
        except DRIVER_ERRORS as exc:
            raise PositionsUnavailable(f"cannot read the projector's offsets: {exc}") from exc
        return {r["partition"]: r["next_offset"] for r in rows}


class KafkaEnds:
    def __init__(self, consumer: AIOKafkaConsumer, *, topic: str) -> None:
        self._consumer = consumer
        self._topic = topic

    async def ends(self) -> dict[int, int]:
        """Partition → the topic's end offset (committed records only: the consumer reads `read_committed`)."""
        try:
            partitions = self._consumer.partitions_for_topic(self._topic)
            if not partitions:
                raise PositionsUnavailable(f"no partitions known yet for {self._topic}")
            found = await self._consumer.end_offsets([TopicPartition(self._topic, p) for p in sorted(partitions)])
        except KafkaError as exc:
            raise PositionsUnavailable(f"cannot read the end offsets of {self._topic}: {exc!r}") from exc
        return {tp.partition: offset for tp, offset in found.items()}
