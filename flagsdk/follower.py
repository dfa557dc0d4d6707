"""The stream side of the SDK: fold the org's events from the topic, from positions it keeps itself.

No consumer group and no committed offsets: the client's positions start at the
offsets its snapshot covers and advance only after a record has been folded, so a
reconnect (after any failure) seeks back to exactly the next record to fold —
nothing missed, nothing applied twice (the fold also skips any version it already
has, as a relay that re-publishes after a crash requires). Records keyed by another
org are dropped before they are decoded; the rest are accepted or refused by
`flaglog.decode_record`, the projector's decoder, so the SDK folds exactly what the read models hold.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from events import SYSTEM_PARTITION_KEY, Envelope
from flaglog import Decoded, decode_record

log = logging.getLogger(__name__)

Apply = Callable[[list[Envelope]], tuple[int, int]]  # folds a batch: (events that changed the state, refused)


@dataclass(slots=True)
class StreamStats:
    """What the follower has done, for `FlagClient.status()`."""

    connected: bool = False
    applied: int = 0  # events that changed the state
    duplicates: int = 0  # sound events the fold already had
    dropped: int = 0  # records of other orgs
    refused: int = 0  # records the projector would dead-letter
    reconnects: int = 0
    lag: int | None = None  # records on the topic not yet folded (None until the first fetch)
    last_event_at: datetime | None = None  # occurred_at of the last event folded
    last_fetch: float | None = None  # time.monotonic() of the last answer from Kafka
    last_current: float | None = None  # time.monotonic() of the last fetch after which nothing was left to fold


class Follower:
    def __init__(
        self,
        *,
        kafka: Mapping[str, Any],
        topic: str,
        org_id: str,
        positions: dict[int, int],
        apply: Apply,
        retry_delay: float = 0.5,
    ) -> None:
        self._kafka = dict(kafka)
        self._topic = topic
        self._keys = frozenset({org_id.encode(), SYSTEM_PARTITION_KEY.encode()})
        self.positions = positions
        self._apply = apply
        self._retry_delay = retry_delay
        self._consumer: AIOKafkaConsumer | None = None
        self.stats = StreamStats()

    async def run(self) -> None:
        """Follow until cancelled; any failure closes the consumer and resumes from `positions`."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("flag stream interrupted, resuming from %s: %r", self.positions, exc)
            self.stats.connected = False
            self.stats.reconnects += 1
            await asyncio.sleep(self._retry_delay)

    async def reconnect(self) -> None:
        """Drop the connection now, as a network failure would; `run` resumes from `positions`."""
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._kafka,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            request_timeout_ms=10_000,
        )
        self._consumer = consumer
        try:
            partitions = await self._partitions()
            await consumer.start()
            assigned = [TopicPartition(self._topic, p) for p in partitions]
            consumer.assign(assigned)
            for tp in assigned:
                consumer.seek(tp, self.positions.get(tp.partition, 0))
            self.stats.connected = True
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=1000)
                self.stats.last_fetch = time.monotonic()
                for tp, records in batch.items():
                    self._fold(tp.partition, records)
                ends = [consumer.highwater(tp) for tp in assigned]
                known = [end for end in ends if end is not None]
                self.stats.lag = None if len(known) < len(ends) else sum(
                    max(0, end - self.positions.get(tp.partition, 0)) for tp, end in zip(assigned, known, strict=True)
                )
                if self.stats.lag == 0:
                    self.stats.last_current = self.stats.last_fetch
        finally:
            self._consumer = None
            await consumer.stop()

    async def _partitions(self) -> list[int]:
        """The topic's partitions (a consumer with no subscription has no metadata to ask)."""
        admin = AIOKafkaAdminClient(**self._kafka, request_timeout_ms=10_000)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([self._topic])
        finally:
            await admin.close()
        partitions = sorted(p["partition"] for p in described.get("partitions") or ())
        if not partitions:
            raise LookupError(f"topic {self._topic!r}: {described.get('error_code')}")
        return partitions

    def _fold(self, partition: int, records: list[Any]) -> None:
        envelopes: list[Envelope] = []
        for record in records:
            if record.key not in self._keys:
                self.stats.dropped += 1
                continue
            decoded = decode_record(record)
            if isinstance(decoded, Decoded):
                envelopes.append(decoded.envelope)
            elif decoded is not None:
                self.stats.refused += 1
                log.warning("flag stream: refusing offset %d/%d: %s", partition, record.offset, decoded.reason)
        if envelopes:
            changed, refused = self._apply(envelopes)
            self.stats.applied += changed
            self.stats.refused += refused
            self.stats.duplicates += len(envelopes) - changed - refused
            self.stats.last_event_at = envelopes[-1].occurred_at
        if records:
            self.positions[partition] = records[-1].offset + 1
